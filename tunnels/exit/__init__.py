"""Leaving the network: address classes (:mod:`.addresses`), the exit policy (:mod:`.policy`)
and the UDP sockets of exit circuits (:mod:`.sockets`, the only I/O here)."""
