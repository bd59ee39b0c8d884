# -*- test-case-name: test.test_layers -*-
"""The package's layers (doc/architecture.md): every import points down, never up or sideways.

Each module of ``tunnels`` belongs to one layer.  A module may import from its own
package and from lower layers only; two packages on the same level (the exit and the
DHT) may not import each other.  Imports inside functions and under ``TYPE_CHECKING``
count too: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import tunnels

ROOT = Path(tunnels.__file__).parent

LAYERS: list[tuple[int, str]] = [
    (0, "tunnels.errors"), (0, "tunnels.settings"), (0, "tunnels.stats"), (0, "tunnels.runtime"),
    (0, "tunnels.ratelimit"), (0, "tunnels.reasons"), (0, "tunnels.version"),
    (1, "tunnels.wire"),
    (2, "tunnels.crypto"),
    (3, "tunnels.exit"), (3, "tunnels.dht"),
    (4, "tunnels.core"),
    (5, "tunnels.community"),
    (6, "tunnels.node"), (6, "tunnels.hidden"),
    (7, "tunnels.socks5"), (7, "tunnels.testnet"),
    (8, "tunnels.daemon"),
    (9, "tunnels.cli"),
    (10, "tunnels.__main__"), (10, "tunnels"),
]
"""(rank, module or package), bottom to top; the longest matching name decides."""


def layer_of(module: str) -> tuple[int, str]:
    """The (rank, unit) of a ``tunnels`` module; raises ``LookupError`` for an unmapped one."""
    best: tuple[int, str] | None = None
    for rank, unit in LAYERS:
        if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best[1])):
            best = (rank, unit)
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to test_layers.LAYERS and doc/architecture.md")
    return best


def modules() -> dict[str, Path]:
    """Every module under ``tunnels/`` by dotted name."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("tunnels",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """The ``tunnels`` modules that ``module`` imports (absolute names), wherever in the file."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    known = modules()
    result = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from X import y" depends on X, and on X.y when y is a module
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
            result.update(n for n in names if n in known or (n.startswith("tunnels.") and n.rsplit(".", 1)[0] not in known))
        elif isinstance(node, ast.Import):
            result.update(a.name for a in node.names if a.name == "tunnels" or a.name.startswith("tunnels."))
    return result


def violations() -> list[str]:
    """Every import that points up a layer or sideways between packages of one level."""
    problems = []
    for module, path in sorted(modules().items()):
        rank, unit = layer_of(module)
        for target in sorted(imports_of(module, path)):
            target_rank, target_unit = layer_of(target)
            if target_rank > rank or (target_rank == rank and target_unit != unit):
                problems.append(f"{module} ({unit}, layer {rank}) imports {target} ({target_unit}, layer {target_rank})")
    return problems


class LayerTests(SynchronousTestCase):

    def test_every_module_has_a_layer(self) -> None:
        for module in modules():
            layer_of(module)

    def test_imports_point_down(self) -> None:
        self.assertEqual(violations(), [])

    def test_the_check_sees_an_upward_import(self) -> None:
        """The checker itself: relative, absolute and lazy imports are all resolved."""
        path = ROOT / "core" / "relay.py"
        found = imports_of("tunnels.core.relay", path)
        self.assertIn("tunnels.crypto.ntor", found)        # "from ..crypto import ntor"
        self.assertIn("tunnels.core.circuits", found)      # "from .circuits import ..."
        self.assertEqual(layer_of("tunnels.core.relay"), (4, "tunnels.core"))
        self.assertEqual(layer_of("tunnels.hidden.community"), (6, "tunnels.hidden"))
        self.assertNotIn("tunnels.core.circuits.JoinedCircuit", found)  # a class, not a module
        self.assertGreater(layer_of("tunnels.hidden.e2e")[0], layer_of("tunnels.core.hs_relay")[0])
