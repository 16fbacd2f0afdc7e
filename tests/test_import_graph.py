"""The production packages import each other without cycles (counting imports inside functions too,
which only defer a cycle), and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainables", "search_spaces", "service", "lossweep")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    assert _cycles(graph) == []


# Imports each module given with none of the production packages loaded before it (third-party ones
# stay loaded: they cannot take part in a cycle of ours).
_IMPORT_ALONE = """
import importlib, sys
ours = set(sys.argv[1].split(","))
for name in sys.argv[2:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[loaded]
    importlib.import_module(name)
"""


def _packages() -> list[str]:
    """Every package of the house, rooms included (not Alembic's migrations, which only Alembic runs)."""
    return sorted(
        name for name, path in _modules().items() if path.name == "__init__.py" and ".migrations" not in name
    )


@pytest.mark.parametrize("package", _packages())
def test_each_module_imports_alone(package: str) -> None:
    """A cycle hidden by import order shows when a module is the first one imported."""
    names = [n for n in _modules() if n.startswith(f"{package}.") and n.count(".") == package.count(".") + 1]
    command = [sys.executable, "-c", _IMPORT_ALONE, ",".join(PACKAGES), *names]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


#: What the service may take from ``trainables``: the loss registry's declarations (names, coefficients).
SERVICE_MAY_IMPORT = frozenset({"trainables.losses.registry"})


def test_the_service_reaches_trainables_only_through_the_sweep_layer() -> None:
    """The service admits a sweep through ``search_spaces.spec.admission``; of ``trainables`` it imports
    nothing but the loss registry (a module imported inside a function counts too)."""
    known = _modules()
    found = {
        (name, target)
        for name, path in known.items()
        if name.startswith("service.")
        for target in _imports(name, path, known)
        if target.startswith("trainables") and target not in SERVICE_MAY_IMPORT
    }
    assert found == set()
