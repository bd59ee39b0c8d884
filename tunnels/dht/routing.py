# -*- test-case-name: test.test_dht_routing -*-
"""Kademlia routing table of BEP 5: k-buckets over the XOR metric (pure, takes ``now``).

Bucket ``i`` holds nodes whose XOR distance to our id has ``160 - i`` significant bits,
i.e. that share exactly ``i`` leading bits with us.  This is the table BEP 5 builds by
only ever splitting the bucket that holds our own id, stored as a list.  Every bucket
keeps at most ``k`` live entries and ``k`` replacement candidates, so the table never
holds more than ``2 * k * 160`` nodes.

Node states follow BEP 5: *good* (answered us within ``stale_after`` seconds, or queried
us within that time after having once answered), *questionable* (quiet for longer) and
*bad* (``max_failures`` queries in a row unanswered).  A full bucket takes a new node only
in place of a bad one; questionable nodes are handed to the node to ping.

Health, as libtorrent keeps it (``routing_table.cpp``): a node that failed even one query is
no longer handed out (:meth:`RoutingTable.closest` returns *confirmed* nodes only, those
with no failure since their last answer); a bad node is evicted at once, and the freshest
replacement candidate moves in.  The table also remembers, for ``failed_ttl`` seconds and
at most :data:`MAX_FAILED` addresses, which addresses failed to answer, so lookups skip
them even when other nodes still list them (:meth:`RoutingTable.recently_failed`); any
datagram from such an address clears it.  :meth:`RoutingTable.next_refresh` picks the
node to query at each maintenance tick: the one we heard from or queried least recently.

Security rules: an entry's address never changes because somebody claims its id from
elsewhere, unless the entry has already failed to answer (so a third party cannot
redirect a healthy entry; a restarted node on a new address gets back in once its old
address stops answering).  At most one entry per address is kept.
"""
from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from tunnels.dht.krpc import ID_LENGTH, Address, NodeInfo, distance

BITS = ID_LENGTH * 8
MAX_FAILED = 256
"""Addresses remembered as recently failed (least recently failed forgotten first)."""


@dataclass(slots=True)
class Entry:
    """What the table knows about one node."""

    node: NodeInfo
    last_response: float
    last_query: float = 0.0
    """When it last queried us (after having answered once)."""
    last_refresh: float = 0.0
    """When maintenance last picked it (:meth:`RoutingTable.next_refresh`)."""
    failures: int = 0

    def is_good(self, now: float, stale_after: float) -> bool:
        """Answered (or queried us after having answered) within ``stale_after`` seconds."""
        return self.failures == 0 and now - max(self.last_response, self.last_query) < stale_after


@dataclass(slots=True)
class Bucket:
    """One k-bucket: live entries (oldest first) and replacement candidates."""

    entries: list[Entry]
    replacements: list[Entry]
    last_changed: float


