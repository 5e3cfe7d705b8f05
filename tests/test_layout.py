"""The layout's two rules, checked over the whole package (issue 13, items 5 and 6).

* **Sans-IO on top.** A module outside ``pyserver/trio/``, ``cli.py``, ``__main__.py``,
  ``supervisor.py`` and ``demo/`` (a *core*) imports, at runtime, nothing that does I/O, reads
  the clock, draws randomness or runs threads: no trio, socket, time, random, secrets,
  ``os.urandom``, ``uuid4``, threading or asyncio, and none of the shell's modules. Imports
  under ``if TYPE_CHECKING:`` do not run, so they do not count; imports inside functions do.
  A subprocess then imports every core and checks that trio and the shell stayed out of
  ``sys.modules`` (what a third-party import could pull in, the source alone does not show).
* **No import cycles.** Every ``import`` inside ``pyserver`` (those under ``TYPE_CHECKING``
  and inside functions too: a cycle of types is a cycle of knowledge) is an edge of a graph
  of modules (a package's ``__init__`` is one; ``from pkg import sub`` is an edge to the
  submodule), and that graph has no cycle. One exception, see ``ALLOWED_CYCLE``.

The modules are read with :mod:`ast`, never imported, so the tests see what the files say.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyserver

ROOT = Path(pyserver.__file__).resolve().parent

SHELL = (
    "pyserver.trio",
    "pyserver.cli",
    "pyserver.__main__",
    "pyserver.supervisor",
    "pyserver.demo",
    "pyserver.sync",  # blocking sockets for plain Python (the Emitter), no Trio
)
"""Module prefixes that may do I/O; everything else in the package is a core."""

BANNED_MODULES = frozenset(
    {"trio", "socket", "time", "random", "secrets", "threading", "asyncio", "_thread"}
)
"""Top-level modules a core never imports at runtime (whole or in part)."""

BANNED_NAMES = frozenset(
    {("os", "urandom"), ("os", "getrandom"), ("uuid", "uuid1"), ("uuid", "uuid4")}
)
"""``module.name`` a core never imports or uses (the rest of ``os`` and ``uuid`` is fine)."""

ALLOWED_CYCLE = frozenset(
    {
        "pyserver.trio.socketio.socket",
        "pyserver.trio.socketio.namespace",
        "pyserver.trio.socketio.client",
        "pyserver.trio.socketio.admission",  # the client's namespace joins: a base class of it
    }
)
"""A cycle among these only is allowed, and only through ``TYPE_CHECKING`` imports (at
runtime ``client`` imports ``admission`` and ``socket``, ``admission`` imports ``socket``, and
nothing else of them is imported). ``admission`` is the client's namespace-joining half, a
base class of ``Client``: part of the same object.

Why: they are one object seen from three sides, and each one's public attributes name the
others' classes: ``socket.nsp`` is a :class:`Namespace`, ``socket.client`` a ``Client``,
``nsp.sockets`` holds ``Socket`` objects, middleware gets a ``Socket``. Typing those with
protocols would hide the classes' public API from users' type checkers. Everything around
them (the server, the adapters, broadcasting, room tasks, the Redis modules) reaches them
through protocols instead (:mod:`pyserver.trio.socketio.host`,
:mod:`pyserver.trio.socketio.adapter`)."""


def is_shell(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in SHELL)


def package_modules() -> dict[str, Path | None]:
    """Every module of the package by dotted name (an extension module has no source)."""
    found: dict[str, Path | None] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    for path in [*ROOT.rglob("*.so"), *ROOT.rglob("*.pyd"), *ROOT.rglob("*.pyi")]:
        parts = list(path.parent.relative_to(ROOT.parent).parts)
        found.setdefault(".".join([*parts, path.name.split(".")[0]]), None)
    return found


MODULES = package_modules()
CORES = sorted(name for name in MODULES if not is_shell(name) and MODULES[name] is not None)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, *, runtime_only: bool) -> Iterator[tuple[int, str, str | None]]:
    """``(line, module, imported name or None)`` for every import statement of module
    ``name``, relative ones resolved; with ``runtime_only``, those under ``if TYPE_CHECKING:``
    are skipped (their ``else`` branch is kept)."""
    path = MODULES[name]
    assert path is not None
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(nodes: list[ast.stmt] | list[ast.AST]) -> Iterator[tuple[int, str, str | None]]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test) and runtime_only:
                yield from walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, alias.name, None
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                for alias in node.names:
                    yield node.lineno, module, alias.name
            yield from walk(list(ast.iter_child_nodes(node)))

    yield from walk([ast.parse(path.read_text(), str(path))])


def _target(module: str, imported: str | None) -> str | None:
    """The package module an import statement depends on (None: outside the package).
    ``from pkg import sub`` is the submodule; ``from pyserver import Name`` for a name the
    package exports lazily is the module that defines it."""
    if imported is not None:
        if f"{module}.{imported}" in MODULES:
            return f"{module}.{imported}"
        if module == "pyserver" and imported in pyserver._EXPORTS:
            return pyserver._EXPORTS[imported]
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


# -- sans-IO --------------------------------------------------------------------------------


def sans_io_violations(name: str) -> list[str]:
    found: list[str] = []
    for line, module, imported in imports(name, runtime_only=True):
        where = f"{name}:{line}"
        top = module.partition(".")[0]
        if top in BANNED_MODULES:
            found.append(f"{where} imports {module}")
        elif (top, imported) in BANNED_NAMES:
            found.append(f"{where} imports {top}.{imported}")
        elif top == "pyserver":
            target = _target(module, imported)
            if target is not None and is_shell(target):
                found.append(f"{where} imports the shell module {target}")
    path = MODULES[name]
    assert path is not None
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in BANNED_NAMES
        ):
            found.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_the_cores_are_found() -> None:
    """The walk sees the package (a broken walk would pass every rule)."""
    for expected in (
        "pyserver",
        "pyserver.errors",
        "pyserver.ws.connection",
        "pyserver.engineio.session",
        "pyserver.socketio.session",
        "pyserver.redis.codec",
        "pyserver.extras.statesync",
    ):
        assert expected in CORES
    assert not [name for name in CORES if name.startswith(("pyserver.trio", "pyserver.demo"))]


def test_no_core_imports_io_clock_randomness_or_threads() -> None:
    found = [v for name in CORES for v in sans_io_violations(name)]
    assert not found, "sans-IO cores that import I/O:\n" + "\n".join(found)


def test_the_check_sees_what_it_bans(tmp_path: Path) -> None:
    """Each kind of violation, and what is allowed, on a made-up core."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import os, uuid\n"
        "if TYPE_CHECKING:\n"
        "    import trio\n"  # allowed: never runs
        "else:\n"
        "    import socket\n"  # 6
        "def f():\n"
        "    from secrets import token_hex\n"  # 8
        "    return os.urandom(4), uuid.uuid5\n"  # 9 (os.urandom only)
        "from pyserver.trio import timers\n"  # 10
        "from pyserver import Server\n"  # 11: lazily from the shell
        "from pyserver import errors\n"
    )
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    MODULES["pyserver.fake"] = fake
    try:
        found = sans_io_violations("pyserver.fake")
    finally:
        del MODULES["pyserver.fake"]
    assert found == [
        "pyserver.fake:6 imports socket",
        "pyserver.fake:8 imports secrets",
        "pyserver.fake:10 imports the shell module pyserver.trio.timers",
        "pyserver.fake:11 imports the shell module pyserver.trio.socketio.server",
        "pyserver.fake:9 uses os.urandom",
    ]


