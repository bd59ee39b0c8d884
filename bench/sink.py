"""The acking UDP sink behind the exit (one process, Twisted on the asyncio reactor).

Counts datagrams and payload bytes; acks the highest sequence number seen to the sender
every ``ACK_EVERY`` packets and every 5 ms when something arrived since the last ack.
"""
from twisted.internet import asyncioreactor

asyncioreactor.install()

import asyncio  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

from twisted.internet import reactor, task  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402

from bench import ctl  # noqa: E402
from bench.proto import ACK, ACK_KIND, DATA_KIND, HDR, MAGIC  # noqa: E402

ACK_EVERY = 16


class Sink(DatagramProtocol):
    def __init__(self):
        self.reset()

    def reset(self):
        self.packets = 0
        self.bytes = 0
        self.hi = -1
        self.unacked = 0
        self.peer = None
        self.t0 = time.monotonic()
        return True

    def datagramReceived(self, data, addr):
        if len(data) < HDR.size or data[:2] != MAGIC or data[2] != DATA_KIND:
            return
        self.packets += 1
        self.bytes += len(data)
        seq = HDR.unpack_from(data)[2]
        if seq > self.hi:
            self.hi = seq
        self.peer = addr
        self.unacked += 1
        if self.unacked >= ACK_EVERY:
            self.ack()

    def ack(self):
        self.unacked = 0
        try:
            self.transport.write(ACK.pack(MAGIC, ACK_KIND, self.hi, self.packets), self.peer)
        except OSError:
            pass

    def tick(self):
        if self.unacked and self.peer:
            self.ack()

    def stats(self):
        return ctl.base_stats({"packets": self.packets, "bytes": self.bytes,
                               "elapsed": time.monotonic() - self.t0})


def main():
    loop = asyncio.get_event_loop()
    sink = Sink()
    port = reactor.listenUDP(0, sink, interface="127.0.0.1", maxPacketSize=65535)
    port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 870400)
    task.LoopingCall(sink.tick).start(0.005, now=False)
    c = ctl.Control(loop, {"reset": sink.reset, "stats": sink.stats},
                    lambda: reactor.running and reactor.stop())
    c.start()
    c.ready(addr=["127.0.0.1", port.getHost().port])
    reactor.run()


if __name__ == "__main__":
    main()
