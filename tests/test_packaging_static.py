"""``scripts/pack_static.py``, the build step that copies what the server serves into the
package (issue 21): the client bundles and the demo's pages byte for byte, nothing the static
handler hides, the pinned version only, and a refusal (exit) when the npm package is missing,
another version or incomplete. On a made-up ``web/`` in a temporary directory."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_pack_static() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pack_static", ROOT / "scripts/pack_static.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pack_static = load_pack_static()


@pytest.fixture
def web(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    client = web / "node_modules" / "socket.io-client"
    (client / "dist").mkdir(parents=True)
    (web / "package.json").write_text(json.dumps({"dependencies": {"socket.io-client": "4.8.1"}}))
    (web / "package-lock.json").write_text("{}")
    (client / "package.json").write_text(
        json.dumps({"name": "socket.io-client", "version": "4.8.1"})
    )
    for name in pack_static.CLIENT_FILES:
        (client / "dist" / name).write_bytes(f"/* {name} */\x00\xff".encode("latin-1"))
    (web / "node_modules" / "other.js").write_text("never packed")
    (web / "index.html").write_text("<h1>demo</h1>")
    (web / "chat").mkdir()
    (web / "chat" / "index.html").write_text("<h1>chat</h1>")
    (web / ".env").write_text("SECRET=1")
    return web


def test_copies_the_bundles_and_pages_byte_for_byte(web: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines = pack_static.pack(web, out)
    client = web / "node_modules" / "socket.io-client"
    assert lines[0] == "socket.io-client 4.8.1"
    expected = {
        "socket.io-client/package.json": client / "package.json",
        **{f"socket.io-client/dist/{n}": client / "dist" / n for n in pack_static.CLIENT_FILES},
        "web/chat/index.html": web / "chat" / "index.html",
        "web/index.html": web / "index.html",
    }
    assert sorted(lines[1:]) == sorted(expected)
    for rel, source in expected.items():
        assert (out / rel).read_bytes() == source.read_bytes(), rel
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted([*expected, "MANIFEST"])  # no .env, node_modules, package*.json
    assert (out / "MANIFEST").read_text().splitlines() == lines


def test_a_second_run_rewrites_nothing_and_drops_what_went(web: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    pack_static.pack(web, out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    (web / "chat" / "index.html").unlink()
    pack_static.pack(web, out)
    assert not (out / "web" / "chat").exists()
    for path, stamp in stamps.items():
        if path.exists() and path.name != "MANIFEST":
            assert path.stat().st_mtime_ns == stamp, path
    assert "web/chat/index.html" not in (out / "MANIFEST").read_text()


def test_refuses_without_the_npm_package(web: Path, tmp_path: Path) -> None:
    (web / "node_modules" / "socket.io-client" / "package.json").unlink()
    with pytest.raises(SystemExit, match="npm ci"):
        pack_static.pack(web, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_another_version_than_the_pinned_one(web: Path, tmp_path: Path) -> None:
    package = web / "node_modules" / "socket.io-client" / "package.json"
    package.write_text(json.dumps({"version": "4.7.5"}))
    with pytest.raises(SystemExit, match=r"4\.7\.5 is installed but web/package.json pins 4\.8\.1"):
        pack_static.pack(web, tmp_path / "out")


def test_refuses_a_version_range(web: Path, tmp_path: Path) -> None:
    (web / "package.json").write_text(json.dumps({"dependencies": {"socket.io-client": "^4.8"}}))
    with pytest.raises(SystemExit, match="exact version"):
        pack_static.pack(web, tmp_path / "out")


def test_refuses_an_incomplete_npm_package(web: Path, tmp_path: Path) -> None:
    (web / "node_modules" / "socket.io-client" / "dist" / "socket.io.msgpack.min.js").unlink()
    with pytest.raises(SystemExit, match=r"socket\.io\.msgpack\.min\.js is missing"):
        pack_static.pack(web, tmp_path / "out")


def test_the_checkout_pins_the_version_the_package_carries() -> None:
    """One place pins the client: web/package.json; the packaged copy (when built) is it."""
    pinned = pack_static.pinned_version()
    manifest = ROOT / "pyserver" / "_static" / "MANIFEST"  # scripts/bootstrap.sh wrote it
    assert manifest.read_text().splitlines()[0] == f"socket.io-client {pinned}"
