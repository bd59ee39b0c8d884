"""txtunnels: Tor-like anonymous communication for IPv8 peer-to-peer applications, on Twisted.

Public API (see README.md and doc/user-guide.md):

* :class:`TunnelCommunity`: relay and exit role; builds and uses data circuits
  (``build_tunnels``, ``active_data_circuits``, ``tunnels_ready``, ``tunnel_data``).
* :class:`HiddenTunnelCommunity`: adds hidden services (``register_service``) with a
  ``dht_provider`` (:class:`MainlineDHTProvider` or :class:`MemoryDHTProvider`).
* :class:`TunnelSettings`: the policy knobs; :func:`start_node` starts a node from Twisted code;
  :func:`install_reactor` puts Twisted on asyncio's loop (IPv8 needs it).

Importing this package does not import or install a reactor.
"""
from .community import TunnelCommunity, TunnelCommunitySettings
from .core.circuits import Circuit, CircuitState
from .dht.provider import IDHTProvider, MainlineDHTProvider, MemoryDHTProvider, MemoryDHTStore
from .errors import CircuitBuildFailed, CircuitNotReady, NoExitAvailable, ProtocolViolation, TunnelError
from .hidden.community import HiddenTunnelCommunity, HiddenTunnelCommunitySettings, NoDHTProvider
from .crypto.service_keys import ServiceKey
from .node import TunnelNode, start_node
from .runtime import install_reactor
from .settings import TunnelSettings

__all__ = [
    "Circuit", "CircuitBuildFailed", "CircuitNotReady", "CircuitState", "HiddenTunnelCommunity",
    "HiddenTunnelCommunitySettings", "IDHTProvider", "MainlineDHTProvider", "MemoryDHTProvider",
    "MemoryDHTStore", "NoDHTProvider", "NoExitAvailable", "ProtocolViolation", "ServiceKey",
    "TunnelCommunity", "TunnelCommunitySettings", "TunnelError", "TunnelNode", "TunnelSettings",
    "install_reactor", "start_node",
]
