"""``python -m tunnels``: see :mod:`tunnels.cli`."""
import sys

from .cli import main

sys.exit(main(prog="python -m tunnels"))
