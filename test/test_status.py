# -*- test-case-name: test.test_status -*-
"""Tests for :mod:`tunnels.daemon.status`: the JSON endpoint over real HTTP on 127.0.0.1."""
from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tunnels.node import new_key_bin, start_node
from tunnels.runtime import as_future
from tunnels.daemon.service import TunnelService
from tunnels.settings import TunnelSettings
from tunnels.daemon.status import STATUS_LINE, node_status
from tunnels.daemon.web import StatusService

from .util import async_test, wait_for


async def get_json(port: int) -> tuple[int, dict[str, Any]]:
    """GET http://127.0.0.1:port/ and decode the JSON body."""
    response = await as_future(treq.get(b"http://127.0.0.1:%d/" % port, persistent=False))
    body = await as_future(treq.content(response))
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    return response.code, json.loads(body)


class StatusEndpointTests(TestCase):
    """The endpoint of a running TunnelService."""

    timeout = 30

    @async_test
    async def test_running_node(self) -> None:
        """A node with a circuit reports it in the JSON, with the same figures as the log line."""
        exit_node = await as_future(start_node(reactor, "127.0.0.1", 0, testnet=True,
                                               settings=TunnelSettings(become_exitnode=True)))
        self.addCleanup(lambda: exit_node.stop())
        service = TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(), key_bin=new_key_bin(),
                                bootstrap=[exit_node.address], testnet=True, status_interval=0)
        status_service = StatusService(reactor, service.status, 0)
        status_service.setServiceParent(service)
        service.startService()
        self.addCleanup(service.stopService)
        node = await as_future(service.when_running())
        community = node.community
        await wait_for(lambda: len(community.candidates()) >= 1, what="the exit as a candidate")
        circuit = await as_future(community.create_circuit(1))

        assert status_service.port is not None
        code, status = await get_json(status_service.port)
        self.assertEqual(code, 200)
        self.assertEqual(status["state"], "running")
        self.assertEqual(status["address"], list(node.address))
        self.assertEqual(status["circuits"], 1)
        self.assertEqual(status["circuits_ready"], 1)
        [detail] = status["circuit_details"]
        self.assertEqual(detail["id"], f"{circuit.circuit_id:08x}")
        self.assertEqual((detail["hops"], detail["goal_hops"], detail["state"]), (1, 1, "READY"))
        self.assertGreaterEqual(detail["age"], 0)
        self.assertGreater(status["bytes_up"], 0)
        self.assertGreater(status["bytes_down"], 0)
        for key in ("joined_circuits", "exit_sockets", "drops", "cells_sent"):
            self.assertIn(key, status if key != "cells_sent" else detail)
        line = STATUS_LINE.format(**node_status(node, reactor.seconds()))
        self.assertIn("1 circuits (1 ready)", line)

    @async_test
    async def test_starting(self) -> None:
        """Before the node runs the endpoint answers 503 with state "starting"."""
        status_service = StatusService(reactor, lambda: None, 0)
        status_service.startService()
        self.addCleanup(status_service.stopService)
        assert status_service.port is not None
        code, status = await get_json(status_service.port)
        self.assertEqual((code, status), (503, {"state": "starting"}))

    def test_loopback_by_default(self) -> None:
        """The endpoint listens on 127.0.0.1 unless told otherwise."""
        status_service = StatusService(reactor, lambda: None, 0)
        status_service.startService()
        self.addCleanup(status_service.stopService)
        self.assertEqual(status_service.listening.getHost().host, "127.0.0.1")
