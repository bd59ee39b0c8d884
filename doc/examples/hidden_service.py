"""Hidden services: two members of a service find each other through a local mainline DHT and talk.

Run: python doc/examples/hidden_service.py  (exits 0 when both messages arrived)
"""
from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.task import react

from tunnels import HiddenTunnelCommunity
from tunnels.runtime import as_deferred, install_reactor
from tunnels.testnet import LocalNetwork


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    """Poll ``predicate`` every 50 ms."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not reached")


async def main(reactor: Any) -> None:
    # Relays, exits, two clients and a small BEP 5 DHT, all on 127.0.0.1; every node gets its
    # own DHT node and MainlineDHTProvider as community.dht_provider.
    net = LocalNetwork(reactor, relays=5, exits=2, clients=2, community_class=HiddenTunnelCommunity,
                       dht="mainline", lookup_interval=1.0)
    print("starting a local network with a mainline DHT on 127.0.0.1 ...")
    await net.start(progress=lambda line: print("  " + line))
    alice, bob = (node.community for node in net.clients)
    inbox: dict[str, list[bytes]] = {"alice": [], "bob": []}
    alice.add_data_handler(lambda circuit, peer, payload: inbox["alice"].append(payload))
    bob.add_data_handler(lambda circuit, peer, payload: inbox["bob"].append(payload))
    try:
        def on_peer_alice(peer: Any) -> None:   # the seed's example, as valid Python
            alice.tunnel_data(alice.active_data_circuits()[0], peer, u"data", "my message to this peer")

        alice.register_service("my service identifier", hops=1, callback=on_peer_alice)
        bob.register_service("my service identifier", hops=1,
                             callback=lambda peer: bob.tunnel_data(bob.active_data_circuits()[0], peer, "data",
                                                                   "hello back"))
        print("two members register 'my service identifier' and look each other up in the DHT ...")
        await wait_until(lambda: inbox["alice"] and inbox["bob"])
        print(f"bob got {inbox['bob'][0].decode()!r}, alice got {inbox['alice'][0].decode()!r}")
    finally:
        await net.stop()


if __name__ == "__main__":
    install_reactor()          # before anything imports twisted.internet.reactor
    react(lambda reactor: as_deferred(main(reactor)))   # main awaits asyncio things: run it as a Task
