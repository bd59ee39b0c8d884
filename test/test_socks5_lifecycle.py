# -*- test-case-name: test.test_socks5_lifecycle -*-
"""The SOCKS5 front end's lifecycle over real TCP, UDP and circuits on 127.0.0.1 (issue 17).

The issue's fault: ``Socks5Server.stop()`` (and twistd's shutdown) closed the UDP relay
ports but not the TCP control connections, so clients saw no EOF and never learned to
associate again.  Here a stop comes during a handshake, during traffic and with idle
associations; afterwards every client saw EOF, no timer of the front end is pending, every
relay port is closed, every exit flow ended and every isolation group's circuit is gone.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from twisted.internet import reactor

from tunnels.daemon.keyfile import new_key_bin
from tunnels.daemon.metrics import families
from tunnels.daemon.service import TunnelService
from tunnels.runtime import as_future
from tunnels.settings import TunnelSettings
from tunnels.socks5 import Socks5Server, Socks5Service
from test.netcase import NetworkTestCase
from test.test_socks5 import Socks5UdpClient, read_to_eof
from test.util import async_test, wait_for


def our_timers() -> list[Any]:
    """Pending reactor calls of the SOCKS5 front end (by the module of the function called)."""
    return [call for call in reactor.getDelayedCalls()
            if getattr(call.func, "__module__", "").startswith("tunnels.socks5")]


class StopTests(NetworkTestCase):
    """A relay and an exit; a SOCKS5 server with connections in every phase, then a stop."""

    relays = 1
    exits = 1
    timeout = 60

    async def start_server(self) -> tuple[Socks5Server, int]:
        server = Socks5Server(reactor, self.client, 1)
        server.start()
        self.addCleanup(server.stop)
        listening = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        await wait_for(lambda: self.client.tunnels_ready(1) >= 1.0, 20, what="a 1-hop circuit")
        return server, listening.getHost().port

    async def associated(self, port: int, **kwargs: Any) -> Socks5UdpClient:
        client = Socks5UdpClient()
        await client.open(port, **kwargs)
        self.addCleanup(client.close)
        return client

    def exit_flows(self) -> int:
        """Flows (besides flow 0) open at the exit, over all circuits."""
        return sum(len(jc.exit.sockets) - (0 in jc.exit.sockets)
                   for jc in self.net.exits[0].community.joined_circuits if jc.exit is not None)

    @async_test
    async def test_stop_in_every_phase(self) -> None:
        """Connections that sent nothing, half a greeting, a whole greeting, and associations that
        are idle, isolated or in the middle of a burst: after ``stop()`` every client has EOF,
        no timer of ours is pending, the relay ports are closed, the exits closed every flow,
        the isolated circuits are destroyed, and replies still in flight reach nobody."""
        server, port = await self.start_server()
        silent = await asyncio.open_connection("127.0.0.1", port)
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"\x05\x02\x00")                          # two methods announced, one sent
        greeted = await asyncio.open_connection("127.0.0.1", port)
        greeted[1].write(b"\x05\x01\x00")
        self.assertEqual(await greeted[0].readexactly(2), b"\x05\x00")
        for _, writer in (silent, half, greeted):
            self.addCleanup(writer.close)
        idle = await self.associated(port)
        isolated = await self.associated(port, credentials=(b"app", b"secret"))
        busy = await self.associated(port)
        busy.send(self.net.echo_address, b"warm up")
        await wait_for(lambda: all(g.ready() for g in server.groups.values()), 20, what="the isolated circuit")
        isolated.send(self.net.echo_address, b"isolated")
        await busy.receive(10)
        await isolated.receive(10)
        [group] = server.groups.values()
        group_circuits = list(group.circuits)
        await wait_for(lambda: self.exit_flows() == 2, 10, what="the exits' flows")
        await wait_for(lambda: len(our_timers()) == 3, 5, what="the three handshake timers")
        ports = [a.port for a in server.associations]

        for i in range(200):                                    # replies in flight during the stop
            busy.send(self.net.echo_address, b"burst %d" % i)
        await as_future(server.stop())

        for reader, _ in (silent, half, greeted):
            self.assertEqual(await read_to_eof(reader), b"")
        for client in (idle, isolated, busy):
            self.assertEqual(await read_to_eof(client.reader), b"")
        self.assertEqual(our_timers(), [])
        self.assertEqual((server.connections, server.associations, server.groups), (set(), set(), {}))
        self.assertTrue(all(not p.connected for p in ports))
        await wait_for(lambda: self.exit_flows() == 0, 10, what="FLOW_END at the exit")
        self.assertTrue(all(c not in self.client.circuits for c in group_circuits))
        delivered = server.stats["delivered"]
        await asyncio.sleep(0.3)                                # late replies: dropped, counted
        self.assertEqual(server.stats["delivered"], delivered)
        refused = await asyncio.open_connection("127.0.0.1", port)
        self.addCleanup(refused[1].close)
        self.assertEqual(await read_to_eof(refused[0]), b"")   # a stopped server takes no one

    @async_test
    async def test_control_connection_end_takes_the_state(self) -> None:
        """An association whose control connection closes loses its flows at the exit (FLOW_END),
        its relay port and its routes; replies that were in flight are dropped, never delivered
        to the association opened next on the same circuit."""
        server, port = await self.start_server()
        first = await self.associated(port)
        first.send(self.net.echo_address, b"one")
        await first.receive(10)
        [association] = server.associations
        await wait_for(lambda: self.exit_flows() == 1, 10, what="its exit flow")
        for i in range(100):
            first.send(self.net.echo_address, b"in flight %d" % i)
        first.writer.close()
        second = await self.associated(port)
        await wait_for(lambda: len(server.associations) == 1 and self.exit_flows() == 0, 10,
                       what="the first association's state to go")
        self.assertEqual((association.routes, association.flows, association.port), ({}, {}, None))
        second.send(self.net.echo_address, b"two")
        self.assertEqual(await second.receive(10), (self.net.echo_address, b"two"))
        await asyncio.sleep(0.3)
        self.assertEqual(second.protocol.queue.qsize(), 0)     # nothing of the first one's


class ServiceStopTests(NetworkTestCase):
    """What twistd's shutdown does: the service tree stops the SOCKS5 service before the node."""

    relays = 0
    exits = 1
    timeout = 60

    @async_test
    async def test_service_stop_tells_clients(self) -> None:
        """Stopping the TunnelService (SIGTERM in twistd) closes the control connections first
        (clients see EOF), and the exit hears FLOW_END before the node's circuits go."""
        service = TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(max_circuits=1),
                                key_bin=new_key_bin(),
                                bootstrap=[self.net.exits[0].address], testnet=True, status_interval=0)
        socks = Socks5Service(reactor, service, 0, (1,))
        socks.setServiceParent(service)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        node = await as_future(service.when_running())
        await wait_for(lambda: node.community.tunnels_ready(1) >= 1.0, 20, what="a 1-hop circuit")
        client = Socks5UdpClient()
        await client.open(socks.ports[1])
        self.addCleanup(client.close)
        client.send(self.net.echo_address, b"hello")
        self.assertEqual(await client.receive(10), (self.net.echo_address, b"hello"))
        client.send(("127.0.0.1", 1900), b"SSDP")              # refused by the exit (port_denied)
        await wait_for(lambda: sum(socks.servers[1].refusals.values()) == 1, 10, what="the refusal")
        section = json.loads(json.dumps(service.status()))["sections"]["socks5"]
        self.assertEqual(section["gauges"], {"associations": 1, "associations_isolated": 0, "isolation_groups": 0,
                                             "flows": 1, "handshakes": 0, "associations_waiting": 0})
        self.assertEqual(section["refusals"], {"port_denied": 1})
        [row] = section["rows"]
        self.assertEqual({k: row[k] for k in ("hops", "association", "isolated", "flows", "destinations", "sent",
                                              "delivered", "dropped", "refused", "refused_by")},
                         {"hops": 1, "association": 1, "isolated": "no", "flows": 1, "destinations": 2, "sent": 2,
                          "delivered": 1, "dropped": 0, "refused": 1, "refused_by": "port_denied 1"})
        self.assertNotIn(str(self.net.echo_address[1]), json.dumps(section))   # counts, never destinations
        metrics = {(f.name, tuple(sorted(s.labels.items()))): s.value
                   for f in families(service.status()) for s in f.samples}
        self.assertEqual(metrics[("txtunnels_socks5_refused", (("reason", "port_denied"),))], 1)
        exit_community = self.net.exits[0].community
        ended: list[int] = []
        [joined] = [jc for jc in exit_community.joined_circuits if jc.exit is not None]
        end = joined.exit.end
        joined.exit.end = lambda flow: (ended.append(flow), end(flow))[1]
        await as_future(service.stopService())
        self.assertEqual(await read_to_eof(client.reader), b"")
        await wait_for(lambda: ended == [1], 5, what="FLOW_END at the exit")
        self.assertEqual(our_timers(), [])
