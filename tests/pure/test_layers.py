"""The import direction of DESIGN.md, no import cycle, and the public namespace.

Layers, top to bottom: ``cli → ops → runtime → transport, store, membership,
wire → pid, errors``. A module may import its own layer and the layers
below it, never one above. ``wire/`` and ``membership/`` are pure: they
import nothing that does IO, so they are checked twice — statically, by
parsing every source file, and dynamically, by importing them in a fresh
interpreter in which the IO modules cannot be imported at all.

Inside a layer, modules import one way too: the graph of every import in
``shoal/`` (including those made only for type checking, and those inside
functions) has no cycle. A part that must call up is handed a ``Protocol``
declared at its own level instead of importing the part above it.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from pathlib import Path

import pytest

import shoal

PACKAGE = Path(shoal.__file__).resolve().parent

IO_MODULES = frozenset(
    {"asyncio", "socket", "sqlite3", "ssl", "selectors", "subprocess", "threading",
     "aetcd", "etcd3", "etcd", "grpc", "grpc_status"}
)
PURE_PACKAGES = ("wire", "membership")

ABOVE_PID_ERRORS = ("wire", "membership", "store", "transport", "runtime", "ops", "cli",
                    "testing")
# What each layer must not import (shoal sub-packages), from DESIGN.md.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "pid": ABOVE_PID_ERRORS,
    "errors": ABOVE_PID_ERRORS,
    "_backoff": ABOVE_PID_ERRORS,
    "_files": ABOVE_PID_ERRORS,
    "_usage_errors": ABOVE_PID_ERRORS,
    "_version": ABOVE_PID_ERRORS,
    "wire": ("membership", "store", "transport", "runtime", "ops", "cli", "testing"),
    "membership": ("wire", "store", "transport", "runtime", "ops", "cli", "testing"),
    "store": ("transport", "runtime", "ops", "cli", "testing"),
    "transport": ("store", "runtime", "ops", "cli", "testing"),
    "runtime": ("ops", "cli", "testing"),
    "ops": ("cli", "testing"),
    "gateway": ("ops", "cli", "testing"),
}


def _layer_files(layer: str) -> list[Path]:
    single = PACKAGE / f"{layer}.py"
    if single.exists():
        return [single]
    return sorted((PACKAGE / layer).rglob("*.py"))


def _import_statements(path: Path, package: Path = PACKAGE) -> list[tuple[str, tuple[str, ...]]]:
    """Every import of a file, anywhere in it (including imports inside
    functions and ``if TYPE_CHECKING`` blocks), as (absolute module, names):
    ``import a.b`` is ("a.b", ()), ``from a import b, c`` is ("a", ("b", "c"))."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The package a relative import starts from: the file's directory
    # (for __init__.py too, which is the package itself).
    package_parts = path.relative_to(package.parent).parts[:-1]
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - node.level + 1])
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, tuple(alias.name for alias in node.names)))
    return found


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports, anywhere in it."""
    found: set[str] = set()
    for module, names in _import_statements(path):
        found.add(module)
        # "from shoal import runtime" imports shoal.runtime.
        found.update(f"{module}.{name}" for name in names)
    return found


def _shoal_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "shoal" or len(parts) < 2:
        return None
    return parts[1]


LAYER_FILES = [
    pytest.param(layer, path, id=str(path.relative_to(PACKAGE.parent)))
    for layer in FORBIDDEN
    for path in _layer_files(layer)
]


def test_every_layer_has_source_files_to_check() -> None:
    for layer in ("pid", "errors", "_backoff", "_files", "membership", "store", "runtime"):
        assert _layer_files(layer), layer


@pytest.mark.parametrize(("layer", "path"), LAYER_FILES)
def test_module_imports_only_its_own_layer_and_below(layer: str, path: Path) -> None:
    bad = sorted(
        module for module in _imported_modules(path)
        if _shoal_layer(module) in FORBIDDEN[layer]
    )
    assert not bad, f"{path.name} ({layer}) imports layers above it: {bad}"


PURE_FILES = [
    pytest.param(path, id=str(path.relative_to(PACKAGE.parent)))
    for layer in PURE_PACKAGES
    for path in _layer_files(layer)
]


@pytest.mark.parametrize("path", PURE_FILES)
def test_pure_module_source_imports_no_io(path: Path) -> None:
    bad = sorted(
        module for module in _imported_modules(path)
        if module.split(".")[0] in IO_MODULES
    )
    assert not bad, f"{path.name} is pure but imports {bad}"


def _module_names(layer: str) -> list[str]:
    names = []
    for path in _layer_files(layer):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


# Run in a fresh interpreter: the IO modules are made unimportable (a
# meta-path finder refusing them, and None in sys.modules, which makes
# "import x" raise), and shoal/__init__.py is bypassed with a bare package
# module, because the top-level namespace legitimately imports the runtime.
_BLOCKED_IMPORT_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, sys, types

    BLOCKED = set(sys.argv[1].split(","))
    package_dir, modules = sys.argv[2], sys.argv[3].split(",")

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked IO module {name!r} imported")
            return None

    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    for name in BLOCKED:
        sys.modules[name] = None
    sys.meta_path.insert(0, Refuse())

    shoal = types.ModuleType("shoal")
    shoal.__path__ = [package_dir]
    sys.modules["shoal"] = shoal
    for module in modules:
        importlib.import_module(module)
    loaded = sorted(m for m in sys.modules
                    if sys.modules[m] is not None and m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok", len(modules))
    """
)


