"""TunnelSettings: the seed's defaults, validation, immutability."""
from dataclasses import FrozenInstanceError, replace

from twisted.trial.unittest import SynchronousTestCase

from tunnels.settings import TunnelSettings


class SettingsTests(SynchronousTestCase):
    def test_seed_defaults(self) -> None:
        """Defaults are the original tunnel community's."""
        s = TunnelSettings()
        self.assertEqual((s.min_circuits, s.max_circuits, s.max_joined_circuits, s.max_time, s.max_time_inactive,
                          s.max_traffic, s.become_exitnode), (1, 8, 100, 600.0, 20.0, 250 * 1024 * 1024, False))

    def test_bad_values_raise(self) -> None:
        """Inconsistent or mistyped settings raise ValueError/TypeError at construction."""
        for kwargs, error in (({"min_circuits": 3, "max_circuits": 2}, ValueError),
                              ({"min_circuits": -1}, ValueError), ({"max_circuits": 0}, ValueError),
                              ({"max_traffic": 0}, ValueError), ({"max_time": 0}, ValueError),
                              ({"max_time_inactive": 700}, ValueError), ({"min_circuits": 1.5}, TypeError),
                              ({"max_circuits": True}, TypeError), ({"become_exitnode": "yes"}, TypeError),
                              ({"exit_ports": [53]}, TypeError), ({"exit_ports": (0,)}, ValueError),
                              ({"max_time": "10"}, TypeError), ({"max_time": float("inf")}, ValueError),
                              ({"create_rate": float("inf")}, ValueError),
                              ({"build_timeout": float("nan")}, ValueError),
                              ({"max_joined_prefix_share": 0}, ValueError), ({"create_burst_total": 0}, ValueError)):
            with self.assertRaises(error, msg=repr(kwargs)):
                TunnelSettings(**kwargs)

    def test_immutable_and_independent(self) -> None:
        """Settings cannot be mutated; variants come from replace() and share nothing mutable."""
        a = TunnelSettings()
        with self.assertRaises(FrozenInstanceError):
            a.min_circuits = 5  # type: ignore[misc]
        b = replace(a, min_circuits=4, max_circuits=4)
        self.assertEqual((a.min_circuits, b.min_circuits), (1, 4))
        self.assertIsInstance(a.exit_ports, tuple)
