"""The single-loop runtime: asyncio reactor, Deferred/coroutine bridges."""
import asyncio

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tunnels.runtime import as_future, check_reactor, install_reactor
from test.util import async_test


class RuntimeTests(TestCase):
    def test_install_is_idempotent(self) -> None:
        """A second install returns the same asyncio reactor."""
        self.assertIs(install_reactor(), reactor)
        check_reactor(reactor)

    @async_test
    async def test_bridges(self) -> None:
        """Coroutines can await Deferreds and asyncio sleeps on the same loop."""
        value = await as_future(deferLater(reactor, 0.01, lambda: 42))
        await asyncio.sleep(0.01)
        self.assertEqual(value, 42)
