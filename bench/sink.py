"""The acking UDP sink behind the exit (one process, Twisted on the asyncio reactor).

Counts datagrams and payload bytes; acks the highest sequence number seen to the sender
every ``ACK_EVERY`` packets and every 5 ms when something arrived since the last ack.
"""
from twisted.internet import asyncioreactor

asyncioreactor.install()

import asyncio  # noqa: E402
import socket  # noqa: E402

from twisted.internet import reactor, task  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402

from bench import ctl  # noqa: E402
from bench.proto import SinkCounter  # noqa: E402

class Sink(DatagramProtocol):
    def __init__(self):
        self.counter = SinkCounter(self.send_ack)
        self.reset = self.counter.reset
        self.tick = self.counter.tick

    def datagramReceived(self, data, addr):
        self.counter.received(data, addr)

    def send_ack(self, ack, peer):
        try:
            self.transport.write(ack, peer)
        except OSError:
            pass

    def stats(self):
        return ctl.base_stats(self.counter.stats())


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
