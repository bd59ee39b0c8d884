"""The SOCKS5 (RFC 1928) UDP front end: unmodified applications send datagrams through circuits.

:mod:`.codec` is the wire format (pure, RFC 1928 and RFC 1929), :mod:`.control` the TCP
control connection, :mod:`.association` one association's relay port and flows,
:mod:`.isolation` which circuits an association may use, :mod:`.server` the bounds and the
lifecycle, :mod:`.service` the Twisted service that runs one server per hop count.
"""
from .association import UdpAssociation
from .codec import (AddressType, Command, Reply, Request, Socks5Error, UdpDatagram, encode_address, encode_reply,
                    encode_udp_datagram, encode_userpass, parse_address, parse_greeting, parse_request,
                    parse_udp_datagram, parse_userpass)
from .control import Socks5Protocol
from .server import Socks5Server
from .service import Socks5Service

__all__ = ["AddressType", "Command", "Reply", "Request", "Socks5Error", "Socks5Protocol", "Socks5Server",
           "Socks5Service", "UdpAssociation", "UdpDatagram", "encode_address", "encode_reply",
           "encode_udp_datagram", "encode_userpass", "parse_address", "parse_greeting", "parse_request",
           "parse_udp_datagram", "parse_userpass"]
