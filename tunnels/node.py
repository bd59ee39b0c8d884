# -*- test-case-name: test.test_node -*-
"""Start a tunnel node from Twisted code: IPv8 on our UDP endpoint, one tunnel community.

>>> node = await as_future(start_node(reactor, "127.0.0.1", 0, bootstrap=[...], testnet=True))
>>> node.community.build_tunnels(1)
"""
from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from ipv8.configuration import ConfigBuilder, Strategy, WalkerDefinition
from ipv8.keyvault.crypto import default_eccrypto
from ipv8_service import IPv8
from twisted.internet.defer import Deferred

from .community import TunnelCommunity
from .runtime import as_deferred, check_reactor
from .settings import TunnelSettings
from .core.transport import TwistedUDPEndpoint, dispatcher_for

Address = tuple[str, int]


class TunnelNode:
    """A running node: its IPv8 instance, endpoint and tunnel community."""

    def __init__(self, ipv8: IPv8, endpoint: TwistedUDPEndpoint, community: TunnelCommunity) -> None:
        self.ipv8 = ipv8
        self.endpoint = endpoint
        self.community = community

    @property
    def address(self) -> Address:
        """Where this node listens."""
        return (self.endpoint.host, self.endpoint.port)

    def stop(self) -> Deferred[None]:
        """Destroy circuits, unload the community and close the socket."""
        return as_deferred(self.ipv8.stop())


def new_key_bin() -> bytes:
    """A fresh IPv8 curve25519 private key (its public half is the node's onion key)."""
    return default_eccrypto.generate_key("curve25519").key_to_bin()


def overlay_name(community_class: type[TunnelCommunity]) -> str:
    """The IPv8 config name of a community class (qualified: IPv8 has its own ``TunnelCommunity``)."""
    return f"{community_class.__module__}.{community_class.__qualname__}"


async def _start(reactor: Any, endpoint: TwistedUDPEndpoint, bootstrap: tuple[Address, ...], settings: TunnelSettings,
                 testnet: bool, key_bin: bytes, community_class: type[TunnelCommunity],
                 walk_interval: float, extra: dict[str, Any]) -> TunnelNode:
    await endpoint.open()
    builder = ConfigBuilder(clean=True)
    builder.config.update({"logger": {"level": "WARNING"}, "walker_interval": walk_interval,
                           "working_directory": ":memory:"})
    builder.add_key_from_bin("tunnel id", base64.b64encode(key_bin).decode(), "")
    name = overlay_name(community_class)
    builder.add_overlay(name, "tunnel id",
                        [WalkerDefinition(Strategy.RandomWalk, 30, {"timeout": 3.0})], [],
                        {"tunnel": settings, "testnet": testnet, "reactor": reactor, "bootstrap": bootstrap,
                         **extra}, [])
    ipv8 = IPv8(builder.finalize(), endpoint_override=dispatcher_for(endpoint),
                extra_communities={name: community_class})
    await ipv8.start()
    community = ipv8.get_overlay(community_class)
    assert community is not None
    return TunnelNode(ipv8, endpoint, community)


def start_node(reactor: Any, host: str = "0.0.0.0", port: int = 0, *, bootstrap: Iterable[Address] = (),
               settings: TunnelSettings | None = None, testnet: bool = False, key_bin: bytes | None = None,
               community_class: type[TunnelCommunity] = TunnelCommunity, walk_interval: float = 0.5,
               endpoint: TwistedUDPEndpoint | None = None, **extra: Any) -> Deferred[TunnelNode]:
    """Start a node listening on ``(host, port)`` that introduces itself to ``bootstrap``.

    ``testnet`` allows loopback and private addresses for extends and exits (local
    test networks only).  ``key_bin`` is an IPv8 private key (:func:`new_key_bin`).
    ``endpoint`` is a :class:`TwistedUDPEndpoint` the caller already bound (``host`` and
    ``port`` are then ignored), so a bind failure can surface before the reactor runs.
    Extra keyword arguments are set on the community settings.  Needs the asyncio
    reactor (:func:`tunnels.runtime.install_reactor`).
    """
    check_reactor(reactor)
    return as_deferred(_start(reactor, endpoint or TwistedUDPEndpoint(reactor, host, port), tuple(bootstrap),
                              settings or TunnelSettings(), testnet, key_bin or new_key_bin(), community_class,
                              walk_interval, extra))
