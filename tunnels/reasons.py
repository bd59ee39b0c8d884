# -*- test-case-name: test.test_reasons -*-
"""What each counted reason means, in one line: shown beside the figure wherever it appears.

A counter such as "dropped datagrams: 6" invites the wrong reading (loss? an attack? a
bug?).  Every drop and refusal reason the code counts has an explanation here, and
:func:`explain` is what the demo, the status page, ``txtunnels status`` and the
documentation print next to it.  ``test.test_reasons`` checks that every reason
literal in the source has an entry, so a new counter cannot ship unexplained.

Three namespaces share the table: the node's drops (``Stats.drop``), the DHT's drops
(``DHTStats.drop``) and the SOCKS5 front end's drops; plus the refusal kinds of
``<what>_refused_<reason>`` events (``exit``, ``extend``, ``create``, ``join``).
"""
from __future__ import annotations

DROPS: dict[str, str] = {
    # cells and circuits (relays and originators)
    "bad_length": "a cell of the wrong size: not our protocol, or corrupted on the way",
    "unknown_circuit": "a cell for a circuit we do not know: usually late cells of a circuit just closed",
    "circuit_id_zero": "a CREATE with circuit id 0, which is reserved",
    "duplicate_create": "a CREATE for a circuit id already in use on that link (a retransmission or a hijack attempt)",
    "malformed_create": "a CREATE cell that does not decode",
    "unexpected_created": "a CREATED for a circuit that was not waiting for one",
    "relay_before_created": "a relay cell from the next hop before it confirmed the extend",
    "destroy_bad_token": "a DESTROY without the link's token: forged or for an old circuit, ignored",
    "unknown_cell_type": "a cell type this version does not know",
    "integrity": "a cell altered on the way (integrity check failed); the circuit is destroyed",
    "replay": "a cell seen before on this circuit (duplicated by the network, or replayed)",
    "backward_duplicate": "an exact copy of a backward cell this relay already passed on (duplicated or replayed)",
    "destroy_withheld": "a refused CREATE not answered: its source network or the node used up its answer budget",
    "malformed_message": "a relay message that does not decode after decryption",
    "unknown_command": "a relay command this version does not know",
    "unexpected_command": "a relay command not allowed on this kind of circuit",
    "wrong_direction": "a relay command that only travels the other way; the circuit is destroyed",
    "unexpected_sendme": "a flow-control SENDME acknowledging more than was sent; the circuit is destroyed",
    "flow_queue_full": "data offered faster than the circuit carries it: dropped at the sender, as UDP may be",
    "internal_error": "a bug of ours while handling a cell (logged with a traceback)",
    # datagrams larger than a cell, arriving in pieces (doc/protocol.md 4.1)
    "malformed_fragment": "a piece of a fragmented datagram whose header does not decode",
    "fragment_duplicate": "a piece of a datagram that already arrived; the datagram is delivered once",
    "fragment_mismatch": "pieces of one datagram that disagree on their number; the datagram is dropped, never spliced",
    "fragment_too_large": "a datagram whose pieces add up to more than the largest UDP datagram",
    "reassembly_timeout": "a datagram missing a piece after 5 s (the piece was lost on the way)",
    "reassembly_circuit_full": "a circuit's oldest partial datagram, dropped to keep its reassembly memory bounded",
    "reassembly_node_full": "the node's oldest partial datagram, dropped to keep reassembly memory bounded",
    "reassembly_closed": "a partial datagram of a circuit or session that ended",
    # datagrams that are not cells (the node's UDP port)
    "not_ours": "a datagram that is neither a cell nor an IPv8 packet of a community we run",
    "cell_without_handler": "a cell arriving while the node was starting or stopping",
    "listener_failed": "an IPv8 listener failed on a datagram (one line logged, within a budget)",
    "ipv8_short": "an IPv8 packet of our overlay with nothing after its 22-byte prefix",
    "ipv8_other_prefix": "an IPv8 packet handed to our overlay with another community's prefix",
    "ipv8_unknown_message": "an IPv8 packet of our overlay with a message id we do not handle",
    "ipv8_deprecated_message": "an IPv8 packet of a message type IPv8 deprecated",
    "ipv8_malformed": "an IPv8 packet of our overlay that does not decode (one line logged, within a budget)",
    "introduction_request_short": "an IPv8 introduction request below 300 bytes: its answer could be larger, so none",
    "introduction_withheld": "an IPv8 introduction request not answered: its network or the node used up the budget",
    "puncture_request_short": "an IPv8 puncture request below 240 bytes: its puncture could be larger, so none",
    "puncture_request_stranger": "an IPv8 puncture request from an address that never answered us: not honoured",
    "puncture_withheld": "an IPv8 puncture request beyond the budget of its network or its target's network",
    "handler_failed": "an application's data, refusal or service callback raised (logged within a budget)",
    # exits
    "malformed_data": "a DATA message whose destination does not decode",
    "malformed_refusal": "an exit's refusal notice that does not decode",
    "exit_bandwidth": "the exit's bandwidth budget (--exit-bandwidth) was used up",
    "exit_send_error": "the exit's socket refused to send (the OS reported an error)",
    "exit_unsolicited": "a datagram to an exit socket from an address that socket's flow never contacted",
    "exit_reply_too_large": "a reply from a destination above the exit's max_datagram_size",
    "exit_too_large": "a datagram the exit's socket could not send whole (above the UDP maximum)",
    "exit_no_ipv6": "an IPv6 destination at an exit whose host has no IPv6",
    "exit_no_ipv4": "an IPv4 destination at an exit whose host would not open another UDP socket",
    "exit_flows_exhausted": "a new flow at an exit that has as many open as it allows in all (1,024)",
    "exit_flow_ended": "a datagram of a flow the originator had ended (reordered behind FLOW_END)",
    "malformed_flow_end": "a FLOW_END message that does not decode (wrong length, or flow 0)",
    "flow_closed": "a reply or refusal for a flow that had ended (its application is gone): delivered to nobody",
    # hidden services
    "introduce_rate": "introductions to an intro point above its rate limit",
    "introduce2_unknown_service": "an introduction for a service we no longer offer",
    "malformed_introduce": "an introduction that does not decode",
    "introduce_withheld": "an introduction from a network (or to a node) beyond its answer budget: not acted on",
    "malformed_introduce2": "a forwarded introduction that does not decode",
    "malformed_introduce_ack": "an introduction answer that does not decode",
    "malformed_hidden_message": "a hidden-service message that does not decode",
    "unexpected_introduce_ack": "an introduction answer nobody waited for (late, after a timeout)",
    "unexpected_intro_reply": "an introduction reply nobody waited for (late, after a timeout)",
    "unexpected_joined": "a rendezvous JOINED nobody waited for (late, after a timeout)",
    "unexpected_rendezvous_established": "a rendezvous confirmation nobody waited for (late, after a timeout)",
    "join_unknown_cookie": "a rendezvous join whose member never came (the wait ended), or a second join for a cookie",
    "join_reused_cookie": "a rendezvous join with a cookie already spent (a replay)",
    "join_refused_full": "a rendezvous join while the table of waiting joins is full",
    "introduce_duplicate": "an introduction with the request id of one still pending here (a replay)",
    "introduce_ack_repeated": "a second answer from the same member to one introduction",
    "e2e_not_spliced": "end-to-end data at a rendezvous point before both sides joined",
    "e2e_without_session": "end-to-end data on a circuit with no hidden-service session",
    "e2e_rejected": "end-to-end data that failed authentication or was replayed",
    "dht_query_without_circuit": "a DHT query of ours with no circuit to send it through (the circuit failed)",
    "dht_query_queue_full": "DHT queries of ours beyond the queue kept while their circuit is built",
    "dht_query_unsendable": "a DHT query of ours the circuit could not carry",
    # DHT node (BEP 5)
    "oversized": "a DHT datagram above the size limit",
    "not_dict": "a DHT datagram that is not a bencoded dictionary",
    "bad_bencode": "a DHT datagram that is not valid bencode",
    "bad_tid": "a DHT message without a usable transaction id",
    "bad_query": "a malformed DHT query",
    "bad_id": "a DHT message with a missing or malformed node id",
    "bad_response": "a malformed DHT response",
    "bad_error": "a malformed DHT error message",
    "bad_type": "a DHT message of an unknown type",
    "unsolicited": "a DHT response to no query of ours (late, after a timeout, or forged)",
    "wrong_source": "a DHT response from another address than the one we asked",
    "query_to_client": "a DHT query sent to a read-only lookup client, which answers none",
    "read_only": "a DHT query to a read-only node (BEP 43), which answers none",
    "rate_limited": "DHT queries from one address above its rate limit",
    "bep42_id": "a DHT node id not derived from its IP address (BEP 42), kept out of the routing table",
    "unanswerable": "a DHT query no reply could answer within 3 times its own size (anti-amplification)",
    "upload_limited": "a DHT reply beyond the node's upload budget",
    "verify_limited": "an unknown DHT node not pinged back, beyond the verification budget",
    "refused_target": "a DHT query of ours not sent: its address is on the never-query list",
    # SOCKS5 front end (UDP ASSOCIATE)
    "foreign_source": "a datagram to an association's UDP port from another program than its client",
    "malformed": "a SOCKS5 UDP datagram with a malformed header",
    "fragment": "a fragmented SOCKS5 datagram (FRAG != 0), which we do not reassemble",
    "no_circuit": "no circuit of that hop count was ready yet; retry, or wait for the pool",
    "bad_destination": "a destination the node refuses to send to (malformed, or a name it never sends)",
    "client_write": "a reply the client's UDP socket would not take",
    "too_large": "a datagram above the node's max_datagram_size",
    "reply_too_large": "a reply too large to wrap in the SOCKS5 header within one IPv4 datagram (over 65,497 bytes)",
    "no_flow": "every ready circuit already carries as many flows as an exit keeps (16): none for this association",
    "no_session": "a datagram to a hidden-service peer name with no live session",
    "peer_in_use": "a datagram to a hidden-service peer another association talks to (they could not be told apart)",
}
"""Drop reason -> one-line explanation."""

