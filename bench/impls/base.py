"""The adapter contract every implementation fulfils (parent side of the harness).

An adapter owns a small network of node processes (one OS process per node, started with
``cluster.start``), all on 127.0.0.1:

* ``client``: builds circuits and runs the windowed sender through one of them;
* ``relays``: ``max_hops - 1`` relay-only nodes;
* ``exit``: one exit node, which delivers to the shared acking sink (``bench/sink.py``).

A circuit of ``h`` hops is client -> (h-1 relays) -> exit -> sink.  Every node process
answers the control command ``stats`` with at least ``{"cpu": s, "rss": bytes, "cells": n}``
where ``cpu`` is the process CPU time (user+system, all threads) and ``cells`` counts the
datagrams the node handled on its tunnel socket(s) (received from the previous or next hop
or from the sink): CPU per relayed cell = delta cpu / delta cells over the measured window.
"""


import time


class Unsupported(Exception):
    """The implementation cannot run this scenario (reported as "n/a")."""


def socks5_proxy(client, hops, timeout=30.0):
    """Start (once per hop count) the SOCKS5 front end of a node process that answers
    ``socks5_start`` and ``ready_circuits``; wait for a ready circuit; return ``(host, port)``."""
    ports = client.__dict__.setdefault("socks5_ports", {})
    if hops not in ports:
        ports[hops] = client.call("socks5_start", hops=hops)
    deadline = time.monotonic() + timeout
    while client.call("ready_circuits", hops=hops) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("no %d-hop circuit ready for the SOCKS5 front end after %.0f s" % (hops, timeout))
        time.sleep(0.1)
    return ("127.0.0.1", ports[hops])


class Adapter:
    #: short name used by ``--impl`` and in the table / JSON
    name = "base"
    #: whether this is "ours" (ratios are ours / theirs)
    ours = False
    #: scenarios this adapter supports: build, bulk, cpu, memory, hs
    scenarios = frozenset()

    def versions(self):
        """Package versions to print with the machine info."""
        return {}

    def start(self, cluster, max_hops, sink_addr):
        """Start client, relays and exit processes and make them know each other."""
        raise NotImplementedError

    def stop(self):
        """Stop its nodes (the cluster kills them anyway)."""

    # -- circuit building -------------------------------------------------------------
    def build_times(self, hops, count, parallel):
        """Build ``count`` batches of ``parallel`` circuits of ``hops`` hops, one batch at a
        time; return the wall time (seconds, measured in the client process) of each batch
        from the first create to the last circuit ready.  Circuits are torn down after."""
        raise Unsupported

    # -- bulk ---------------------------------------------------------------------------
    def open_circuit(self, hops):
        """Build one circuit; return (handle, [node for each hop, in order, exit last])."""
        raise NotImplementedError

    def bulk_start(self, handle, size, window):
        """Start the windowed sender on ``handle`` towards the sink with ``size``-byte
        payloads and ``window`` packets in flight; returns immediately."""
        raise NotImplementedError

    def bulk_stop(self, handle):
        """Stop the sender; return its summary dict."""
        raise NotImplementedError

    def close_circuit(self, handle):
        """Tear the circuit down."""

    # -- memory ---------------------------------------------------------------------------
    def hold_circuits(self, count, hops):
        """Build ``count`` circuits of ``hops`` hops and keep them; return the number built."""
        raise Unsupported

    def release_circuits(self):
        """Tear down what ``hold_circuits`` built."""

    def joined(self, node):
        """How many circuits ``node`` currently holds as a relay or exit."""
        return node.call("stats").get("joined", 0)

    # -- hidden services ---------------------------------------------------------------------
    def hs_setup_times(self, hops, count):
        """Seeker side: ``count`` samples (seconds) of the time from "data circuit ready and the
        service's introduction point announced" to the seeker's end-to-end callback, with
        ``hops`` hops on each side."""
        raise Unsupported

    def hs_bulk(self, hops, size, window, warmup, measure):
        """Windowed bulk from seeker to the hidden service (the service acks as the sink does);
        return {"mbps": payload MB/s delivered at the service, "pps": packets/s}."""
        raise Unsupported

    def hs_reset_sink(self):
        """Reset the hidden service's acking sink before a new flow."""

    def hs_close(self):
        """Stop whatever the hidden-service scenarios started."""

    # -- a real client ---------------------------------------------------------------------
    def socks5_proxy(self, hops):
        """A SOCKS5 (UDP ASSOCIATE) front end on the client for ``hops``-hop circuits, with at
        least one such circuit ready; returns its TCP ``(host, port)``."""
        raise Unsupported

    def cells_per_datagram(self, size):
        """Cells one ``size``-byte datagram to an IPv4 destination costs on each link."""
        raise Unsupported
