"""Floor node process: a bare chain of Twisted UDP forwarders, one AES-GCM layer per hop.

Roles: ``relay`` / ``exit`` (forwarders) and ``client`` (windowed sender that onion-encrypts
with every hop's key).  No handshake, no circuit ids, no flow control: the lower bound of what
a Python relay on Twisted costs per cell.  ``--nocrypto`` forwards datagrams unchanged.
"""
from twisted.internet import asyncioreactor

asyncioreactor.install()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from twisted.internet import reactor, task  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402

from bench import ctl  # noqa: E402
from bench.proto import WindowedSender  # noqa: E402

NONCE = struct.Struct("!4xQ")


def keys(seed, i):
    kf = hashlib.sha256(b"%s/f/%d" % (seed.encode(), i)).digest()[:16]
    kb = hashlib.sha256(b"%s/b/%d" % (seed.encode(), i)).digest()[:16]
    return AESGCM(kf), AESGCM(kb)


class Forwarder(DatagramProtocol):
    def __init__(self, crypto, seed, index, is_exit):
        self.crypto = crypto
        self.seed = seed
        self.f, self.b = keys(seed, index)
        self.is_exit = is_exit
        self.next = None
        self.prev = None
        self.cells = 0
        self.counter = 0

    def datagramReceived(self, data, addr):
        write = self.transport.write
        if addr == self.next:  # backward
            self.cells += 1
            if self.crypto:
                if self.is_exit:
                    self.counter += 1
                    nonce = NONCE.pack(self.counter)
                    data = nonce + self.b.encrypt(nonce, data, None)
                else:
                    nonce = data[:12]
                    data = nonce + self.b.encrypt(nonce, data[12:], None)
            write(data, self.prev)
        elif addr == self.prev:  # forward
            self.cells += 1
            if self.crypto:
                nonce = data[:12]
                try:
                    pt = self.f.decrypt(nonce, data[12:], None)
                except Exception:
                    return
                data = pt if self.is_exit else nonce + pt
            write(data, self.next)

    def configure(self, prev, next, index):
        self.next = tuple(next)
        self.prev = tuple(prev)
        self.f, self.b = keys(self.seed, index)
        return True

    def stats(self):
        return ctl.base_stats({"cells": self.cells})


class Client(DatagramProtocol):
    def __init__(self, crypto, seed):
        self.crypto = crypto
        self.seed = seed
        self.first = None
        self.layers = []
        self.counter = 0
        self.sender = None
        self.cells = 0
        self.ticker = task.LoopingCall(self.tick)

    def configure(self, hops, first):
        self.first = tuple(first)
        self.layers = [keys(self.seed, i) for i in range(hops)]
        return True

    def send(self, payload):
        if self.crypto:
            self.counter += 1
            nonce = NONCE.pack(self.counter)
            for f, _ in reversed(self.layers):
                payload = f.encrypt(nonce, payload, None)
            payload = nonce + payload
        try:
            self.transport.write(payload, self.first)
        except OSError:
            pass

    def datagramReceived(self, data, addr):
        if addr != self.first:
            return
        self.cells += 1
        if self.crypto:
            nonce = data[:12]
            data = data[12:]
            try:
                for _, b in self.layers:
                    data = b.decrypt(nonce, data, None)
            except Exception:
                return
        if self.sender:
            self.sender.on_ack(data)

    def tick(self):
        if self.sender:
            self.sender.tick()

    def bulk_start(self, size, window):
        self.sender = WindowedSender(self.send, size, window)
        self.sender.start()
        if not self.ticker.running:
            self.ticker.start(0.01, now=False)
        return True

    def bulk_stop(self):
        s = self.sender
        if s:
            s.stop()
        return s.summary() if s else {}

    def stats(self):
        return ctl.base_stats({"cells": self.cells, "sent": self.sender.seq if self.sender else 0})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["client", "relay", "exit"])
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--seed", default="floor")
    p.add_argument("--nocrypto", action="store_true")
    a = p.parse_args()
    loop = asyncio.get_event_loop()
    if a.role == "client":
        proto = Client(not a.nocrypto, a.seed)
        handlers = {"configure": proto.configure, "bulk_start": proto.bulk_start,
                    "bulk_stop": proto.bulk_stop, "stats": proto.stats}
    else:
        proto = Forwarder(not a.nocrypto, a.seed, a.index, a.role == "exit")
        handlers = {"configure": proto.configure, "stats": proto.stats}
    port = reactor.listenUDP(0, proto, interface="127.0.0.1", maxPacketSize=65535)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        port.socket.setsockopt(socket.SOL_SOCKET, opt, 870400)
    c = ctl.Control(loop, handlers, lambda: reactor.running and reactor.stop())
    c.start()
    c.ready(addr=["127.0.0.1", port.getHost().port])
    reactor.run()


if __name__ == "__main__":
    main()
