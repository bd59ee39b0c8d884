"""A SOCKS5 UDP front end without circuits: the floor of libtorrent through a proxy.

Our own ``tunnels.socks5.Socks5Server`` (the same control and UDP association code as in a
txtunnels node), but the datagrams go straight to their destination from one UDP port of this
process (one per association, as an exit gives each flow its own) and replies come straight
back: no cells, no relays.  What a proxied libtorrent download
reaches through it is the ceiling that libtorrent's SOCKS5 uTP path and one Python relay leave for
any tunnel.  It prints one ``ready`` line with the TCP port (bench/ctl.py).
"""
from tunnels.runtime import install_reactor

reactor = install_reactor()

import os  # noqa: E402
from typing import Any  # noqa: E402

from twisted.internet.protocol import DatagramProtocol  # noqa: E402

from bench import ctl  # noqa: E402
from tunnels.core.flows import Flow, forget_flow, new_flow  # noqa: E402
from tunnels.errors import CircuitNotReady  # noqa: E402
from tunnels.runtime import listen_udp  # noqa: E402
from tunnels.socks5 import Socks5Server  # noqa: E402


class Straight:
    """Where the stand-in community's one circuit would end: UDP ports on 127.0.0.1."""

    circuit_id = 0
    goal_hops = 1
    ready = True

    def __init__(self) -> None:
        self.flows: dict[int, Flow] = {}
        self.last_flow_id = 0


class FlowPort(DatagramProtocol):
    """One flow's UDP port, as an exit gives each flow its own socket: replies go to the flow."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self.flow.on_data((addr[0], addr[1]), datagram)


class DirectCommunity:
    """The part of ``TunnelCommunity`` a :class:`Socks5Server` uses (the pool and flows), sending
    without circuits."""

    def __init__(self) -> None:
        self.circuit = Straight()
        self.ports: dict[Flow, Any] = {}

    def build_tunnels(self, hops: int) -> None:
        pass

    def active_data_circuits(self, hops: int | None = None) -> list[Any]:
        return [self.circuit]

    def open_flow(self, circuit: Any, on_data: Any, on_refused: Any = None) -> Flow:
        flow = new_flow(circuit, on_data, on_refused)
        self.ports[flow] = listen_udp(reactor, 0, FlowPort(flow), "127.0.0.1")
        return flow

    def flow_data(self, flow: Flow, destination: Any, payload: bytes) -> None:
        if not flow.open:
            raise CircuitNotReady("flow ended")
        self.ports[flow].write(payload, destination)

    def close_flow(self, flow: Flow) -> None:
        if forget_flow(flow):
            self.ports.pop(flow).stopListening()


def main() -> None:
    community = DirectCommunity()
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
