"""A quick pass of every fuzz target (``fuzz/``): the committed corpus, every saved crash
(regressions) and a few hundred hypothesis inputs each.  ``python -m fuzz`` runs the same
targets coverage-guided for as long as you like."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from twisted.trial.unittest import SynchronousTestCase

from fuzz.run import CORPUS, corpus_of
from fuzz.strategies import inputs
from fuzz.targets import TARGETS


def _quick(name: str):  # type: ignore[no-untyped-def]
    target = TARGETS[name]

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(inputs(corpus_of(name)))
    def test(self: SynchronousTestCase, data: bytes) -> None:
        target(data)
    test.__doc__ = f"The {name} target holds on mutated seeds and random bytes."
    return test


class FuzzTargetTests(SynchronousTestCase):
    def test_every_target_has_a_corpus(self) -> None:
        """Each target starts from committed seeds, and each seed passes its target."""
        self.assertEqual(sorted(p.name for p in CORPUS.iterdir() if p.is_dir()), sorted(TARGETS))
        for name, target in TARGETS.items():
            seeds = corpus_of(name)
            self.assertTrue(seeds, name)
            for data in seeds:  # includes fuzz/crashes/<name>/: every crash found stays fixed
                target(data)

    def test_the_harness_sees_a_broken_parser(self) -> None:
        """A decoder that accepts what its encoder refuses is reported (the check behind the
        hostname bug the fuzzer found)."""
        from tunnels.wire import relay
        original = relay.decode_address

        def lax(data: bytes, offset: int = 0):  # type: ignore[no-untyped-def]
            if data[offset:offset + 1] == b"\x03":
                end = offset + 2 + data[offset + 1]
                return (data[offset + 2:end].decode("latin-1"), 53), end + 2
            return original(data, offset)
        self.patch(relay, "decode_address", lax)
        self.assertRaises(ValueError, TARGETS["relay_messages"], b"\x00\x01" + b"\x03\x03a\x00b\x00\x35")


for _name in TARGETS:
    setattr(FuzzTargetTests, f"test_quick_{_name}", _quick(_name))