REFUSALS: dict[str, str] = {
    # exits refusing a destination (the originator is told why, in a DATA_REFUSED message)
    "exit:not_exit": "DATA to a relay that is not an exit",
    "exit:port_denied": "a UDP port exits always deny (amplification vectors, mail)",
    "exit:port_not_allowed": "a UDP port outside the exit's policy (--exit-ports, or below 1024)",
    "exit:bad_port": "port 0 or out of range",
    "exit:bad_address": "a destination that is not an IP address or a valid name",
    "exit:non_global_address": "a loopback, private, link-local, multicast or reserved address",
    "exit:own_address": "the exit's own address",
    "exit:resolution": "a name that resolved to nothing, or to a refused address",
    "exit:resolver_busy": "too many names being resolved for this circuit at once",
    "exit:too_many_destinations": "more destinations on one circuit than an exit allows",
    "exit:unanswered": "a destination that never answered after a few packets (anti-reflection)",
    "exit:bandwidth": "the exit's bandwidth budget (--exit-bandwidth) was used up",
    "exit:send_failed": "the exit's socket could not send",
    "exit:too_large": "a datagram above the exit's largest datagram (max_datagram_size)",
    "exit:no_ipv6": "an IPv6 destination at an exit whose host has no IPv6",
    "exit:too_many_flows": "a new flow on a circuit that already has 16 open (one per application)",
    "exit:no_socket": "a new flow at an exit out of sockets (1,024 flows open, or the OS refused one)",
    # relays refusing to join a circuit (they answer with a DESTROY)
    "create:not_a_relay": "a CREATE to a node that relays nothing (--max-joined-circuits 0)",
    "create:create_rate": "CREATEs from one address above the rate limit",
    "create:table_full": "the circuit table is full",
    "create:full": "already carrying --max-joined-circuits circuits",
    "create:source_share_exceeded": "one address asked for more than its share of joined circuits",
    "create:prefix_share_exceeded": "one network (/24, /48) asked for more than its share of joined circuits",
    "create:create_rate_prefix": "CREATEs from one network (/24, /48) above its rate limit",
    "create:create_rate_total": "CREATEs from everyone above the node's handshake budget",
    "create:wrong_relay": "a CREATE naming another relay's identity or onion key",
    "create:handshake": "a CREATE whose handshake failed (wrong key, or not meant for us)",
    # relays refusing to extend a circuit (the originator gets EXTEND_FAILED)
    "extend:malformed": "an EXTEND that does not decode",
    "extend:again": "a second EXTEND on a circuit already extended",
    "extend:unknown_peer": "an EXTEND to a peer we have not verified",
    "extend:identity_mismatch": "an EXTEND whose keys do not match the peer at that address",
    "extend:previous_hop": "an EXTEND back to the previous hop",
    "extend:port_0": "an EXTEND to port 0",
    "extend:bad_address": "an EXTEND to a malformed address",
    "extend:non_global_address": "an EXTEND to a loopback, private or reserved address (allowed with --testnet)",
    # hidden services, at relays
    "intro:no_dht": "a request to be an introduction point to a relay without a DHT",
    "intro:circuit_busy": "a request to be an introduction point on a circuit already in use",
    "intro:bad_record": "an introduction-point request with an invalid or expired signed record",
    "intro:squatting": "an unsigned introduction-point request for a service that signs its records",
    "intro:full": "a request to be an introduction point beyond the services a relay serves",
    "introduce:unknown_intro_point": "an introduction to a relay we have not verified as that intro point",
    "introduce:busy": "an introduction while too many are pending",
    "introduce:port_0": "an introduction to port 0",
    "introduce:bad_address": "an introduction to a malformed address",
    "introduce:non_global_address": "an introduction to a loopback, private or reserved address",
    "rendezvous:unusable": "a rendezvous request with a malformed, pending or spent cookie, on a busy circuit, or a full table",
    "join:same_neighbour": "a rendezvous join from the neighbour already on the other side",
}
"""``<what>:<reason>`` -> one-line explanation."""


def explain(reason: str) -> str:
    """The one-line explanation of a drop reason or a ``what:reason`` refusal ("" if unknown)."""
    return DROPS.get(reason) or REFUSALS.get(reason, "")
