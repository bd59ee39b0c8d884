"""Write the seed corpus: valid examples of every format (``python -m fuzz.seeds``).

The fuzzer starts from these, so it explores the parsers' deep paths at once instead of
rediscovering each format byte by byte.  Rerunning it rewrites equivalent files (cell padding
and onion junk come from the CSPRNG); they are committed under ``fuzz/corpus/<target>/``.
"""
from __future__ import annotations

import json
import random

from fastbencode import bencode

from fuzz.run import CORPUS
from tunnels.crypto.onion import HopKeys, add_backward, originate_backward, wrap_forward
from tunnels.hidden.e2e import E2ESession
from tunnels.socks5 import codec as socks5
from tunnels.wire import fragments, hidden, relay
from tunnels.wire.cells import BODY_SIZE, CellType, Create, Created, frame
from fuzz import targets

rng = random.Random(2026)


def b(n: int) -> bytes:
    return rng.randbytes(n)


def seeds() -> dict[str, list[bytes]]:
    """Every target's seeds."""
    body = relay.encode_message(relay.RelayCommand.DATA, relay.encode_data(("192.0.2.1", 53), b"query"))
    member = E2ESession(targets._E2E_MATERIAL, initiator=False)
    member.send_seq = 1000  # fixed, so the seeds are the same on every run
    return {
        "cells": [frame(CellType.CREATE, 7, Create(b(20), b(32), b(32), b(16)).encode()),
                  frame(CellType.CREATED, 7, Created(b(32), b(32)).encode()),
                  frame(CellType.DESTROY, 9, b(16)), frame(CellType.RELAY, 1, b(200))[:300]],
        "relay_messages": [
            relay.encode_message(relay.RelayCommand.DATA, relay.encode_data(("192.0.2.1", 53), b"q"))[:64],
            relay.encode_data(("2001:db8::1", 443), b"payload"), relay.encode_data(("example.org", 80), b"", 7),
            relay.Extend(("198.51.100.7", 7000), b(20), b(32), b(32)).encode(),
            relay.encode_message(relay.RelayCommand.PING, b(8))[:16],
            relay.encode_refusal(3, ("192.0.2.1", 53), "port 53 below 1024"), relay.flow_header(3)],
        "hidden_messages": [
            hidden.EstablishIntro(b(20), b(32), b"").encode(),
            hidden.EstablishIntro(b(20), b(32), b(104)).encode(),
            hidden.Introduce(b(20), b(8), b(20), b(32), ("192.0.2.9", 7000), b(20)).encode(),
            hidden.Introduce(b(20), b(8), b(20), b(32)).encode(),
            hidden.Introduce(b(20), b(8), b(20), b(32), last_hop=("192.0.2.7", 7002), supersedes=b(8)).encode(),
            hidden.IntroReply(b(8), 1).encode(),
            hidden.IntroReply(b(8), 0, b(32), b(32), b(32), b(104), b(80)).encode(),
            hidden.RendezvousInfo(("192.0.2.5", 7001), b(20), b(32), b(20)).encode()],
        "onion_layers": [wrap_forward([HopKeys(targets._KEYS)], [5], body),
                         add_backward(targets._HOPS[0], 3, originate_backward(targets._HOPS[1], 4, bytes(BODY_SIZE)))],
        "end_to_end": [member.seal(b"hello"), member.seal(b"")],
        "krpc": [bencode({b"t": b"aa", b"y": b"q", b"q": b"ping", b"a": {b"id": b(20)}}),
                 bencode({b"t": b"ab", b"y": b"q", b"q": b"get_peers", b"a": {b"id": b(20), b"info_hash": b(20)}}),
                 bencode({b"t": b"ac", b"y": b"q", b"q": b"announce_peer",
                          b"a": {b"id": b(20), b"info_hash": b(20), b"port": 6881, b"token": b(8)}}),
                 bencode({b"t": b"ad", b"y": b"r", b"r": {b"id": b(20), b"nodes": b(26 * 2), b"values": [b(6)]}}),
                 bencode({b"t": b"ae", b"y": b"e", b"e": [203, b"Protocol Error"]})],
        "socks5_requests": [b"\x05\x01\x00", b"\x05\x03\x00" + socks5.encode_address("0.0.0.0", 0),
                            b"\x05\x01\x00" + socks5.encode_address("example.org", 443),
                            socks5.encode_udp_datagram("192.0.2.1", 53, b"payload"),
                            socks5.encode_udp_datagram("2001:db8::2", 4433, b"quic"),
                            socks5.encode_udp_datagram("example.org", 6881, b"d1:ad2:id20:"),
                            socks5.encode_userpass(b"alice", b"secret")],
        "key_file": [b"LibNaCLSK:" + b(64), b"LibNaCLSK:" + bytes(64)],
        "guard_file": [json.dumps({"version": 1, "guards": [
            {"node_id": b(20).hex(), "added_on": 1.7e9, "confirmed_on": 1.71e9, "unlisted_since": None},
            {"node_id": b(20).hex(), "added_on": 1.7e9, "confirmed_on": None, "unlisted_since": 1.72e9}]}).encode()],
        "bootstrap_list": [b"# bootstrap peers\n192.0.2.1:7000\n[2001:db8::1]:7000\nexample.org:7000\n"],
        "ipv8_settings": [json.dumps({"min_circuits": 2, "max_circuits": 4, "max_joined_circuits": 50,
                                      "max_time": 300.0, "become_exitnode": True, "exit_ports": [53],
                                      "create_rate": 5.0}).encode(), b'{"max_time_inactive": 10}'],
        "fragments": [b"".join(bytes((len(p),)) + p for p in fragments.split(b(1500), 7, 200)),
                      b"".join(bytes((len(p),)) + p for p in reversed(fragments.split(b(600), 9, 240)))],
    }


def main() -> None:
    for target, examples in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for index, data in enumerate(examples):
            (folder / f"seed-{index:02d}").write_bytes(data)
        print(f"{target}: {len(examples)} seeds")


if __name__ == "__main__":
    main()
