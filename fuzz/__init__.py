"""Coverage-guided fuzzing of every parser of untrusted input (DESIGN.md property 15).

``python -m fuzz --seconds 30`` runs every target of :mod:`fuzz.targets` for 30 seconds
from the committed seed corpus (``fuzz/corpus/<target>/``); see :mod:`fuzz.run`.
"""
