"""SOCKS5 UDP front end: an unmodified SOCKS5 client sends datagrams through 2-hop circuits.

Starts a local network on 127.0.0.1, a SOCKS5 server for 2-hop circuits, and a small
RFC 1928 client (TCP control connection + UDP ASSOCIATE) that gets its datagram echoed.

Run: python doc/examples/socks5_udp.py  (exits 0 when the echo came back)
"""
from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.internet.task import deferLater, react

from tunnels.node import start_node
from tunnels.runtime import install_reactor
from tunnels.settings import TunnelSettings
from tunnels.socks5 import Socks5Server


class Echo(DatagramProtocol):
    """The destination: a UDP echo server on 127.0.0.1."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.transport.write(datagram, addr)


class Control(Protocol):
    """The SOCKS5 TCP control connection: collects what the server says."""

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data


class UdpClient(DatagramProtocol):
    """The application's UDP socket; replies land in a Deferred."""

    def __init__(self) -> None:
        self.reply: Deferred[bytes] = Deferred()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        if not self.reply.called:
            self.reply.callback(datagram)


async def wait_until(reactor: Any, predicate: Any, timeout: float = 20.0) -> None:
    """Poll ``predicate`` every 50 ms."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await deferLater(reactor, 0.05)
    raise TimeoutError("condition not reached")


async def main(reactor: Any) -> None:
    echo = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
    echo_port = echo.getHost().port
    first = await start_node(reactor, "127.0.0.1", 0, testnet=True, settings=TunnelSettings(become_exitnode=True))
    nodes = [first] + [await start_node(reactor, "127.0.0.1", 0, testnet=True, bootstrap=[first.address],
                                        settings=TunnelSettings(become_exitnode=i == 0, max_circuits=2))
                       for i in range(3)]
    community = nodes[-1].community
    print(f"{len(nodes)} nodes listening on 127.0.0.1 (2 exits); building 2-hop circuits ...")

    server = Socks5Server(reactor, community, hops=2)      # one server per hop count
    server.start()                                         # builds 2-hop circuits
    listening = reactor.listenTCP(0, server, interface="127.0.0.1")
    socks_port = listening.getHost().port
    await wait_until(reactor, lambda: community.tunnels_ready(2) >= 1.0)
    print(f"{len(community.active_data_circuits(2))} circuits ready; SOCKS5 on 127.0.0.1:{socks_port}")

    # --- what any SOCKS5 UDP client does (RFC 1928) ---
    control = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", socks_port), Control())
    control.transport.write(b"\x05\x01\x00")                       # version 5, one method: no auth
    control.transport.write(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")   # UDP ASSOCIATE, any source
    await wait_until(reactor, lambda: len(control.received) >= 12)
    assert control.received[:2] == b"\x05\x00" and control.received[2:5] == b"\x05\x00\x00", control.received
    relay_host = str(ipaddress.IPv4Address(control.received[6:10]))
    relay_port = int.from_bytes(control.received[10:12], "big")

    app = UdpClient()
    app_port = reactor.listenUDP(0, app, interface="127.0.0.1")
    header = b"\x00\x00\x00\x01" + ipaddress.IPv4Address("127.0.0.1").packed + echo_port.to_bytes(2, "big")
    app.transport.write(header + b"hello through SOCKS5", (relay_host, relay_port))
    reply = await app.reply
    assert reply[:len(header)] == header, reply                    # the reply names its source
    print("echo:", reply[len(header):].decode())

    control.transport.loseConnection()                             # ends the association
    await app_port.stopListening()
    await server.stop()                                    # every client sees EOF
    await listening.stopListening()
    for node in nodes:
        await node.stop()
    await echo.stopListening()


if __name__ == "__main__":
    install_reactor()
    react(main)
