# -*- test-case-name: test.test_community -*-
"""What a node offers (relay, exit, introduction point), carried in IPv8 introductions.

Every node puts one byte of :class:`~tunnels.core.pathsel.PeerFlag` in the extra bytes of the
introduction requests and responses it sends, and notes the byte of every peer it hears from.
A peer's flags are a claim: path selection uses them, and an exit is only believed when it
works (doc/protocol.md section 6).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ipv8.community import Community
from ipv8.peer import Peer

from .pathsel import PeerFlag

MAX_NOTED = 4096
"""Peers whose flags a node remembers at most."""

_Base = Community if TYPE_CHECKING else object


class PeerFlagsMixin(_Base):
    """Introductions of a :class:`~tunnels.community.TunnelCommunity` that carry its flags.

    The host class provides ``settings``, ``dht_provider`` and the ``peer_flags`` table.
    """

    settings: Any
    dht_provider: Any
    peer_flags: dict[bytes, PeerFlag]

    def my_flags(self) -> PeerFlag:
        """What we advertise: relay if we join circuits, exit if we exit, intro point with a DHT."""
        flags = PeerFlag(0)
        if self.settings.max_joined_circuits > 0:
            flags |= PeerFlag.RELAY
            if self.settings.become_exitnode:
                flags |= PeerFlag.EXIT
            if self.dht_provider is not None:
                flags |= PeerFlag.INTRO
        return flags

    def create_introduction_request(self, socket_address: Any, extra_bytes: bytes = b"",
                                    new_style: bool = False, prefix: bytes | None = None) -> bytes:
        return super().create_introduction_request(socket_address, bytes((self.my_flags(),)), new_style, prefix)

    def create_introduction_response(self, lan_socket_address: Any, socket_address: Any, identifier: int,
                                     introduction: Peer | None = None, extra_bytes: bytes = b"",
                                     prefix: bytes | None = None, new_style: bool = False) -> bytes:
        return super().create_introduction_response(lan_socket_address, socket_address, identifier, introduction,
                                                    bytes((self.my_flags(),)), prefix, new_style)

    def introduction_request_callback(self, peer: Peer, dist: Any, payload: Any) -> None:
        self._note_flags(peer, payload.extra_bytes)

    def introduction_response_callback(self, peer: Peer, dist: Any, payload: Any) -> None:
        self._note_flags(peer, payload.extra_bytes)

    def _note_flags(self, peer: Peer, extra: bytes) -> None:
        if len(extra) >= 1 and len(self.peer_flags) < MAX_NOTED:
            self.peer_flags[peer.mid] = PeerFlag(extra[0] & (PeerFlag.RELAY | PeerFlag.EXIT | PeerFlag.INTRO))
