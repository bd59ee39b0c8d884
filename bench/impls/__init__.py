"""Implementation adapters for the benchmark (see base.py for the contract)."""
