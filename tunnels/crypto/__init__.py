"""Pure cryptography: the circuit handshake, onion layers and replay windows."""
