"""Wire formats: pure bytes <-> values, no I/O."""
