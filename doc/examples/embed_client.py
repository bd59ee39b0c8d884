"""Embed txtunnels: start a local network on 127.0.0.1, send UDP through 1- and 2-hop circuits.

Run: python doc/examples/embed_client.py  (exits 0 when both echoes came back)
"""
from __future__ import annotations

from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater, react

from tunnels.node import TunnelNode, start_node
from tunnels.runtime import install_reactor
from tunnels.settings import TunnelSettings


class Echo(DatagramProtocol):
    """The "Internet" destination: a UDP echo server on 127.0.0.1."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.transport.write(datagram, addr)


async def wait_until(reactor: Any, predicate: Any, timeout: float = 20.0) -> None:
    """Poll ``predicate`` every 50 ms."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await deferLater(reactor, 0.05)
    raise TimeoutError("condition not reached")


async def main(reactor: Any) -> None:
    echo = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
    echo_address = ("127.0.0.1", echo.getHost().port)

    # testnet=True lets hops and exits use loopback addresses: local networks only.
    exit_node: TunnelNode = await start_node(reactor, "127.0.0.1", 0, testnet=True,
                                             settings=TunnelSettings(become_exitnode=True))
    print(f"exit listening on {exit_node.address[0]}:{exit_node.address[1]}")
    relay = await start_node(reactor, "127.0.0.1", 0, testnet=True, bootstrap=[exit_node.address])
    print(f"relay listening on {relay.address[0]}:{relay.address[1]}")
    client = await start_node(reactor, "127.0.0.1", 0, testnet=True, bootstrap=[exit_node.address],
                              settings=TunnelSettings(min_circuits=1, max_circuits=2))
    print(f"client listening on {client.address[0]}:{client.address[1]}; building circuits ...")
    community = client.community

    replies: list[bytes] = []
    community.add_data_handler(lambda circuit, source, payload: replies.append(payload))
    try:
        for hops in (1, 2):
            community.build_tunnels(hops)                 # keep a pool of circuits of this length
            await wait_until(reactor, lambda h=hops: community.tunnels_ready(h) >= 1.0)
            circuit = community.active_data_circuits(hops)[0]
            community.tunnel_data(circuit, echo_address, "data", b"hello over %d hops" % hops)
            await wait_until(reactor, lambda h=hops: len(replies) == h)
            print(f"{hops} hop(s): {replies[-1].decode()}")
    finally:
        for node in (client, relay, exit_node):
            await node.stop()
        await echo.stopListening()


if __name__ == "__main__":
    install_reactor()          # before anything imports twisted.internet.reactor
    react(main)
