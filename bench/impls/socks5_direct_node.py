"""A SOCKS5 UDP front end without circuits: the floor of libtorrent through a proxy.

Our own ``tunnels.socks5.Socks5Server`` (the same control and UDP association code as in a
txtunnels node), but the datagrams go straight to their destination from one UDP port of this
process and replies come straight back: no cells, no relays.  What a proxied libtorrent download
reaches through it is the ceiling that libtorrent's SOCKS5 uTP path and one Python relay leave for
any tunnel.  It prints one ``ready`` line with the TCP port (bench/ctl.py).
"""
from tunnels.runtime import install_reactor

reactor = install_reactor()

import os  # noqa: E402
from typing import Any  # noqa: E402

from twisted.internet.protocol import DatagramProtocol  # noqa: E402

from bench import ctl  # noqa: E402
from tunnels.socks5 import Socks5Server  # noqa: E402


class Straight:
    """Where the stand-in community's one circuit would end: a UDP port on 127.0.0.1."""

    circuit_id = 0
    goal_hops = 1


class DirectCommunity(DatagramProtocol):
    """The part of ``TunnelCommunity`` a :class:`Socks5Server` uses, sending without circuits."""

    def __init__(self) -> None:
        self.circuit = Straight()
        self.handlers: list[Any] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        for handler in list(self.handlers):
            handler(self.circuit, (addr[0], addr[1]), datagram)

    def add_data_handler(self, handler: Any) -> None:
        self.handlers.append(handler)

    def remove_data_handler(self, handler: Any) -> None:
        self.handlers.remove(handler)

    def build_tunnels(self, hops: int) -> None:
        pass

    def active_data_circuits(self, hops: int | None = None) -> list[Any]:
        return [self.circuit]

    def tunnel_data(self, circuit: Any, destination: Any, message_type: str, payload: bytes) -> None:
        self.transport.write(payload, destination)


def main() -> None:
    community = DirectCommunity()
    reactor.listenUDP(0, community, interface="127.0.0.1", maxPacketSize=65535)
    server = Socks5Server(reactor, community, 1)
    server.start()
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    control = ctl.Control(reactor._asyncioEventloop, {"stats": lambda: ctl.base_stats(dict(server.stats))},
                          lambda: reactor.running and reactor.stop())
    control.start()
    control.ready(addr=["127.0.0.1", port.getHost().port])
    try:
        reactor.run()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
