# -*- test-case-name: test.test_bootstrap_fetch -*-
"""Bootstrap peers: ``host:port`` parsing and lists fetched over verified HTTPS.

A bootstrap list decides which peers a new node first talks to, so whoever can
change it in transit can put a node into a network of their own (an eclipse).
Lists are therefore fetched only over HTTPS, with the certificate checked against
trusted roots *and* the URL's host name (:class:`BrowserLikePolicyForHTTPS`); a
plain ``http://`` URL is refused rather than silently accepted.
"""
from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, ResponseDone, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from ..errors import TunnelError

Address = tuple[str, int]
MAX_LIST_BYTES = 64 * 1024
"""Largest bootstrap list accepted (a list is a few lines; more is an error or an attack)."""
MAX_ENTRIES = 256
"""Most peers taken from one list."""


class BootstrapFetchError(TunnelError):
    """A bootstrap list could not be fetched, verified or parsed."""


def parse_address(text: str) -> Address:
    """Parse ``host:port`` (``[v6]:port`` for IPv6) into ``(host, port)``.

    :raises ValueError: no port, a port outside 1..65535 or an empty host.
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [ipv6]:port, got {text!r}")
        ipaddress.IPv6Address(host)
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"expected host:port, got {text!r}")
    if not host:
        raise ValueError(f"empty host in {text!r}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 1..65535 in {text!r}")
    return host, int(port_text)


def parse_bootstrap_list(text: str) -> list[Address]:
    """Parse one ``host:port`` per line; blank lines and ``#`` comments are skipped.

    :raises ValueError: a line is malformed (naming its line number) or the list
        has more than :data:`MAX_ENTRIES` entries.
    """
    result: list[Address] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            result.append(parse_address(line))
        except ValueError as e:
            raise ValueError(f"line {number}: {e}") from None
        if len(result) > MAX_ENTRIES:
            raise ValueError(f"more than {MAX_ENTRIES} entries")
    return result


def check_url(url: str) -> str:
    """Return ``url`` if it is an ``https://`` URL with a host; raise ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"bootstrap URLs must use https:// (got {url!r}): a list fetched in the clear "
                         "could be replaced by an attacker")
    if not parts.hostname:
        raise ValueError(f"bootstrap URL {url!r} has no host")
    return url


def trust_root_from_pem(pem: bytes) -> Any:
    """A Twisted trust root accepting only the CA certificate(s) in ``pem`` (for private CAs and tests)."""
    from twisted.internet.ssl import Certificate
    return Certificate.loadPEM(pem)


def fetch_bootstrap_list(reactor: Any, url: str, *, trust_root: Any = None,
                         timeout: float = 30.0) -> Deferred[list[Address]]:
    """Fetch ``url`` over HTTPS and parse it with :func:`parse_bootstrap_list`.

    The server certificate must chain to ``trust_root`` (the platform's roots when
    None; see :func:`trust_root_from_pem`) and match the URL's host.

    :raises BootstrapFetchError: (as the Deferred's failure) on a refused URL, a
        TLS or name verification failure, a non-200 answer, a body over
        :data:`MAX_LIST_BYTES`, a malformed list, or ``timeout`` seconds passing.
    """
    try:
        check_url(url)
    except ValueError as e:
        return _failed(BootstrapFetchError(str(e)))
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust_root))
    d: Deferred[Any] = agent.request(b"GET", url.encode("ascii"), Headers({b"User-Agent": [b"txtunnels"]}))

    def got_response(response: Any) -> Deferred[bytes]:
        if response.code != 200:
            response.deliverBody(_Discard())
            raise BootstrapFetchError(f"{url}: HTTP {response.code} {response.phrase.decode('latin-1')}")
        if response.length is not None and response.length != UNKNOWN_LENGTH and response.length > MAX_LIST_BYTES:
            response.deliverBody(_Discard())
            raise BootstrapFetchError(f"{url}: list of {response.length} bytes exceeds {MAX_LIST_BYTES}")
        body: Deferred[bytes] = Deferred()
        response.deliverBody(_LimitedBody(body, MAX_LIST_BYTES))
        return body

    def parse(body: bytes) -> list[Address]:
        try:
            return parse_bootstrap_list(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise BootstrapFetchError(f"{url}: bad bootstrap list: {e}") from e

    def explain(failure: Failure) -> Failure:
        if failure.check(BootstrapFetchError):
            return failure
        raise BootstrapFetchError(f"cannot fetch {url}: {_describe(failure)}")

    d.addCallback(got_response)
    d.addCallback(parse)
    d.addTimeout(timeout, reactor)
    d.addErrback(explain)
    return d


def _describe(failure: Failure) -> str:
    """One readable line for Agent failures, which nest the real cause in lists."""
    from twisted.internet.defer import TimeoutError as DeferTimeout
    if failure.check(DeferTimeout):
        return "timed out"
    if failure.check(ResponseNeverReceived):
        reasons = getattr(failure.value, "reasons", [])
        text = "; ".join(_describe(reason) for reason in reasons) or "no response"
        return text
    value = failure.value
    name = type(value).__name__
    text = str(value)
    if "VerificationError" in name or "Mismatch" in text or "certificate verify failed" in text:
        return f"TLS verification failed (certificate not trusted or not issued for this host name): {name}: {text}"
    return f"{name}: {text}"


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


class _LimitedBody(Protocol):
    """Collect a response body, refusing more than ``limit`` bytes."""

    def __init__(self, done: Deferred[bytes], limit: int) -> None:
        self.done = done
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.size += len(data)
        if self.size > self.limit:
            if not self.done.called:
                self.done.errback(BootstrapFetchError(f"bootstrap list exceeds {self.limit} bytes"))
            self.transport.stopProducing()  # type: ignore[union-attr]
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.done.called:
            return
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


class _Discard(Protocol):
    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        pass
