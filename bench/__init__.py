"""Benchmark harness for txtunnels (issue 6). Run ``python bench/run.py``."""
