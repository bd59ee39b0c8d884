"""The sliding replay window."""
from twisted.trial.unittest import SynchronousTestCase

from tunnels.crypto.replay import WINDOW, ReplayWindow


class WindowTests(SynchronousTestCase):
    def test_edges(self) -> None:
        """Inside once accepted, twice refused; left of the window refused; far right slides."""
        w = ReplayWindow()
        self.assertTrue(w.check(1000))
        w.mark(1000)
        self.assertFalse(w.check(1000))
        self.assertTrue(w.check(999))
        w.mark(999)
        self.assertFalse(w.check(999))
        self.assertTrue(w.check(1000 - WINDOW + 1))
        self.assertFalse(w.check(1000 - WINDOW))
        w.mark(1000 + 5 * WINDOW)
        self.assertFalse(w.check(1000))
        self.assertTrue(w.check(1000 + 5 * WINDOW - 1))

    def test_check_has_no_side_effect(self) -> None:
        """Checking (as done before authentication) never moves the window."""
        w = ReplayWindow()
        w.mark(10)
        for seq in (5, 11, 10 ** 9):
            w.check(seq)
        self.assertEqual(w.top, 10)
        self.assertTrue(w.check(11))

    def test_first_sequence_number_starts_the_window(self) -> None:
        """A random starting counter (up to 2**62) is accepted."""
        w = ReplayWindow()
        self.assertTrue(w.check(2 ** 61 + 17))


class DuplicateFilterTests(SynchronousTestCase):
    def test_exact_copies_dropped_within_the_window(self) -> None:
        """A fingerprint is new once; a copy within the window is seen; memory stays bounded."""
        from tunnels.crypto.replay import DuplicateFilter
        f = DuplicateFilter(size=4)
        self.assertEqual([f.seen(b"%d" % i) for i in range(4)], [False] * 4)
        self.assertEqual([f.seen(b"%d" % i) for i in range(4)], [True] * 4)
        for i in range(4, 100):
            self.assertFalse(f.seen(b"%d" % i))
            self.assertTrue(f.seen(b"%d" % (i - 4)) or i - 4 < 0)  # the last 4 are always remembered
            self.assertLessEqual(len(f.current) + len(f.previous), 8)
        self.assertFalse(f.seen(b"0"))  # long gone: passes (the originator's window drops it)
        self.assertRaises(ValueError, DuplicateFilter, 0)
