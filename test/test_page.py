# -*- test-case-name: test.test_page -*-
"""The status page: in a real headless browser (Debian's chromium), and its HTTP contract."""
from __future__ import annotations

import json
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase

from tunnels.daemon.history import History
from tunnels.daemon.page import render_page
from tunnels.runtime import as_future

from .browser import Browser
from .statuscase import StatusNodeCase, http_get
from .util import async_test, wait_for

FIGURES = ("node-id", "role", "state", "peers", "circuits", "circuits-ready", "joined", "exit-sockets", "drops")
READ_FIGURES = ("Object.fromEntries(%s.map(id => [id, document.getElementById(id).textContent]))"
                % json.dumps(list(FIGURES)))
READ_PLOTS = ("Object.fromEntries([...document.querySelectorAll('svg polyline')].map(p => "
              "[p.closest('svg').id + ':' + p.dataset.series, p.getAttribute('points').trim().split(' ').length]))")


class BrowserTests(StatusNodeCase):
    """The page of a running node, loaded by chromium."""

    timeout = 120

    @async_test
    async def test_page_in_chromium(self) -> None:
        """The page loads with no console error, requests nothing but itself, shows the node's figures
        as the JSON has them, plots the throughput samples, and shows new figures on reload."""
        await self.start_status_node()
        history = self.status_service.history
        community = self.node.community
        pool = community.settings.max_circuits        # the SOCKS5 front end keeps a full pool of 1-hop circuits
        await wait_for(lambda: len(community.circuits) == pool and all(c.ready for c in community.circuits),
                       timeout=30, what="a full pool of ready circuits")
        await wait_for(lambda: len(history.samples) >= 4, what="four throughput samples")
        browser: Browser = await as_future(deferToThread(Browser))
        self.addCleanup(lambda: deferToThread(browser.close))
        url = self.base_url + "/"

        await as_future(deferToThread(browser.load, url))
        figures = await as_future(deferToThread(browser.evaluate, READ_FIGURES))
        plots = await as_future(deferToThread(browser.evaluate, READ_PLOTS))
        status = await self.get_json()
        self.assertEqual(await as_future(deferToThread(browser.problems)), [])
        self.assertEqual(await as_future(deferToThread(browser.requests)), [url])
        self.assertEqual(figures, {
            "node-id": status["node_id"], "role": "relay testnet", "state": "running", "peers": str(status["peers"]),
            "circuits": str(pool), "circuits-ready": str(pool), "joined": str(status["joined_circuits"]),
            "exit-sockets": "0", "drops": str(status["drops"])})
        self.assertGreaterEqual(plots["plot-bytes:sent"], 3)
        self.assertEqual(plots["plot-bytes:sent"], plots["plot-bytes:received"])
        self.assertEqual(set(plots), {"plot-bytes:sent", "plot-bytes:received", "plot-cells:relayed",
                                      "plot-cells:our circuits", "plot-cells:drops"})
        texts = await as_future(deferToThread(browser.evaluate, "document.body.innerText"))
        self.assertIn("SOCKS5 front end (UDP ASSOCIATE)", texts)

        await as_future(self.node.community.create_circuit(1))
        await as_future(deferToThread(browser.load, url))
        figures = await as_future(deferToThread(browser.evaluate, READ_FIGURES))
        self.assertEqual((figures["circuits"], figures["circuits-ready"]), (str(pool + 1), str(pool + 1)))
        self.assertEqual(await as_future(deferToThread(browser.problems)), [])


class HTTPContractTests(StatusNodeCase):
    """What the status port answers, by path and Accept header."""

    @async_test
    async def test_paths_and_headers(self) -> None:
        """Browsers get the page with a strict CSP at /; other clients get the JSON there; unknown paths 404."""
        await self.start_status_node()
        code, headers, body = await http_get(self.base_url + "/", accept="text/html,application/xhtml+xml,*/*")
        self.assertEqual((code, headers["content-type"]), (200, ["text/html; charset=utf-8"]))
        self.assertIn("default-src 'none'", headers["content-security-policy"][0])
        self.assertIn(b'<link rel="icon" href="data:,">', body)
        self.assertNotIn(b"<script", body)
        code, headers, body = await http_get(self.base_url + "/")
        self.assertEqual((code, headers["content-type"]), (200, ["application/json"]))
        self.assertEqual(json.loads(body)["node_id"], self.node.community.my_peer.mid.hex())
        code, _, _ = await http_get(self.base_url + "/nothing-here")
        self.assertEqual(code, 404)


class RenderTests(SynchronousTestCase):
    """:func:`render_page` on hand-made snapshots."""

    def test_starting_and_failed(self) -> None:
        """A node that starts or failed gets a short page saying so (the error escaped)."""
        page = render_page({"state": "failed", "error": "<b>port</b> in use"}, History(), 0.0)
        self.assertIn('<p id="state">failed</p>', page)
        self.assertIn("&lt;b&gt;port&lt;/b&gt; in use", page)
        self.assertIn('<p id="state">starting</p>', render_page({"state": "starting"}, History(), 0.0))

    def test_section_values_escaped(self) -> None:
        """A front end's section cannot inject markup: titles, names and values are escaped."""
        status = sample_status()
        status["sections"] = {"evil": {"title": "<script>x()</script>", "gauges": {"a<b": 1},
                                       "rows": [{"col": "<img src=x>"}]}}
        page = render_page(status, History(), 0.0)
        self.assertNotIn("<script>x()", page)
        self.assertNotIn("<img src=x>", page)
        self.assertIn("&lt;script&gt;x()&lt;/script&gt;", page)
        self.assertIn("&lt;img src=x&gt;", page)


def sample_status() -> dict[str, Any]:
    """A minimal running snapshot with every key the page reads."""
    return {"state": "running", "version": "0", "node_id": "ab" * 20, "role": "relay", "address": ["127.0.0.1", 1],
            "testnet": True, "uptime": 5.0, "peers": 0, "circuits": 0, "circuits_ready": 0, "joined_circuits": 0,
            "exit_sockets": 0, "bytes_up": 0, "bytes_down": 0, "drops": 0, "circuits_by_kind": [],
            "joined_by_position": {}, "cells": {}, "flow": {"windows": 0, "blocked": 0, "queued": 0},
            "guards": [], "exits": [], "drops_by_reason": {}, "refusals": {}, "circuits_closed": {},
            "joined_closed": {}, "hidden": {}, "dht": None, "sections": {}, "circuit_details": []}
