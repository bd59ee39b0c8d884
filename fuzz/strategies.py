"""Hypothesis strategies for fuzz inputs: random bytes, and seeds with random edits."""
from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

_EDIT = st.tuples(st.integers(0, 4), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))


def mutate(seed: bytes, edits: Sequence[tuple[int, int, bytes]]) -> bytes:
    """Apply ``edits`` (kind, position, bytes) to ``seed``: overwrite, insert, delete, flip a
    bit, or cut the tail, the way byte-level fuzzers mutate."""
    data = bytearray(seed)
    for kind, position, blob in edits:
        at = position % (len(data) + 1)
        if kind == 0:
            data[at:at + len(blob)] = blob
        elif kind == 1:
            data[at:at] = blob
        elif kind == 2:
            del data[at:at + blob[0] % 16 + 1]
        elif kind == 3 and data:
            data[at % len(data)] ^= 1 << (blob[0] % 8)
        else:
            del data[at:]
    return bytes(data)


def inputs(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, or one of ``seeds`` with up to eight random edits."""
    random_bytes = st.binary(max_size=2048)
    if not seeds:
        return random_bytes
    mutated = st.builds(mutate, st.sampled_from(list(seeds)), st.lists(_EDIT, max_size=8))
    return st.one_of(mutated, random_bytes)