@pytest.mark.parametrize("layer", PURE_PACKAGES)
def test_pure_package_imports_with_io_modules_blocked(layer: str) -> None:
    modules = _module_names(layer)
    result = subprocess.run(
        [sys.executable, "-I", "-c", _BLOCKED_IMPORT_SCRIPT,
         ",".join(sorted(IO_MODULES)), str(PACKAGE), ",".join(modules)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(modules)}"


def test_blocked_import_check_does_catch_an_io_import() -> None:
    # The harness above must fail when an IO module is imported, or the
    # test that uses it proves nothing.
    result = subprocess.run(
        [sys.executable, "-I", "-c", _BLOCKED_IMPORT_SCRIPT,
         ",".join(sorted(IO_MODULES)), str(PACKAGE), "shoal.runtime.node"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "blocked IO module" in result.stderr or "import of" in result.stderr


# -- no import cycle -----------------------------------------------------------


def _all_module_files(package: Path = PACKAGE) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _import_graph(files: dict[str, Path], package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports. ``from a import b`` points
    at ``a.b`` when that is a module, else at ``a``; the parent packages
    Python runs first are not edges (a package's ``__init__`` importing its
    own submodules is not a cycle)."""
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for module, names in _import_statements(path, package):
            submodules = {f"{module}.{n}" for n in names} & files.keys()
            targets |= submodules
            # "import a", or "from a import x" where x is a name a defines.
            if module in files and (not names or len(submodules) < len(names)):
                targets.add(module)
        targets.discard(name)
        graph[name] = targets
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (iterative DFS)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif following in on_path:
                return [*path[path.index(following):], following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None


def test_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    # The check below proves nothing unless the finder does find cycles,
    # including one made only of type-checking imports (parsed like any).
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "shoal"
        (package / "sub").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "sub" / "__init__.py").write_text("from shoal.sub.one import A\n")
        (package / "sub" / "one.py").write_text(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ..two import B\n")
        (package / "two.py").write_text("def f():\n    from shoal.sub import one\n")
        graph = _import_graph(_all_module_files(package), package)
    assert graph == {"shoal": set(), "shoal.sub": {"shoal.sub.one"},
                     "shoal.sub.one": {"shoal.two"}, "shoal.two": {"shoal.sub.one"}}
    assert _find_cycle(graph) == ["shoal.sub.one", "shoal.two", "shoal.sub.one"]


def test_package_has_no_import_cycle() -> None:
    # Every module of shoal/, runtime/ included: no circle, counting imports
    # made only for type checking.
    cycle = _find_cycle(_import_graph(_all_module_files()))
    assert cycle is None, (
        "import cycle: " + " -> ".join(cycle)
        + " (a part that must call up is handed a Protocol declared at its own level)"
    )


def test_version_is_the_one_in_pyproject() -> None:
    pyproject_toml = Path(__file__).resolve().parents[2] / "pyproject.toml"
    pyproject = tomllib.loads(pyproject_toml.read_text(encoding="utf-8"))
    assert shoal.__version__ == pyproject["project"]["version"]


# -- the public namespace ------------------------------------------------------


def test_everything_in_all_exists() -> None:
    missing = [name for name in shoal.__all__ if not hasattr(shoal, name)]
    assert not missing
    assert len(set(shoal.__all__)) == len(shoal.__all__)


def _public_callables() -> list[tuple[str, object]]:
    return [
        (name, getattr(shoal, name)) for name in shoal.__all__
        if inspect.isclass(getattr(shoal, name)) or inspect.isfunction(getattr(shoal, name))
    ]


@pytest.mark.parametrize(("name", "obj"), _public_callables(), ids=lambda v: str(v)[:40])
def test_public_class_or_function_has_a_docstring(name: str, obj: object) -> None:
    # inspect.getdoc would inherit a base class's docstring; require its own.
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__  # type: ignore[attr-defined]
    assert isinstance(doc, str) and doc.strip(), f"shoal.{name} has no docstring"


@pytest.mark.parametrize("name", ["Node", "Groups", "GenServer", "Subscription", "Caller"])
def test_public_methods_of_user_facing_classes_have_docstrings(name: str) -> None:
    cls = getattr(shoal, name)
    undocumented = [
        attr for attr, value in vars(cls).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or isinstance(value, property))
        and not (value.__doc__ or "").strip()
    ]
    assert not undocumented, f"shoal.{name}: {undocumented}"


def test_no_module_reaches_500_lines() -> None:
    # A part that outgrows a module splits along what it owns
    # (docs/architecture.md, "One node"), rather than growing a module
    # nobody can hold in their head.
    long = {str(path.relative_to(PACKAGE)): n for path in sorted(PACKAGE.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) >= 500}
    assert long == {}
