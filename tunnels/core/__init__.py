"""The circuit core: circuit state machines, sans I/O apart from the transport.

:mod:`.circuits` (state), :mod:`.origin` (circuits we build), :mod:`.relay` (circuits we carry),
:mod:`.hs_relay` (what every relay does for hidden services: introduction and rendezvous points),
:mod:`.routing` (the link table), :mod:`.flow` (flow control), :mod:`.pathsel` (path selection),
:mod:`.transport` (the IPv8 endpoint on a Twisted UDP port, with the cell fast path).
"""
