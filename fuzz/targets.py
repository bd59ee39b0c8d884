"""Fuzz targets: every parser of untrusted input, each with its contract.

A target takes the fuzzer's bytes and feeds them to one parser (several parsers of one
format share a target).  The contract (Tor's fuzzing harnesses use the same one): a
parser returns a value or raises its *documented* error; anything else is a crash.
Where a format has an encoder, what was decoded must encode and decode back to the
same value (a decoder must not accept what its own side could never send back).
Targets are plain functions, so the quick pass in ``test/test_fuzz.py`` and the
coverage-guided runs (:mod:`fuzz.run`) call exactly the same code.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable

from twisted.internet.task import Clock

from tunnels.community import TunnelCommunitySettings, _resolve_settings
from tunnels.core.reassembly import ReassemblyBuffer
from tunnels.core.relay import RelayRole
from tunnels.core.routing import LinkTable
from tunnels.crypto.onion import HopKeys, IntegrityError, ReplayError, peel_forward, unwrap_backward
from tunnels.crypto.replay import ReplayWindow
from tunnels.daemon.bootstrap import parse_bootstrap_list
from tunnels.daemon.guardfile import GuardFileError, decode as decode_guards, encode as encode_guards
from tunnels.daemon.keyfile import KeyFileError, check_key
from tunnels.dht.krpc import KRPCDecodeError, decode_message as decode_krpc
from tunnels.errors import DecodeError
from tunnels.hidden.e2e import E2ESession
from tunnels.settings import TunnelSettings
from tunnels.socks5 import codec as socks5
from tunnels.stats import Stats
from tunnels.wire import fragments, hidden, relay
from tunnels.wire.cells import BODY_SIZE, PAYLOAD_SIZE, Create, Created, parse_link_header

Target = Callable[[bytes], None]

_KEYS = random.Random(12).randbytes(192)
_HOPS = [HopKeys(random.Random(i).randbytes(192)) for i in range(3)]
_E2E_MATERIAL = random.Random(13).randbytes(96)


def _fixed(data: bytes, size: int) -> bytes:
    """``data`` cut or zero-padded to ``size`` bytes (cells have one size on the wire)."""
    return data[:size].ljust(size, b"\0")


def cells(data: bytes) -> None:
    """Link framing and the CREATE/CREATED payloads (:mod:`tunnels.wire.cells`)."""
    try:
        parse_link_header(data)
    except DecodeError:
        pass
    for kind in (Create, Created):
        try:
            value = kind.decode(data)
        except DecodeError:
            continue
        assert kind.decode(value.encode()) == value


def relay_messages(data: bytes) -> None:
    """Relay messages, addresses, DATA, DATA_REFUSED, FLOW_END and EXTEND (:mod:`tunnels.wire.relay`)."""
    try:
        command, body = relay.decode_message(data)
    except DecodeError:
        pass
    else:
        if len(body) <= relay.MAX_MESSAGE_DATA:
            again = relay.decode_message(relay.encode_message(command, body))  # type: ignore[arg-type]
            assert again == (command, body)
    try:
        flow, address, payload = relay.decode_data(data)
    except DecodeError:
        pass
    else:
        assert relay.decode_data(relay.encode_data(address, payload, flow)) == (flow, address, payload)
    try:
        flow, destination, reason = relay.decode_refusal(data)
    except DecodeError:
        pass
    else:
        # the reason is free text (re-encoding replaces what is not ASCII); the rest must name back
        assert relay.decode_refusal(relay.encode_refusal(flow, destination, reason))[:2] == (flow, destination)
    try:
        ended = relay.decode_flow_end(data)
    except DecodeError:
        pass
    else:
        assert relay.decode_flow_end(relay.flow_header(ended)) == ended
    try:
        extend = relay.Extend.decode(data)
    except DecodeError:
        pass
    else:
        assert relay.Extend.decode(extend.encode()) == extend


class _End:
    """A circuit end as reassembly sees it (it keeps its ``reassembly`` there)."""

    reassembly = None


def fragments_and_reassembly(data: bytes) -> None:
    """Pieces of fragmented datagrams (:mod:`tunnels.wire.fragments`) and their reassembly
    (:mod:`tunnels.core.reassembly`): ``data`` is a run of pieces, each behind a one-byte
    length.  Reassembly never raises and never holds more than its bounds."""
    try:
        fragments.unpad(data)
    except DecodeError:
        pass
    drops: list[str] = []
    buffer = ReassemblyBuffer(4096, drops.append, limit=8192, circuit_limit=4096)
    ends = [_End(), _End()]
    offset = 0
    while offset < len(data):
        size = data[offset]
        piece = data[offset + 1:offset + 1 + size]
        offset += 1 + size
        message = buffer.add_encoded(ends[size % 2], piece)
        assert message is None or len(message) <= buffer.max_message
        assert buffer.used <= buffer.limit
        buffer.sweep(offset / 64)


def hidden_messages(data: bytes) -> None:
    """Hidden-service messages (:mod:`tunnels.wire.hidden`)."""
    decoders: list[Callable[[bytes], object]] = [
        hidden.EstablishIntro.decode, hidden.IntroReply.decode, hidden.RendezvousInfo.decode,
        lambda d: hidden.Introduce.decode(d, with_intro=True), lambda d: hidden.Introduce.decode(d, with_intro=False),
        lambda d: hidden.Introduce.decode(d, with_intro=False, with_last_hop=True)]
    for decode in decoders:
        try:
            value = decode(data)
        except DecodeError:
            continue
        assert decode(value.encode()) == value  # type: ignore[attr-defined]


def onion_layers(data: bytes) -> None:
    """Forward and backward onion layers on any payload of the cell size (the seeds are valid
    cells under the target's fixed keys): a payload or IntegrityError/ReplayError."""
    payload = _fixed(data, PAYLOAD_SIZE)
    try:
        _, peeled = peel_forward(HopKeys(_KEYS), ReplayWindow(), payload)
    except (IntegrityError, ReplayError):
        pass
    else:
        assert len(peeled) == PAYLOAD_SIZE
    for hops in (_HOPS[:1], _HOPS[:2]):
        try:
            _, body = unwrap_backward(hops, [ReplayWindow() for _ in hops], payload)
        except (IntegrityError, ReplayError):
            continue
        assert len(body) == BODY_SIZE


def end_to_end(data: bytes) -> None:
    """End-to-end messages between hidden-service members (:mod:`tunnels.hidden.e2e`)."""
    try:
        E2ESession(_E2E_MATERIAL, initiator=True).open(data)
    except (DecodeError, ReplayError, IntegrityError):
        pass


def krpc(data: bytes) -> None:
    """KRPC datagrams of the mainline DHT (:mod:`tunnels.dht.krpc`)."""
    try:
        decode_krpc(data)
    except KRPCDecodeError:
        pass


def socks5_requests(data: bytes) -> None:
    """SOCKS5 greetings, RFC 1929 credentials, requests and UDP request headers (:mod:`tunnels.socks5.codec`)."""
    try:
        socks5.parse_greeting(data)
    except socks5.Socks5Error:
        pass
    try:
        credentials = socks5.parse_userpass(data)
    except socks5.Socks5Error:
        credentials = None
    if credentials is not None:
        (username, password), used = credentials
        assert socks5.parse_userpass(socks5.encode_userpass(username, password)) == ((username, password), used)
    try:
        parsed = socks5.parse_request(data)
    except socks5.Socks5Error:
        parsed = None
    if parsed is not None:
        request, _ = parsed
        head = bytes((socks5.VERSION, request.command, 0)) + socks5.encode_address(request.host, request.port)
        again = socks5.parse_request(head)
        assert again is not None and again[0] == request
    try:
        datagram = socks5.parse_udp_datagram(data)
    except socks5.Socks5Error:
        return
    again_udp = socks5.parse_udp_datagram(
        bytes((0, 0, datagram.frag)) + socks5.encode_address(datagram.host, datagram.port) + datagram.payload)
    assert again_udp == datagram


def key_file(data: bytes) -> None:
    """The daemon's identity key file (:mod:`tunnels.daemon.keyfile`)."""
    try:
        check_key(data)
    except KeyFileError:
        pass


def guard_file(data: bytes) -> None:
    """The entry-guard file (:mod:`tunnels.daemon.guardfile`)."""
    try:
        guards = decode_guards(data)
    except GuardFileError:
        return
    assert decode_guards(encode_guards(guards)) == guards


def bootstrap_list(data: bytes) -> None:
    """Bootstrap lists fetched over HTTPS (:mod:`tunnels.daemon.bootstrap`), after the UTF-8
    decoding the fetcher does."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_bootstrap_list(text)
    except ValueError:
        pass


def ipv8_settings(data: bytes) -> None:
    """Settings as an IPv8 config gives them (JSON values set one by one on the community
    settings): refused with TypeError or ValueError, or usable by a relay."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return
    if not isinstance(document, dict):
        return
    fields = {k: v for k, v in document.items() if k in TunnelSettings.field_names()}
    try:
        settings = _resolve_settings(TunnelCommunitySettings(**fields))
    except (TypeError, ValueError):
        return
    RelayRole(identity=_identity(), node_id=bytes(20), settings=settings, clock=Clock(), send=lambda a, d: None,
              table=LinkTable(16), stats=Stats(), find_peer=lambda a: None, extend_allowed=lambda a: None,
              open_exit=None, reassembly=ReassemblyBuffer(settings.max_datagram_size + relay.MAX_ADDRESS, Stats().drop))


def _identity():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    return X25519PrivateKey.from_private_bytes(bytes(range(32)))


TARGETS: dict[str, Target] = {
    "cells": cells,
    "relay_messages": relay_messages,
    "fragments": fragments_and_reassembly,
    "hidden_messages": hidden_messages,
    "onion_layers": onion_layers,
    "end_to_end": end_to_end,
    "krpc": krpc,
    "socks5_requests": socks5_requests,
    "key_file": key_file,
    "guard_file": guard_file,
    "bootstrap_list": bootstrap_list,
    "ipv8_settings": ipv8_settings,
}
"""Every target by name (the corpus folder under ``fuzz/corpus/`` has the same name)."""
