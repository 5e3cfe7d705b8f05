"""The demo is an app like any other: it uses only pyserver's public API.

The demo (``pyserver/demo/``) is what proves the public API is enough to write an app, so it
must not reach into the implementation. Each demo module is parsed with :mod:`ast` and
checked for:

* imports of ``pyserver`` modules other than ``pyserver`` itself, ``pyserver.extras.*`` and
  the demo's own package (absolute, relative, ``import_module("...")`` or ``__import__``);
* names imported from ``pyserver`` that are not in ``pyserver.__all__`` (``from pyserver
  import trio`` would load a subpackage; a name with ``_`` is private);
* private attributes (``x._name``, ``getattr(x, "_name")``) read on anything but ``self`` or
  ``cls``: a demo class's own state is its business, a socket's or a server's is not.

Then ``Socket.transport``, which the game needs (ticks go volatile to WebSocket clients
only), is checked against pyserver's Trio client over each transport and the upgrade.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.sio_client import eventually, serving

import pyserver
from pyserver import Server, Socket, testing

DEMO_DIR = Path(pyserver.__file__).resolve().parent / "demo"
DEMO_PACKAGE = "pyserver.demo"
DEMO_MODULES = sorted(DEMO_DIR.glob("*.py"))

#: Names whose attributes are the object's own: a class may read its own private state.
OWN = frozenset({"self", "cls"})
#: Builtins that read or write an attribute named by a string.
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})
#: Functions that import a module named by a string.
IMPORT_FUNCTIONS = frozenset({"import_module", "__import__"})


def allowed_module(module: str) -> bool:
    """Whether a demo module may import ``module``: anything outside pyserver, pyserver's
    public API, the extras apps build on, and the demo's own modules."""
    if module != "pyserver" and not module.startswith("pyserver."):
        return True
    return module == "pyserver" or any(
        module == root or module.startswith(root + ".")
        for root in ("pyserver.extras", DEMO_PACKAGE)
    )


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``package``."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def violations(source: str, filename: str = "<demo>", package: str = DEMO_PACKAGE) -> list[str]:
    """Every use of pyserver's internals in ``source``, as ``file:line: what`` strings."""
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not allowed_module(alias.name):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, package)
            if not allowed_module(module):
                report(node, f"from {module} import ...")
            elif module == "pyserver":
                for alias in node.names:
                    if alias.name not in pyserver.__all__:
                        report(node, f"from pyserver import {alias.name} (not in __all__)")
            elif module.startswith("pyserver."):
                for alias in node.names:
                    if is_private(alias.name):
                        report(node, f"from {module} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            owner = node.value
            if is_private(node.attr) and not (isinstance(owner, ast.Name) and owner.id in OWN):
                report(node, f"{ast.unparse(owner)}.{node.attr}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if (
                name in ATTRIBUTE_FUNCTIONS
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and is_private(node.args[1].value)
                and not (isinstance(first, ast.Name) and first.id in OWN)
            ):
                report(node, f"{name}({ast.unparse(first)}, {node.args[1].value!r})")
            elif (
                name in IMPORT_FUNCTIONS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and not allowed_module(first.value)
            ):
                report(node, f"{name}({first.value!r})")
    return found


def test_the_demo_modules_are_all_checked() -> None:
    assert {p.name for p in DEMO_MODULES} >= {"__init__.py", "chat.py", "drawing.py", "game.py"}


@pytest.mark.parametrize("path", DEMO_MODULES, ids=lambda p: p.name)
def test_demo_module_uses_only_the_public_api(path: Path) -> None:
    assert violations(path.read_text(), path.name) == []


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("from pyserver.trio.socketio.server import Server", "pyserver.trio.socketio.server"),
        ("from pyserver.engineio.session import Transport", "pyserver.engineio.session"),
        ("import pyserver.trio.http.app", "pyserver.trio.http.app"),
        ("from ..trio.socketio import namespace", "pyserver.trio.socketio"),
        ("from pyserver import trio", "trio (not in __all__)"),
        ("from pyserver import _frames", "_frames (not in __all__)"),
        ("from pyserver.extras.statesync import _helper", "_helper"),
        ("import importlib\nimportlib.import_module('pyserver.ws')", "pyserver.ws"),
        ("__import__('pyserver.http')", "pyserver.http"),
        ("sio._find_namespace('/x', None)", "sio._find_namespace"),
        ("nsp.server._nursery.start_soon(f)", "nsp.server._nursery"),
        ("self.nsp._sockets", "self.nsp._sockets"),
        ("socket.client.session._outbox", "socket.client.session._outbox"),
        ("getattr(socket, '_queue')", "getattr(socket, '_queue')"),
    ],
)
def test_the_check_finds_reach_ins(source: str, what: str) -> None:
    [found] = violations(source)
    assert what in found


@pytest.mark.parametrize(
    "source",
    [
        "from pyserver import Server, Socket, broadcast",
        "from pyserver.extras.statesync import SyncedState",
        "from pyserver.demo import chat",
        "from . import chat",
        "import trio, json\nfrom collections import OrderedDict",
        "self._boards.get(name)\ncls._registry",
        "socket.__class__.__name__",
        "getattr(self, '_rooms')",
    ],
)
def test_the_check_allows_the_public_api(source: str) -> None:
    assert violations(source) == []


# -- Socket.transport: what the game asks of a socket -----------------------------------------


def transport_server() -> Server:
    sio = Server()

    @sio.on("which")
    async def which(socket: Socket, *_: Any) -> str:
        return socket.transport

    return sio


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_socket_transport_names_the_transport(transport: str) -> None:
    with trio.fail_after(20):
        async with serving(transport_server()) as url:
            async with testing.connect(url, transports=[transport]) as client:
                assert await client.emit_with_ack("which") == transport


async def test_socket_transport_follows_the_upgrade() -> None:
    with trio.fail_after(20):
        async with serving(transport_server()) as url:
            async with testing.connect(url, transports=["polling", "websocket"]) as client:
                await eventually(lambda: client.transport == "websocket")
                assert await client.emit_with_ack("which") == "websocket"