class RoutingTable:
    """The k-bucket table of one node; never touches the network or the clock."""

    def __init__(self, own_id: bytes, now: float, *, k: int = 8, stale_after: float = 900.0,
                 max_failures: int = 2, failed_ttl: float = 900.0) -> None:
        if len(own_id) != ID_LENGTH:
            raise ValueError("node id must be 20 bytes")
        self.own_id = own_id
        self.k = k
        self.stale_after = stale_after
        self.failed_ttl = failed_ttl
        self.max_failures = max_failures
        self._buckets = [Bucket([], [], now) for _ in range(BITS)]
        self._by_addr: dict[Address, bytes] = {}
        self._failed: OrderedDict[Address, float] = OrderedDict()

    # -- queries ---------------------------------------------------------
    def bucket_index(self, node_id: bytes) -> int:
        """Index of the bucket for ``node_id`` (0: farthest half of the id space)."""
        return BITS - distance(self.own_id, node_id).bit_length()

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self._buckets)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and self._find(node_id) is not None

    def entries(self) -> Iterator[Entry]:
        """All live entries."""
        for bucket in self._buckets:
            yield from bucket.entries

    def get(self, node_id: bytes) -> Entry | None:
        """The live entry for ``node_id``, if any."""
        return self._find(node_id)

    def closest(self, target: bytes, count: int | None = None) -> list[NodeInfo]:
        """Up to ``count`` (default ``k``) confirmed nodes nearest to ``target``: a node
        that failed to answer our last query to it is never handed out (libtorrent's rule)."""
        count = self.k if count is None else count
        nodes = [e.node for e in self.entries() if e.failures == 0]
        nodes.sort(key=lambda n: distance(n.node_id, target))
        return nodes[:count]

    def recently_failed(self, addr: Address, now: float) -> bool:
        """Whether a query to ``addr`` went unanswered within ``failed_ttl`` seconds and
        nothing has been heard from it since."""
        when = self._failed.get(addr)
        return when is not None and now - when < self.failed_ttl

    def next_refresh(self, now: float) -> Entry | None:
        """The entry maintenance should query next: the one heard from or picked least
        recently (libtorrent's ``next_refresh``).  Marks it picked at ``now``."""
        best: Entry | None = None
        for e in self.entries():
            if best is None or max(e.last_response, e.last_refresh) < \
                    max(best.last_response, best.last_refresh):
                best = e
        if best is not None:
            best.last_refresh = now
        return best

    def is_full(self, index: int) -> bool:
        """Whether bucket ``index`` holds ``k`` live entries."""
        return len(self._buckets[index].entries) >= self.k

    def has_room(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is unknown and its bucket would take it now."""
        if node_id == self.own_id or self._find(node_id) is not None:
            return False
        return len(self._buckets[self.bucket_index(node_id)].entries) < self.k

    def questionable(self, now: float) -> list[NodeInfo]:
        """Live nodes that are not good any more and should be pinged."""
        return [e.node for e in self.entries() if not e.is_good(now, self.stale_after)]

    def stale_buckets(self, now: float) -> list[int]:
        """Indexes of buckets unchanged for ``stale_after`` seconds that are worth refreshing:
        every bucket up to the deepest non-empty one (buckets beyond it are empty by
        nature, there are not enough nodes that close to us)."""
        deepest = max((i for i, b in enumerate(self._buckets) if b.entries), default=0)
        return [i for i in range(deepest + 1)
                if now - self._buckets[i].last_changed >= self.stale_after]

    def random_id_in_bucket(self, index: int, rng: random.Random) -> bytes:
        """A random id that falls into bucket ``index`` (the target of a refresh lookup)."""
        own = int.from_bytes(self.own_id, "big")
        flip = 1 << (BITS - 1 - index)
        low = rng.getrandbits(BITS - 1 - index) if index < BITS - 1 else 0
        value = ((own ^ flip) >> (BITS - 1 - index) << (BITS - 1 - index)) | low
        return value.to_bytes(ID_LENGTH, "big")

    def touch_bucket(self, index: int, now: float) -> None:
        """Mark bucket ``index`` as refreshed (a lookup into it was started)."""
        self._buckets[index].last_changed = now

    # -- updates ---------------------------------------------------------
    def note_response(self, node: NodeInfo, now: float) -> list[NodeInfo]:
        """``node`` answered one of our queries.

        Inserts or refreshes it.  Returns the questionable nodes of a full bucket that
        the caller should ping (the newcomer waits among the replacements meanwhile).
        """
        self._failed.pop(node.addr, None)
        if node.node_id == self.own_id:
            return []
        index = self.bucket_index(node.node_id)
        bucket = self._buckets[index]
        entry = self._find(node.node_id)
        if entry is not None:
            if entry.node.addr != node.addr:
                if entry.failures == 0:
                    return []           # a healthy entry keeps its address
                self._by_addr.pop(entry.node.addr, None)
                self._drop_addr(node.addr)
                entry.node = node
                self._by_addr[node.addr] = node.node_id
            entry.last_response = now
            entry.failures = 0
            bucket.last_changed = now
            return []
        self._drop_addr(node.addr)
        new = Entry(node, now)
        if len(bucket.entries) < self.k:
            self._add(bucket, new, now)
            return []
        self._add_replacement(bucket, new)
        return [e.node for e in bucket.entries if not e.is_good(now, self.stale_after)]

    def note_query(self, node_id: bytes, addr: Address, now: float) -> bool:
        """``node_id`` at ``addr`` sent us a query.

        Refreshes a known entry and returns ``False``.  Returns ``True`` if the node is
        unknown and its bucket has room: the caller should ping it before adding it
        (a query alone proves nothing about reachability, BEP 43 read-only nodes must
        stay out, and the ping's answer proves the source address is not spoofed).
        """
        self._failed.pop(addr, None)
        if node_id == self.own_id:
            return False
        entry = self._find(node_id)
        if entry is not None:
            if entry.node.addr == addr:
                entry.last_query = now
            return False
        return len(self._buckets[self.bucket_index(node_id)].entries) < self.k

    def note_failure(self, node_id: bytes | None, addr: Address, now: float) -> None:
        """A query to ``addr`` (believed to be ``node_id``, if known) went unanswered.

        The address counts as recently failed.  The entry stops being handed out at once;
        after ``max_failures`` failures in a row it is evicted, and the freshest
        replacement candidate (a node that answered us) whose address has not failed
        recently moves in.
        """
        self._failed.pop(addr, None)
        self._failed[addr] = now
        if len(self._failed) > MAX_FAILED:
            self._failed.popitem(last=False)
        entry = self._find(node_id) if node_id is not None else None
        if entry is None or entry.node.addr != addr:
            return
        entry.failures += 1
        if entry.failures < self.max_failures:
            return
        bucket = self._buckets[self.bucket_index(entry.node.node_id)]
        self._remove_at(bucket, bucket.entries.index(entry))
        while bucket.replacements:
            repl = bucket.replacements.pop()
            if not self.recently_failed(repl.node.addr, now):
                self._add(bucket, repl, repl.last_response)
                return

    def remove(self, node_id: bytes) -> None:
        """Forget ``node_id`` entirely."""
        bucket = self._buckets[self.bucket_index(node_id)]
        for i, e in enumerate(bucket.entries):
            if e.node.node_id == node_id:
                self._remove_at(bucket, i)
                return

    # -- internals -------------------------------------------------------
    def _find(self, node_id: bytes) -> Entry | None:
        if len(node_id) != ID_LENGTH or node_id == self.own_id:
            return None
        for e in self._buckets[self.bucket_index(node_id)].entries:
            if e.node.node_id == node_id:
                return e
        return None

    def _drop_addr(self, addr: Address) -> None:
        """Keep one entry per address: a node that restarted with a new id replaces its old one."""
        old_id = self._by_addr.get(addr)
        if old_id is not None:
            self.remove(old_id)
        for bucket in self._buckets:
            bucket.replacements = [r for r in bucket.replacements if r.node.addr != addr] \
                if any(r.node.addr == addr for r in bucket.replacements) else bucket.replacements

    def _add(self, bucket: Bucket, entry: Entry, now: float) -> None:
        bucket.entries.append(entry)
        bucket.replacements = [r for r in bucket.replacements
                               if r.node.node_id != entry.node.node_id]
        bucket.last_changed = now
        self._by_addr[entry.node.addr] = entry.node.node_id

    def _add_replacement(self, bucket: Bucket, entry: Entry) -> None:
        bucket.replacements = [r for r in bucket.replacements
                               if r.node.node_id != entry.node.node_id]
        bucket.replacements.append(entry)
        if len(bucket.replacements) > self.k:
            del bucket.replacements[0]

    def _remove_at(self, bucket: Bucket, i: int) -> None:
        entry = bucket.entries.pop(i)
        if self._by_addr.get(entry.node.addr) == entry.node.node_id:
            del self._by_addr[entry.node.addr]
