"""Loading the communities the IPv8 way, and from Twisted code with start_node."""
from __future__ import annotations

import base64

from ipv8.configuration import ConfigBuilder
from ipv8_service import IPv8
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tunnels import HiddenTunnelCommunity, TunnelCommunity, TunnelSettings
from tunnels.node import new_key_bin, overlay_name, start_node
from tunnels.runtime import as_future
from tunnels.core.transport import TwistedUDPEndpoint, dispatcher_for
from test.util import async_test


class IPv8LoadingTests(TestCase):
    async def _load(self, initialize: dict, community_class: type = TunnelCommunity) -> tuple[IPv8, object]:
        endpoint = TwistedUDPEndpoint(reactor, "127.0.0.1", 0)
        builder = ConfigBuilder(clean=True)
        builder.config.update({"logger": {"level": "WARNING"}, "walker_interval": 0.5,
                               "working_directory": ":memory:"})
        builder.add_key_from_bin("me", base64.b64encode(new_key_bin()).decode(), "")
        builder.add_overlay(overlay_name(community_class), "me", [], [], {"reactor": reactor, **initialize}, [])
        ipv8 = IPv8(builder.finalize(), endpoint_override=dispatcher_for(endpoint),
                    extra_communities={overlay_name(community_class): community_class})
        await ipv8.start()
        return ipv8, ipv8.get_overlay(community_class)

    @async_test
    async def test_config_builder_with_tunnel_settings(self) -> None:
        """ConfigBuilder.add_overlay with a TunnelSettings object loads our community with it."""
        ipv8, community = await self._load({"tunnel": TunnelSettings(min_circuits=3, max_circuits=5)})
        try:
            self.assertIsInstance(community, TunnelCommunity)
            self.assertEqual((community.settings.min_circuits, community.settings.max_circuits), (3, 5))
        finally:
            await ipv8.stop()

    @async_test
    async def test_config_builder_with_seed_fields(self) -> None:
        """The seed's fields may be set one by one in ``initialize``; bad values raise there."""
        ipv8, community = await self._load({"min_circuits": 2, "become_exitnode": True, "max_time": 60.0},
                                           HiddenTunnelCommunity)
        try:
            self.assertEqual((community.settings.min_circuits, community.settings.become_exitnode,
                              community.settings.max_time), (2, True, 60.0))
            self.assertIsNone(community.dht_provider)
        finally:
            await ipv8.stop()
        with self.assertRaises(ValueError):
            await self._load({"min_circuits": 9, "max_circuits": 2})

    @async_test
    async def test_start_node_needs_the_asyncio_reactor_and_stops_cleanly(self) -> None:
        """start_node binds the given address; stop() closes the socket."""
        node = await as_future(start_node(reactor, "127.0.0.1", 0, testnet=True))
        self.assertEqual(node.address[0], "127.0.0.1")
        self.assertTrue(node.endpoint.is_open())
        await as_future(node.stop())
        self.assertFalse(node.endpoint.is_open())
