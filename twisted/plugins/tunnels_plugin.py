# -*- test-case-name: test.test_twistd -*-
"""twistd dropin for ``twistd --reactor=asyncio -n tunnels``.

Import-light on purpose: every twistd and trial run imports every plugin, so the
real code (:mod:`tunnels.daemon.tap`) is imported only when ``tunnels`` is chosen.
There is deliberately no ``__init__.py`` in ``twisted/`` or ``twisted/plugins/``.
"""
from twisted.application.service import ServiceMaker

tunnels = ServiceMaker(
    "txtunnels",
    "tunnels.daemon.tap",
    "Run a txtunnels onion-routing relay or exit (needs --reactor=asyncio)",
    "tunnels",
)
