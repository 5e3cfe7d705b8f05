"""Static files and the socket.io client bundle, over real loopback sockets."""

from __future__ import annotations

import email.utils
import json
import os
from pathlib import Path

import pytest
import trio
from helpers.http_client import fetch, raw_exchange, serving

from pyserver.http import Request, Response, WebSocket
from pyserver.trio.http.app import App
from pyserver.trio.http.static import content_type, find_client_dist

TIMEOUT = 10


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "game").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "game" / "index.html").write_text("<h1>game</h1>")
    (root / "app.js").write_text("console.log(1)")
    (root / "mod.mjs").write_text("export {}")
    (root / "style.css").write_text("body{}")
    (root / "a.wasm").write_bytes(b"\x00asm")
    (root / "logo.svg").write_text("<svg/>")
    (root / "data.json").write_text("{}")
    (root / "app.js.map").write_text("{}")
    (tmp_path / "secret.txt").write_text("top secret")
    return root


async def test_index_and_content_types(site: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            home = await fetch(port, "GET", "/")
            game = await fetch(port, "GET", "/game/")
            redirect = await fetch(port, "GET", "/game")
            redirect_query = await fetch(port, "GET", "/game?match=a%20b&x=1")
            types = {
                name: (await fetch(port, "GET", "/" + name)).headers["content-type"]
                for name in [
                    "app.js",
                    "mod.mjs",
                    "style.css",
                    "a.wasm",
                    "logo.svg",
                    "data.json",
                    "app.js.map",
                ]
            }
            missing = await fetch(port, "GET", "/nope.html")
            post = await fetch(port, "POST", "/app.js", body=b"x")
    assert (home.status, home.body) == (200, b"<h1>home</h1>")
    assert home.headers["content-type"] == "text/html; charset=utf-8"
    assert game.body == b"<h1>game</h1>"
    assert redirect.status == 301
    assert redirect.headers["location"] == "/game/"
    assert redirect_query.headers["location"] == "/game/?match=a%20b&x=1"
    assert types == {
        "app.js": "text/javascript; charset=utf-8",
        "mod.mjs": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8",
        "a.wasm": "application/wasm",
        "logo.svg": "image/svg+xml",
        "data.json": "application/json",
        "app.js.map": "application/json",
    }
    assert missing.status == 404
    assert post.status == 405
    assert post.headers["allow"] == "GET, HEAD"


async def test_validators_and_304(site: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            first = await fetch(port, "GET", "/app.js")
            etag = first.headers["etag"]
            modified = first.headers["last-modified"]
            by_etag = await fetch(port, "GET", "/app.js", [("If-None-Match", etag)])
            by_weak_list = await fetch(
                port, "GET", "/app.js", [("If-None-Match", f'"other", W/{etag}')]
            )
            by_date = await fetch(port, "GET", "/app.js", [("If-Modified-Since", modified)])
            old = email.utils.formatdate(0, usegmt=True)
            stale = await fetch(port, "GET", "/app.js", [("If-Modified-Since", old)])
            etag_wins = await fetch(
                port,
                "GET",
                "/app.js",
                [("If-None-Match", '"nope"'), ("If-Modified-Since", modified)],
            )
    assert first.status == 200
    assert etag.startswith('"')
    assert first.headers["cache-control"]
    assert by_etag.status == 304
    assert by_etag.body == b""
    assert by_etag.headers["etag"] == etag
    assert by_weak_list.status == 304
    assert by_date.status == 304
    assert stale.status == 200
    assert etag_wins.status == 200


async def test_head(site: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            head = await fetch(port, "HEAD", "/app.js")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len("console.log(1)"))


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/game/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/game/%2E%2E/%2E%2E/secret.txt",
    ],
)
async def test_traversal_refused(site: Path, target: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            out = await raw_exchange(
                port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
    assert out.split(b" ")[1] in (b"403", b"404")
    assert b"top secret" not in out


async def test_symlink_out_of_root_refused(site: Path) -> None:
    os.symlink(site.parent / "secret.txt", site / "link.txt")
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            reply = await fetch(port, "GET", "/link.txt")
    assert reply.status == 403
    assert b"top secret" not in reply.body


def test_content_type_fallbacks() -> None:
    assert content_type("x.unknownext") == "application/octet-stream"
    assert content_type("README.TXT") == "text/plain; charset=utf-8"
    assert content_type("photo.png") == "image/png"


# -- the socket.io client bundle ---------------------------------------------------------

CLIENT_FILES = [
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
    "socket.io.msgpack.min.js",
    "socket.io.msgpack.min.js.map",
]


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    package = tmp_path / "node_modules" / "socket.io-client"
    (package / "dist").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"version": "4.8.1"}))
    for name in CLIENT_FILES:
        (package / "dist" / name).write_text(f"/* {name} */")
    return package / "dist"


