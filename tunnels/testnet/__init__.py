"""Local test networks on 127.0.0.1: :class:`LocalNetwork` (relays, exits, clients, a UDP echo
server, optionally a DHT).  Never contacts any address but 127.0.0.1."""
from .network import HOST, EchoServer, LocalNetwork

__all__ = ["HOST", "EchoServer", "LocalNetwork"]
