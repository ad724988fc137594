"""The layout of the packages: each Python module imports alone without side effects,
no two modules import each other (directly or through others), and no module of the
client, the proxy or the Node host is over 300 lines.

The import graph is built from the sources with ``ast``: every import counts,
those inside functions (which hide a circle until they run) and under
``if TYPE_CHECKING:`` included, relative or absolute.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

PACKAGES = ("js_host", "js_host_proxy")


def package_modules(package: str) -> dict[str, Path]:
    """Every module of ``package`` (sub-packages included) and its source file."""
    base = ROOT / package
    modules: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if not all(part.isidentifier() for part in parts):
            continue  # not importable as a module (e.g. a data folder)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if all((ROOT.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
            modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from package import name` imports the module package.name when there is one.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` runs a, a.b and a.b.c: the deepest module of ours is the edge.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def import_graph(package: str) -> dict[str, set[str]]:
    modules = package_modules(package)
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 3, f"no modules found for {package}: {sorted(graph)}"
    cycle = find_cycle(graph)
    assert cycle is None, f"{package} has an import cycle: {' -> '.join(cycle or [])}"


def test_the_cycle_finder_names_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_function_level_and_relative_imports_count(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    source = "from . import b\nfrom .c import x\nimport pkg.d\ndef f():\n    from pkg import e\n"
    module = tmp_path / "pkg" / "a.py"
    module.write_text(source)
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e"}
    assert imported_modules("pkg.a", module, known) == {"pkg.b", "pkg.c", "pkg.d", "pkg.e"}


#: One job per module: a module past this many lines is doing more than one.
MAX_MODULE_LINES = 300


def source_files() -> list[Path]:
    """The Python modules of both packages and the Node host's own modules (not its tests)."""
    python = [path for package in PACKAGES for path in package_modules(package).values()]
    node = ROOT / "js_host" / "node"
    scripts = [*node.glob("bin/*.js"), *node.glob("lib/*.js"), *node.glob("lib/*.mjs")]
    return sorted(python + scripts)


def test_no_module_is_over_the_line_limit() -> None:
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in source_files()}
    assert len(sizes) > 50, f"too few modules found: {sorted(sizes)}"
    long = {str(path.relative_to(ROOT)): lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not long, f"split these along a seam of their own (at most {MAX_MODULE_LINES} lines): {long}"


# Run in a fresh interpreter: audit events (PEP 578) name what the import does.
_IMPORT_ALONE = """
import sys
events = []
FORBIDDEN = ("subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec",
             "os.system", "socket.connect")
def hook(event, args):
    if event in FORBIDDEN:
        events.append(f"{event}{args!r}"[:300])
sys.addaudithook(hook)
import importlib
importlib.import_module(sys.argv[1])
assert not events, f"importing {sys.argv[1]} did: {events}"
# An editable install's finder would quietly supply a module missing from this checkout.
root = sys.argv[2]
strays = [name for name, mod in list(sys.modules.items())
          if name.split(".")[0] in ("js_host", "js_host_proxy")
          and not (getattr(mod, "__file__", None) or root).startswith(root)]
assert not strays, f"imported from outside {root}: {strays}"
conf, host = sys.modules.get("js_host.conf"), sys.modules.get("js_host.host")
assert conf is None or not conf.settings.configured, "the settings were configured"
assert host is None or host.get_default_host_if_built() is None, "the default host was built"
"""


def all_modules() -> list[str]:
    return sorted(name for package in PACKAGES for name in package_modules(package))


@pytest.mark.parametrize("module", all_modules())
def test_each_module_imports_alone_without_side_effects(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALONE, module, str(ROOT) + "/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"importing {module}:\n{result.stderr[-3000:]}"
