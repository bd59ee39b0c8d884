"""Run relays as Twisted services (what ``twistd tunnels`` does) and read their status.

Starts an exit and a relay as :class:`tunnels.daemon.service.TunnelService` objects with a
status port on 127.0.0.1, waits until they know each other, prints the relay's JSON
status and two of its Prometheus metrics, and stops both (circuits destroyed, sockets
closed).  Reads HTTP with treq (``pip install treq``; the ``test`` extra has it).

Run: python doc/examples/relay_service.py  (exits 0)
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import treq
from twisted.internet.task import deferLater, react

from tunnels.daemon.keyfile import load_or_create_key
from tunnels.runtime import install_reactor
from tunnels.daemon.service import TunnelService
from tunnels.settings import TunnelSettings
from tunnels.daemon.web import StatusService


async def main(reactor: Any) -> None:
    keys = tempfile.mkdtemp()
    exit_service = TunnelService(reactor, host="127.0.0.1", port=0, testnet=True, status_interval=0,
                                 settings=TunnelSettings(become_exitnode=True, exit_ports=(53, 123)),
                                 key_bin=load_or_create_key(os.path.join(keys, "exit.key")))
    exit_service.startService()
    exit_node = await exit_service.when_running()
    print(f"exit running on {exit_node.address[0]}:{exit_node.address[1]}")

    relay_service = TunnelService(reactor, host="127.0.0.1", port=0, testnet=True, status_interval=0,
                                  settings=TunnelSettings(max_joined_circuits=50), bootstrap=[exit_node.address],
                                  key_bin=load_or_create_key(os.path.join(keys, "relay.key")))
    status = StatusService(reactor, relay_service.status, 0)      # 127.0.0.1, a free port
    status.setServiceParent(relay_service)
    relay_service.startService()
    relay = await relay_service.when_running()
    print(f"relay running on {relay.address[0]}:{relay.address[1]}, status on 127.0.0.1:{status.port}; "
          "waiting for it to meet the exit ...")
    for _ in range(200):
        if relay.community.get_peers():
            break
        await deferLater(reactor, 0.05)

    response = await treq.get(b"http://127.0.0.1:%d/status.json" % status.port, persistent=False)
    document = json.loads(await treq.content(response))
    print("relay status:", {k: document[k] for k in ("state", "address", "peers", "circuits", "joined_circuits")})
    assert document["state"] == "running" and document["peers"] >= 1, document
    response = await treq.get(b"http://127.0.0.1:%d/metrics" % status.port, persistent=False)
    metrics = (await treq.content(response)).decode()
    print("relay metrics:", [line for line in metrics.splitlines() if line.startswith("txtunnels_peers ")
                             or line.startswith("txtunnels_node_running ")])

    await relay_service.stopService()
    await exit_service.stopService()


if __name__ == "__main__":
    install_reactor()
    react(main)