def test_importing_every_core_loads_no_trio() -> None:
    """In a fresh interpreter: ``import pyserver`` (the lazy public API) and every core
    module, and trio, asyncio and the shell are still not loaded."""
    code = (
        "import importlib, sys\n"
        "import pyserver\n"
        "assert 'trio' not in sys.modules, 'import pyserver loaded trio'\n"
        f"for name in {CORES!r}:\n"
        "    importlib.import_module(name)\n"
        "shell = sorted(m for m in sys.modules if m.startswith(('pyserver.trio', 'pyserver.cli',"
        " 'pyserver.supervisor', 'pyserver.demo')))\n"
        "assert not shell, shell\n"
        "assert 'trio' not in sys.modules and 'asyncio' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)


# -- import cycles ----------------------------------------------------------------------------


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (every import statement)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        if path is None:
            continue
        for _, module, imported in imports(name, runtime_only=False):
            if module.partition(".")[0] == "pyserver":
                target = _target(module, imported)
                if target is not None and target != name:
                    graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The graph's components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(frozenset(component))
    return components


def a_cycle(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    """One cycle through the component's first module, for the failure message."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError("a component without a cycle")


def cycles(graph: dict[str, set[str]]) -> list[str]:
    return [
        " -> ".join(a_cycle(graph, component))
        for component in strongly_connected(graph)
        if not component <= ALLOWED_CYCLE
    ]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_allowed_cycle_is_types_only() -> None:
    """Between the socket, its namespace and its client, runtime imports go one way."""
    runtime: dict[str, set[str]] = {name: set() for name in ALLOWED_CYCLE}
    for name in ALLOWED_CYCLE:
        for _, module, imported in imports(name, runtime_only=True):
            target = _target(module, imported) if module.startswith("pyserver") else None
            if target in ALLOWED_CYCLE and target != name:
                runtime[name].add(target)
    assert not strongly_connected(runtime), runtime


def test_the_cycle_check_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == ["a -> b -> c -> a"]
    allowed = {name: set() for name in ALLOWED_CYCLE} | {"x": {"y"}, "y": {"x"}}
    for a in ALLOWED_CYCLE:
        allowed[a] = set(ALLOWED_CYCLE) - {a}
    assert cycles(allowed) == ["x -> y -> x"]


# -- the tests' own layout (item 8) ------------------------------------------------------------

TESTS = Path(__file__).resolve().parent


def test_imports_between_test_files(tmp_path: Path) -> None:
    """Shared test code lives in ``tests/helpers/``: no test file imports a test module
    (``test_*``) or another folder's conftest (a folder's tests may import what only they
    share from their own conftest, ``from .conftest import ...``). Checked on a made-up tree
    first, so the check can fail."""
    (tmp_path / "test_a.py").write_text(
        "from test_b import x\nfrom cluster.conftest import y\nfrom .conftest import z\n"
    )
    (tmp_path / "test_ok.py").write_text("from helpers.sio_client import RawClient\n")
    assert sorted(_cross_test_imports(tmp_path)) == [
        "test_a.py: cluster.conftest",
        "test_a.py: test_b",
    ]
    assert _cross_test_imports(TESTS) == []


def _cross_test_imports(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module == "conftest":
                    continue  # the folder's own conftest
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                last = name.rsplit(".", 1)[-1]
                first = name.lstrip(".").split(".", 1)[0]
                if last.startswith("test_") or last == "conftest" or first == "tests":
                    found.append(f"{path.relative_to(root)}: {name}")
    return found
