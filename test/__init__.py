"""Tests for txtunnels; run with ``python -m twisted.trial --reactor=asyncio test``."""
