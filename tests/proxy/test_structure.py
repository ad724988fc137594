"""The proxy's layout holds: every module imports on its own, and no module of
``js_host_proxy`` imports (even inside a function) one that imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "js_host_proxy"


def module_names() -> dict[str, Path]:
    """Every module of the package (packages by their own name), with its source file."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = module_names()


def import_statements(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(the modules ``name``'s source imports by name, what ``from X import Y`` may also
    import: ``X.Y``), anywhere in it (function-level imports and ``TYPE_CHECKING`` blocks
    included)."""
    is_package = path.name == "__init__.py"
    named: set[str] = set()
    maybe: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            named.add(source)
            # ``from pkg import mod`` imports the module ``pkg.mod``.
            maybe.update(f"{source}.{alias.name}" for alias in node.names)
    return named, maybe


def imported(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports, with the packages they are in."""
    named, maybe = import_statements(name, path)
    found = set()
    for target in named | maybe:
        parts = target.split(".")
        # Importing a.b.c runs a, then a.b, then a.b.c.
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {t for t in found if t in MODULES and t != name}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as the modules along it), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph[node]):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


# Imported alone, and every module of the package it pulls in is this checkout's (an
# installed copy elsewhere could otherwise stand in for a module that moved).
IMPORT_ALONE = """
import sys
import {module}
foreign = sorted(
    n for n, m in sys.modules.items()
    if n.split(".")[0] == "{package}" and not (getattr(m, "__file__", None) or "").startswith({root!r})
)
assert not foreign, f"not from this checkout: {{foreign}}"
"""


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_on_its_own(module: str):
    code = IMPORT_ALONE.format(module=module, package=PACKAGE, root=str(ROOT / PACKAGE) + "/")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"import {module} failed on its own:\n{done.stderr}"


def test_every_import_of_the_package_names_one_of_its_modules():
    missing = {
        f"{name}: {target}"
        for name, path in MODULES.items()
        for target in import_statements(name, path)[0]
        if target.split(".")[0] == PACKAGE and target not in MODULES
    }
    assert not missing, f"imports of modules that are not in {PACKAGE}/: {sorted(missing)}"


def test_the_import_graph_has_no_cycle():
    graph = {name: imported(name, path) for name, path in MODULES.items()}
    assert graph[f"{PACKAGE}.app"], "the graph found no import: the parsing is wrong"
    found = cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_the_graph_sees_function_level_imports():
    # The check must not miss the imports that hide a cycle best.
    graph = {name: imported(name, path) for name, path in MODULES.items()}
    assert f"{PACKAGE}.app" in graph[f"{PACKAGE}.wsgi"]  # imported inside __getattr__
    assert cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
