# -*- test-case-name: test.test_bootstrap_fetch -*-
"""Tests for :mod:`tunnels.daemon.bootstrap`: list parsing and HTTPS fetches against a local TLS server."""
from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, ssl
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tunnels.daemon.bootstrap import (BootstrapFetchError, fetch_bootstrap_list, parse_address, parse_bootstrap_list,
                               trust_root_from_pem)
from tunnels.node import new_key_bin, start_node
from tunnels.runtime import as_future
from tunnels.daemon.service import ServiceStopped, TunnelService
from tunnels.settings import TunnelSettings

from .util import async_test

LIST = b"# txtunnels bootstrap peers\n127.0.0.1:9001\n\n[::1]:9002   # v6\nlocalhost:9003\n"


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed test CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                     dns_name: str) -> bytes:
    """PEM key + certificate for ``dns_name`` (and no IP address), signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + cert.public_bytes(serialization.Encoding.PEM))


def pem(cert: x509.Certificate) -> bytes:
    """A certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


class FetchTests(TestCase):
    """Fetching from a TLS server on 127.0.0.1 whose certificate names only ``localhost``."""

    timeout = 20

    def setUp(self) -> None:
        """Start the server with a certificate from a fresh test CA."""
        ca_key, ca_cert = make_ca("txtunnels test CA")
        self.trust_root = trust_root_from_pem(pem(ca_cert))
        root = Resource()
        root.putChild(b"list", Data(LIST, "text/plain"))
        root.putChild(b"bad", Data(b"127.0.0.1:notaport\n", "text/plain"))
        server = ssl.PrivateCertificate.loadPEM(make_server_cert(ca_key, ca_cert, "localhost"))
        self.port = reactor.listenSSL(0, Site(root), server.options(), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.number = self.port.getHost().port

    def url(self, host: str, path: str = "list") -> str:
        """The URL of ``path`` on our server, reached as ``host``."""
        return f"https://{host}:{self.number}/{path}"

    @async_test
    async def test_right_name(self) -> None:
        """The certificate's name and a trusted CA: the list is fetched and parsed."""
        peers = await as_future(fetch_bootstrap_list(reactor, self.url("localhost"), trust_root=self.trust_root))
        self.assertEqual(peers, [("127.0.0.1", 9001), ("::1", 9002), ("localhost", 9003)])

    @async_test
    async def test_wrong_name(self) -> None:
        """Reaching the same server by a name the certificate lacks fails with a clear TLS error."""
        with self.assertRaises(BootstrapFetchError) as caught:
            await as_future(fetch_bootstrap_list(reactor, self.url("127.0.0.1"), trust_root=self.trust_root))
        self.assertIn("TLS verification failed", str(caught.exception))
        self.assertIn(self.url("127.0.0.1"), str(caught.exception))

    @async_test
    async def test_untrusted_ca(self) -> None:
        """A certificate from a CA we do not trust fails even with the right name."""
        _, other_ca = make_ca("someone else")
        with self.assertRaises(BootstrapFetchError) as caught:
            await as_future(fetch_bootstrap_list(reactor, self.url("localhost"),
                                                 trust_root=trust_root_from_pem(pem(other_ca))))
        self.assertIn("TLS verification failed", str(caught.exception))

    @async_test
    async def test_http_error(self) -> None:
        """A 404 is an error naming the status, not an empty list."""
        with self.assertRaises(BootstrapFetchError) as caught:
            await as_future(fetch_bootstrap_list(reactor, self.url("localhost", "missing"),
                                                 trust_root=self.trust_root))
        self.assertIn("HTTP 404", str(caught.exception))

    @async_test
    async def test_bad_list(self) -> None:
        """A malformed list is an error naming the line."""
        with self.assertRaises(BootstrapFetchError) as caught:
            await as_future(fetch_bootstrap_list(reactor, self.url("localhost", "bad"), trust_root=self.trust_root))
        self.assertIn("line 1", str(caught.exception))

    @async_test
    async def test_plain_http_refused(self) -> None:
        """An http:// URL is refused before any connection is made."""
        with self.assertRaises(BootstrapFetchError) as caught:
            await as_future(fetch_bootstrap_list(reactor, f"http://localhost:{self.number}/list"))
        self.assertIn("https://", str(caught.exception))


class ServiceBootstrapTests(TestCase):
    """TunnelService fetches its bootstrap lists before starting the node."""

    timeout = 20

    @async_test
    async def test_fetched_peers_used(self) -> None:
        """Peers from a verified HTTPS list join the --bootstrap peers, and the node finds them."""
        first = await as_future(start_node(reactor, "127.0.0.1", 0, testnet=True))
        self.addCleanup(first.stop)
        ca_key, ca_cert = make_ca("txtunnels test CA")
        root = Resource()
        root.putChild(b"list", Data(b"%s:%d\n" % (first.address[0].encode(), first.address[1]), "text/plain"))
        server = ssl.PrivateCertificate.loadPEM(make_server_cert(ca_key, ca_cert, "localhost"))
        port = reactor.listenSSL(0, Site(root), server.options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        service = TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(), key_bin=new_key_bin(),
                                testnet=True, status_interval=0, bootstrap=[("127.0.0.1", 1)],
                                bootstrap_urls=[f"https://localhost:{port.getHost().port}/list"],
                                trust_root=trust_root_from_pem(pem(ca_cert)))
        service.startService()
        self.addCleanup(service.stopService)
        node = await as_future(service.when_running())
        self.assertEqual(node.community.bootstrap_addresses, (("127.0.0.1", 1), first.address))

    @async_test
    async def test_stop_during_fetch(self) -> None:
        """Stopping while a list is still being fetched cancels it and never starts a node."""
        silent = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")    # accepts, never does TLS
        self.addCleanup(silent.stopListening)
        service = TunnelService(reactor, host="127.0.0.1", port=0, settings=TunnelSettings(), key_bin=new_key_bin(),
                                testnet=True, status_interval=0,
                                bootstrap_urls=[f"https://localhost:{silent.getHost().port}/list"])
        service.startService()
        waiting = service.when_running()
        await as_future(service.stopService())
        self.assertIsNone(service.node)
        with self.assertRaises(ServiceStopped):
            await as_future(waiting)


class ParseTests(SynchronousTestCase):
    """``host:port`` lines."""

    def test_addresses(self) -> None:
        """IPv4, bracketed IPv6 and names parse; malformed entries raise ValueError."""
        self.assertEqual(parse_address(" 10.0.0.1:53 "), ("10.0.0.1", 53))
        self.assertEqual(parse_address("[2001:db8::1]:443"), ("2001:db8::1", 443))
        self.assertEqual(parse_address("relay.example:9000"), ("relay.example", 9000))
        for bad in ("10.0.0.1", ":53", "h:0", "h:65536", "h:x", "2001:db8::1:53", "[2001:db8::1]", "[zz]:1"):
            self.assertRaises(ValueError, parse_address, bad)

    def test_list(self) -> None:
        """Comments and blank lines are skipped; a bad line is reported by number."""
        self.assertEqual(parse_bootstrap_list("#c\n\n a:1 # x\n"), [("a", 1)])
        with self.assertRaises(ValueError) as caught:
            parse_bootstrap_list("a:1\nb\n")
        self.assertIn("line 2", str(caught.exception))
        self.assertRaises(ValueError, parse_bootstrap_list, "a:1\n" * 300)
        self.assertEqual(str(ipaddress.ip_address(parse_address("[::1]:1")[0])), "::1")
