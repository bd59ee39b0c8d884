#!/usr/bin/env python3
"""Line rate: what a relay sustains under a CREATE flood, and whether a legitimate CREATE
still gets through (doc/threat-model.md, "Floods").

    python bench/flood.py                  # every flood kind at 5k, 20k, 50k, 100k/s and flat out
    python bench/flood.py --kinds wrong --rates 10000,0 --probes 20

A real relay (``twistd tunnels`` on 127.0.0.1) is flooded from one socket by a separate
process, at a paced rate (0 = as fast as Python's ``sendto`` goes):

- ``wrong``: CREATEs naming another relay (refused before any token bucket or handshake);
- ``valid``: valid CREATEs from another /24 (127.0.1.1, loopback): the source's token buckets
  admit a burst, then refuse without a handshake;
- ``unknown``: RELAY cells for circuits that do not exist (one table lookup, dropped).

Meanwhile a prober on 127.0.0.1 sends one valid CREATE every ``--interval`` seconds from a
fresh socket and waits ``--wait`` seconds for CREATED (then destroys the circuit).  The table
gives the rate the flooder reached, the datagrams the relay read (its ``bytes_down``), the
answers it withheld, and the share of probes that got through on their first attempt.
Figures depend on the machine and its load: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CELL = 1232
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def identity(key_file: str) -> tuple[bytes, bytes]:
    """(node id, onion key) of the relay whose key file is ``key_file``."""
    from ipv8.keyvault.crypto import default_eccrypto
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    with open(key_file, "rb") as f:
        key = default_eccrypto.key_from_private_bin(f.read())
    node_id = hashlib.sha1(key.pub().key_to_bin()).digest()
    onion = X25519PrivateKey.from_private_bytes(key.key_to_bin()[10:42]).public_key().public_bytes_raw()
    return node_id, onion


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return json.loads(response.read())


def create_cell(circuit_id: int, node_id: bytes, onion: bytes, token: bytes | None = None) -> bytes:
    from tunnels.crypto import ntor
    from tunnels.wire.cells import CellType, Create, frame
    state = ntor.client1(node_id, onion)
    create = Create(node_id, onion, state.client_key, token or secrets.token_bytes(16))
    return frame(CellType.CREATE, circuit_id, create.encode())


def flooder(args: argparse.Namespace) -> None:
    """The flooding process: paced ``sendto`` of one prepared datagram kind; prints its count."""
    from tunnels.wire.cells import CellType, frame
    node_id, onion = bytes.fromhex(args.node_id), bytes.fromhex(args.onion)
    source = "127.0.1.1" if args.kind == "valid" else "127.0.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    target = ("127.0.0.1", args.target_port)
    if args.kind == "wrong":
        cells = [create_cell(i + 1, secrets.token_bytes(20), onion) for i in range(256)]
    elif args.kind == "valid":
        cells = [create_cell(i + 1, node_id, onion) for i in range(256)]
    else:
        cells = [frame(CellType.RELAY, secrets.randbits(32) | 1, secrets.token_bytes(200)) for _ in range(256)]
    sent = 0
    stop = time.monotonic() + args.seconds
    batch = 64
    period = batch / args.rate if args.rate else 0.0
    next_batch = time.monotonic()
    while time.monotonic() < stop:
        for i in range(batch):
            try:
                sock.sendto(cells[(sent + i) & 255], target)
            except (BlockingIOError, OSError):
                pass
        sent += batch
        if period:
            next_batch += period
            delay = next_batch - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(sent, flush=True)


def probe(node_id: bytes, onion: bytes, port: int, interval: float, wait: float, count: int) -> tuple[int, int, int]:
    """Send ``count`` valid CREATEs from fresh sockets; (created, refused, lost)."""
    from tunnels.wire.cells import CellType, frame
    created = refused = lost = 0
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(wait)
        token = secrets.token_bytes(16)
        circuit_id = secrets.randbits(32) | 1
        started = time.monotonic()
        sock.sendto(create_cell(circuit_id, node_id, onion, token), ("127.0.0.1", port))
        try:
            answer = sock.recv(2048)
        except TimeoutError:
            lost += 1
        else:
            if answer[1] == CellType.CREATED:
                created += 1
                sock.sendto(frame(CellType.DESTROY, circuit_id, token), ("127.0.0.1", port))
            else:
                refused += 1
        sock.close()
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return created, refused, lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="wrong,valid,unknown")
    parser.add_argument("--rates", default="5000,20000,50000,100000,0", help="datagrams/s, 0 = flat out")
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.4)
    parser.add_argument("--wait", type=float, default=0.5)
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--target-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--node-id", help=argparse.SUPPRESS)
    parser.add_argument("--onion", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "flooder":
        flooder(args)
        return 0
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p))
    work = tempfile.mkdtemp(prefix="txtunnels-flood-")
    key_file = os.path.join(work, "relay.key")
    udp_port, status_port = free_port(socket.SOCK_DGRAM), free_port()
    relay = subprocess.Popen([sys.executable, "-c", TWISTD, "--reactor=asyncio", "-n", "--pidfile=", "--logfile=-",
                              "tunnels", "--testnet", "--host", "127.0.0.1", "--port", str(udp_port),
                              "--status-port", str(status_port), "--status-interval", "0", "--key-file", key_file],
                             cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                status(status_port)
                break
            except OSError:
                time.sleep(0.1)
        node_id, onion = identity(key_file)
        from tunnels.core.transport import RECEIVE_BUFFER
        try:
            with open("/proc/sys/net/core/rmem_max") as f:
                granted = 2 * min(RECEIVE_BUFFER, int(f.read()))
        except OSError:
            granted = 0
        print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; {os.cpu_count()} cores; "
              f"relay receive buffer {granted} bytes (asked {RECEIVE_BUFFER}, Linux doubles, net.core.rmem_max caps)",
              flush=True)
        print(f"{'flood':8} {'asked/s':>8} {'sent/s':>8} {'read/s':>8} {'lost':>6} {'withheld':>8} "
              f"{'probes ok':>9} {'refused':>7} {'lost':>5}")
        base = probe(node_id, onion, udp_port, args.interval, args.wait, args.probes)
        print(f"{'none':8} {0:8d} {0:8d} {'-':>8} {'-':>6} {'-':>8} {base[0]:>6}/{args.probes:<2} "
              f"{base[1]:7d} {base[2]:5d}", flush=True)
        seconds = args.probes * args.interval + 1.0
        for kind in args.kinds.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                before = status(status_port)
                flood = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "flooder",
                                          "--kind", kind, "--rate", str(rate), "--seconds", str(seconds),
                                          "--target-port", str(udp_port), "--node-id", node_id.hex(),
                                          "--onion", onion.hex()],
                                         env=env, stdout=subprocess.PIPE, text=True)
                time.sleep(0.5)
                created, refused, lost = probe(node_id, onion, udp_port, args.interval, args.wait, args.probes)
                sent = int(flood.communicate(timeout=seconds + 30)[0].strip() or 0)
                time.sleep(1.0)
                after = status(status_port)
                read = (after["bytes_down"] - before["bytes_down"]) / CELL
                withheld = sum(after["drops_by_reason"].get(r, 0) - before["drops_by_reason"].get(r, 0)
                               for r in ("destroy_withheld",))
                print(f"{kind:8} {int(rate):8d} {sent / seconds:8.0f} {read / seconds:8.0f} "
                      f"{max(0.0, 1 - read / sent) if sent else 0:6.1%} {withheld:8d} "
                      f"{created:>6}/{args.probes:<2} {refused:7d} {lost:5d}", flush=True)
                time.sleep(2.0)  # let the probes' token bucket refill
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
