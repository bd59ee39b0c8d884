"""A running node with a status port, for the metrics, page and ``txtunnels status`` tests.

Real parts: an exit node and a :class:`TunnelService` (with its status port and a SOCKS5
front end) on 127.0.0.1, a UDP echo server as "the Internet", a circuit with data echoed
through it and one datagram the exit refuses (a port outside its policy).
"""
from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from tunnels.daemon.history import History
from tunnels.daemon.service import TunnelService
from tunnels.daemon.web import StatusService
from tunnels.node import TunnelNode, new_key_bin, start_node
from tunnels.runtime import as_future
from tunnels.settings import TunnelSettings
from tunnels.socks5 import Socks5Service

from .util import wait_for


class Echo(DatagramProtocol):
    """Sends every datagram back."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802 (Twisted API)
        self.transport.write(datagram, addr)


async def http_get(url: str, accept: str | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    """GET ``url`` (no persistent connection); returns (code, headers, body)."""
    headers = {"Accept": [accept]} if accept else None
    response = await as_future(treq.get(url.encode("ascii"), headers=headers, persistent=False))
    body = await as_future(treq.content(response))
    return response.code, {k.decode().lower(): [v.decode() for v in vs]
                           for k, vs in response.headers.getAllRawHeaders()}, body


class StatusNodeCase(TestCase):
    """Starts the node; :attr:`service`, :attr:`status_service`, :attr:`node`, :attr:`circuit`."""

    timeout = 60
    history_interval = 0.2

    async def start_status_node(self) -> None:
        """Start everything and send traffic: one echo round trip and one refused datagram."""
        echo = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        self.echo_address = ("127.0.0.1", echo.getHost().port)
        self.exit_node: TunnelNode = await as_future(start_node(
            reactor, "127.0.0.1", 0, testnet=True,
            settings=TunnelSettings(become_exitnode=True, exit_ports=(self.echo_address[1],))))
        self.addCleanup(self.exit_node.stop)
        self.service = TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(),
                                     key_bin=new_key_bin(), bootstrap=[self.exit_node.address], testnet=True,
                                     status_interval=0)
        self.status_service = StatusService(reactor, self.service.status, 0,
                                            history=History(interval=self.history_interval, span=60.0))
        self.status_service.setServiceParent(self.service)
        Socks5Service(reactor, self.service, 0, (1,)).setServiceParent(self.service)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.node = await as_future(self.service.when_running())
        community = self.node.community
        await wait_for(lambda: len(community.candidates()) >= 1, what="the exit as a candidate")
        self.circuit = await as_future(community.create_circuit(1))
        replies: list[bytes] = []
        refusals: list[str] = []
        community.add_data_handler(lambda circuit, source, payload: replies.append(payload))
        community.add_refusal_handler(lambda circuit, destination, reason: refusals.append(reason))
        community.tunnel_data(self.circuit, self.echo_address, "data", b"ping")
        community.tunnel_data(self.circuit, ("127.0.0.1", self.echo_address[1] + 1), "data", b"refused")
        await wait_for(lambda: replies == [b"ping"] and len(refusals) == 1, timeout=20, what="the echo and the refusal")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<status port>``."""
        return f"http://127.0.0.1:{self.status_service.port}"

    async def get_json(self) -> dict[str, Any]:
        """The status document from ``/status.json``."""
        code, headers, body = await http_get(self.base_url + "/status.json")
        self.assertEqual((code, headers["content-type"]), (200, ["application/json"]))
        return dict(json.loads(body))
