"""Shared test helpers: run coroutines as trial tests, wait on conditions."""
from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred

from tunnels.runtime import as_deferred


def async_test(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Deferred[Any]]:
    """Let a trial test method be ``async def`` and await asyncio things."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[Any]:
        return as_deferred(fn(*args, **kwargs))
    return wrapper


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01,
                   what: str = "condition") -> None:
    """Poll ``predicate`` on the running loop until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
