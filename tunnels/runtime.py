# -*- test-case-name: test.test_runtime -*-
"""One event loop for Twisted and IPv8.

pyipv8 3.x is asyncio-only, so Twisted must run on asyncio's loop through
:mod:`twisted.internet.asyncioreactor`.  :func:`install_reactor` installs it once,
before anything imports ``twisted.internet.reactor``; :func:`as_deferred` and
:func:`as_future` bridge coroutines and Deferreds in both directions.
"""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


class ReactorMismatch(RuntimeError):
    """A reactor other than the asyncio reactor is already installed."""


def install_reactor() -> Any:
    """Install Twisted's asyncio reactor (idempotent) and return the reactor.

    Raises :class:`ReactorMismatch` when another reactor was installed first, since
    IPv8 code would then never run.
    """
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        check_reactor(reactor)
        return reactor
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor
    asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor


def check_reactor(reactor: Any) -> None:
    """Raise :class:`ReactorMismatch` unless ``reactor`` runs on asyncio."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    if not isinstance(reactor, AsyncioSelectorReactor):
        raise ReactorMismatch(
            f"txtunnels needs Twisted's asyncio reactor (IPv8 is asyncio-only), found "
            f"{type(reactor).__name__}: run twistd/trial with --reactor=asyncio or call "
            "tunnels.runtime.install_reactor() before importing twisted.internet.reactor")
    asyncio.set_event_loop(reactor._asyncioEventloop)


def as_deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run an asyncio coroutine as a Task and return a Deferred for its result."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


def as_future(d: Deferred[T]) -> asyncio.Future[T]:
    """Wrap a Deferred so asyncio code can await it."""
    return d.asFuture(asyncio.get_event_loop())
