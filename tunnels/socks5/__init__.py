"""The SOCKS5 (RFC 1928) UDP front end: unmodified applications send datagrams through circuits.

:mod:`.codec` is the wire format (pure), :mod:`.server` the control connections and UDP
relay ports, :mod:`.service` the Twisted service that runs one server per hop count.
"""
from .codec import (AddressType, Command, Reply, Request, Socks5Error, UdpDatagram, encode_address, encode_reply,
                    encode_udp_datagram, parse_address, parse_greeting, parse_request, parse_udp_datagram)
from .server import Socks5Protocol, Socks5Server, UdpAssociation
from .service import Socks5Service

__all__ = ["AddressType", "Command", "Reply", "Request", "Socks5Error", "Socks5Protocol", "Socks5Server",
           "Socks5Service", "UdpAssociation", "UdpDatagram", "encode_address", "encode_reply",
           "encode_udp_datagram", "parse_address", "parse_greeting", "parse_request", "parse_udp_datagram"]