class CatchAll:
    """Engine.IO stand-in mounted at /socket.io/."""

    async def handle_http(self, request: Request) -> Response:
        return Response(400, [], b"engine.io says no")

    def check_websocket(self, request: Request) -> Response | None:
        return None

    async def handle_websocket(self, ws: WebSocket) -> None:
        await ws.close()


async def test_client_bundle_served_before_mount(dist: Path) -> None:
    app = App(client_dist_dir=dist)
    app.mount("/socket.io/", CatchAll())
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            replies = {
                name: await fetch(port, "GET", "/socket.io/" + name) for name in CLIENT_FILES
            }
            cached = await fetch(
                port, "GET", "/socket.io/socket.io.js", [("If-None-Match", '"4.8.1"')]
            )
            other = await fetch(port, "GET", "/socket.io/?EIO=4&transport=polling")
            nonexistent = await fetch(port, "GET", "/socket.io/socket.io.esm.js")
    for name, reply in replies.items():
        assert reply.status == 200, name
        assert reply.body == f"/* {name} */".encode()
        assert reply.headers["etag"] == '"4.8.1"'
        assert reply.headers["cache-control"] == "public, max-age=0"
        kind = "json" if name.endswith(".map") else "javascript"
        assert reply.headers["content-type"] == f"application/{kind}; charset=utf-8"
    assert cached.status == 304
    assert other.body == b"engine.io says no"
    assert nonexistent.status == 404


async def test_client_bundle_from_env(dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSERVER_CLIENT_DIST", str(dist))
    assert find_client_dist(None) == dist
    with trio.fail_after(TIMEOUT):
        async with serving(App()) as port:
            reply = await fetch(port, "GET", "/socket.io/socket.io.min.js")
    assert reply.body == b"/* socket.io.min.js */"


async def test_client_bundle_from_cwd(dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSERVER_CLIENT_DIST", raising=False)
    monkeypatch.chdir(dist.parent.parent.parent)
    assert find_client_dist(None) == Path.cwd() / "node_modules" / "socket.io-client" / "dist"


async def test_client_bundle_off(dist: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(App(client_dist_dir=dist, serve_client=False)) as port:
            reply = await fetch(port, "GET", "/socket.io/socket.io.js")
    assert reply.status == 404


REAL_DIST = (
    Path(__file__).resolve().parents[1] / "web" / "node_modules" / "socket.io-client" / "dist"
)


@pytest.mark.skipif(not REAL_DIST.is_dir(), reason="web/node_modules not installed")
async def test_real_client_bundle_from_repo_web(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PYSERVER_CLIENT_DIST", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./node_modules here: the <repo>/web fallback is used
    version = json.loads((REAL_DIST.parent / "package.json").read_text())["version"]
    with trio.fail_after(TIMEOUT):
        async with serving(App()) as port:
            reply = await fetch(port, "GET", "/socket.io/socket.io.min.js")
            head = await fetch(port, "HEAD", "/socket.io/socket.io.esm.min.js.map")
    assert reply.status == 200
    assert reply.body == (REAL_DIST / "socket.io.min.js").read_bytes()
    assert reply.headers["etag"] == f'"{version}"'
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-type"] == "application/json; charset=utf-8"
