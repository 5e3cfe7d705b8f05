"""Regression tests of the security audit (issue 20), items 8-10: static files, CORS with
credentials, the Host allow-list, the demo's page headers and its login note. Over real
loopback sockets (``helpers.http_client``), as a browser or an attacker would send them."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.browser import chromium_browser
from helpers.http_client import fetch, raw_exchange, serving
from helpers.server_thread import ServerThread

from pyserver.demo import DEFAULT_WEB_DIR, build_server, demo_allowed_hosts
from pyserver.http import WebSocket
from pyserver.trio.engineio import EngineIOServer
from pyserver.trio.http.app import App
from pyserver.trio.socketio.server import Server

TIMEOUT = 10

__all__ = ["chromium_browser"]  # the fixture, for the browser test at the end


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "chat").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "chat" / "index.html").write_text("<h1>chat</h1>")
    (root / "node_modules" / "lib").mkdir(parents=True)
    (root / "node_modules" / "lib" / "index.js").write_text("secret()")
    (root / "package.json").write_text('{"name": "private"}')
    (root / "package-lock.json").write_text("{}")
    (root / "chat" / "package.json").write_text("{}")
    (root / ".env").write_text("SECRET=1")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_text("Contact: x")
    return root


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def header_of(raw: bytes, name: str) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def request(target: str, host: str, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", *extra, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


# -- item 8: static files ---------------------------------------------------------------


@pytest.mark.parametrize("length", [300, 15_000])
async def test_audit_static_long_segment_is_404_without_traceback(
    site: Path, length: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A segment over NAME_MAX (255) made ``is_dir`` raise ENAMETOOLONG: 500 and a traceback."""
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            reply = await fetch(port, "GET", "/" + "a" * length)
            nested = await fetch(port, "GET", "/chat/" + "b" * length + "/x.js")
            after = await fetch(port, "GET", "/")
    assert reply.status == 404
    assert nested.status == 404
    assert after.status == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("//chat?x=1", "/chat/?x=1"),
        ("///chat", "/chat/"),
        ("/%2F%2Fchat", "/chat/"),
        ("//chat//", None),  # already the slash form: the page itself
    ],
)
async def test_audit_static_redirect_never_scheme_relative(
    site: Path, target: str, location: str | None
) -> None:
    """``GET //chat?x=1`` answered ``Location: //chat/?x=1``: a browser goes to host "chat"."""
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            raw = await raw_exchange(port, request(target, "127.0.0.1"))
    if location is None:
        assert status_of(raw) == 200
        return
    assert status_of(raw) == 301
    got = header_of(raw, "location")
    assert got == location
    assert got.startswith("/") and not got.startswith(("//", "/\\"))


async def test_audit_static_security_headers_on_pages(site: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            page = await fetch(port, "GET", "/")
            redirect = await fetch(port, "GET", "/chat")
            etag = page.headers["etag"]
            cached = await fetch(port, "GET", "/", [("If-None-Match", etag)])
        async with serving(App(static_dir=site, security_headers=None)) as port:
            bare = await fetch(port, "GET", "/")
        custom = App(static_dir=site, security_headers={"Content-Security-Policy": "x"})
        async with serving(custom) as port:
            own = await fetch(port, "GET", "/")
    for reply in (page, redirect, cached):
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "SAMEORIGIN"
        assert reply.headers["referrer-policy"] == "same-origin"
    assert "x-frame-options" not in bare.headers
    assert own.headers["content-security-policy"] == "x"
    assert "x-frame-options" not in own.headers


async def test_audit_static_node_modules_and_package_json_not_served(site: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=site)) as port:
            replies = {
                target: await fetch(port, "GET", target)
                for target in [
                    "/node_modules/lib/index.js",
                    "/node_modules/",
                    "/Node_Modules/lib/index.js",
                    "/package.json",
                    "/package-lock.json",
                    "/chat/package.json",
                    "/.env",
                ]
            }
            well_known = await fetch(port, "GET", "/.well-known/security.txt")
    assert {t: r.status for t, r in replies.items()} == dict.fromkeys(replies, 404)
    assert all(b"secret" not in r.body and b"private" not in r.body for r in replies.values())
    assert well_known.status == 200


async def test_audit_static_demo_web_dir_hides_npm_files_but_serves_client() -> None:
    """The demo's own ``web/``: its node_modules and package files were served as is; the
    client bundle stays at its route (the pages load it only from there)."""
    if not (DEFAULT_WEB_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("web/node_modules not installed")
    with trio.fail_after(TIMEOUT):
        async with serving(App(static_dir=DEFAULT_WEB_DIR)) as port:
            hidden = [
                await fetch(port, "GET", target)
                for target in (
                    "/node_modules/socket.io-client/dist/socket.io.js",
                    "/node_modules/socket.io-client/package.json",
                    "/package.json",
                    "/package-lock.json",
                )
            ]
            bundle = await fetch(port, "GET", "/socket.io/socket.io.js")
    assert [r.status for r in hidden] == [404] * 4
    assert bundle.status == 200 and bundle.body


# -- item 9: CORS "*" with credentials; allowed_hosts -------------------------------------


def test_audit_cors_star_with_credentials_refused() -> None:
    with pytest.raises(ValueError, match="cors_credentials"):
        Server(cors_allowed_origins="*", cors_credentials=True)
    with pytest.raises(ValueError, match="cors_credentials"):
        EngineIOServer(cors_allowed_origins="*", cors_credentials=True)
    Server(cors_allowed_origins="*")  # without credentials: fine
    Server(cors_allowed_origins=["https://app.example"], cors_credentials=True)


def hosts_app(site: Path) -> App:
    app = App(static_dir=site, allowed_hosts=["localhost", "127.0.0.1", "[::1]", "*.example.com"])

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.send("hi")
        await socket.close()

    return app


async def test_audit_allowed_hosts_refuses_foreign_host(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pyserver.http")
    with trio.fail_after(TIMEOUT):
        async with serving(hosts_app(site)) as port:
            foreign = await raw_exchange(port, request("/", f"rebound.attacker.test:{port}"))
            records = [r for r in caplog.records if r.name == "pyserver.http"]
            bare_domain = await raw_exchange(port, request("/", "example.com"))
            suffix_trick = await raw_exchange(port, request("/", "evilexample.com"))
            passed = {
                host: status_of(await raw_exchange(port, request("/", host)))
                for host in (
                    f"127.0.0.1:{port}",
                    f"LOCALHOST:{port}",
                    "localhost",
                    f"[::1]:{port}",
                    "chat.example.com",
                    "a.b.example.com.",
                )
            }
    assert status_of(foreign) == 400
    assert b"<h1>home</h1>" not in foreign
    assert status_of(bare_domain) == 400
    assert status_of(suffix_trick) == 400
    assert passed == dict.fromkeys(passed, 200)
    assert len(records) == 1  # one line per refused request
    assert "'rebound.attacker.test:" in records[0].getMessage()  # through logtext.shown


async def test_audit_allowed_hosts_refuses_websocket_upgrade(site: Path) -> None:
    """DNS rebinding: the Origin matches the (foreign) Host, so the same-origin rule let the
    upgrade through."""
    key = base64.b64encode(os.urandom(16)).decode()
    with trio.fail_after(TIMEOUT):
        async with serving(hosts_app(site)) as port:
            upgrade = [
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
            ]
            foreign = await raw_exchange(
                port,
                request(
                    "/ws", f"rebound.test:{port}", f"Origin: http://rebound.test:{port}", *upgrade
                ),
            )
            own = await raw_exchange(
                port,
                request("/ws", f"localhost:{port}", f"Origin: http://localhost:{port}", *upgrade),
            )
    assert status_of(foreign) == 400
    assert status_of(own) == 101


async def test_audit_allowed_hosts_on_server_covers_engineio() -> None:
    sio = Server(allowed_hosts=["127.0.0.1"])
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sio.run)
            async with serving(sio.app) as port:
                target = "/socket.io/?EIO=4&transport=polling"
                foreign = await raw_exchange(port, request(target, "rebound.test"))
                own = await raw_exchange(port, request(target, f"127.0.0.1:{port}"))
            nursery.cancel_scope.cancel()
    assert status_of(foreign) == 400
    assert status_of(own) == 200
    with pytest.raises(ValueError, match="allowed_hosts"):
        Server(app=App(), allowed_hosts=["localhost"])


def test_audit_demo_allowed_hosts_follow_the_bound_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYSERVER_ALLOWED_HOSTS", raising=False)
    loopback = ["localhost", "127.0.0.1", "[::1]"]
    assert demo_allowed_hosts("127.0.0.1") == loopback
    assert demo_allowed_hosts("localhost") == loopback
    assert demo_allowed_hosts("::1") == loopback
    assert demo_allowed_hosts("127.0.0.2") == [*loopback, "127.0.0.2"]
    assert demo_allowed_hosts("192.0.2.7") == ["192.0.2.7"]
    assert demo_allowed_hosts("2001:db8::1") == ["[2001:db8::1]"]
    assert demo_allowed_hosts("0.0.0.0") is None
    assert demo_allowed_hosts("::") is None
    monkeypatch.setenv("PYSERVER_ALLOWED_HOSTS", "chat.example.com, *")
    assert demo_allowed_hosts("127.0.0.1") == ["chat.example.com", "*"]


# -- the demo: its pages' headers, its Host rule, its login note (item 10) -----------------


async def test_audit_demo_pages_have_csp_and_own_hosts_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYSERVER_ALLOWED_HOSTS", raising=False)
    sio = build_server(jwt_secret="x" * 32)
    with trio.fail_after(TIMEOUT):
        async with serving(sio.app) as port:
            pages = {
                target: await raw_exchange(port, request(target, f"127.0.0.1:{port}"))
                for target in ("/", "/chat/", "/drawing/", "/game/", "/raw-websocket.html")
            }
            foreign = await raw_exchange(port, request("/", f"rebound.test:{port}"))
            by_name = await raw_exchange(port, request("/", f"localhost:{port}"))
    for target, raw in pages.items():
        assert status_of(raw) == 200, target
        csp = header_of(raw, "content-security-policy") or ""
        assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp, target
        assert "unsafe-inline" not in csp
        assert header_of(raw, "x-content-type-options") == "nosniff"
        body = raw.split(b"\r\n\r\n", 1)[1]
        # nothing inline that the CSP would block
        assert b"<script>" not in body and b"<style" not in body and b"style=" not in body
    assert status_of(foreign) == 400
    assert status_of(by_name) == 200


async def test_audit_demo_chat_page_says_login_is_a_demo_login() -> None:
    sio = build_server(jwt_secret="x" * 32)
    with trio.fail_after(TIMEOUT):
        async with serving(sio.app) as port:
            page = await fetch(port, "GET", "/chat/")
    text = page.body.decode()
    assert "Demo login" in text and "no password" in text


@pytest.mark.interop
def test_audit_demo_pages_run_under_their_csp_in_chromium(
    chromium_browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every demo page works with its CSP enforced (the e2e tests bypass it, as Playwright's
    string predicates need eval): no CSP violation, no page error, the apps connect."""
    monkeypatch.delenv("PYSERVER_ALLOWED_HOSTS", raising=False)
    server = ServerThread(lambda: build_server(jwt_secret="x" * 40))
    server.start()
    report = (
        "document.addEventListener('securitypolicyviolation', (e) => "
        "(window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI))"
    )
    try:
        for path, ready in [
            ("/", "h1"),
            ("/chat/", "#login-name"),
            ("/drawing/", "#status[data-state='connected']"),
            ("/game/", "#game:not([data-me=''])"),
            ("/raw-websocket.html", "#log div"),
        ]:
            context = chromium_browser.new_context()
            try:
                page = context.new_page()
                page.set_default_timeout(15_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                page.add_init_script(report)
                page.goto(f"http://127.0.0.1:{server.port}{path}")
                page.wait_for_selector(ready, state="attached")
                if path == "/chat/":
                    assert page.is_visible("#demo-login-note")
                    page.fill("#login-name", "ada")
                    page.click("#login-button")
                    page.wait_for_selector("#status[data-status='connected']")
                if path == "/":
                    # the stylesheet (once inline) applies
                    assert (
                        page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth")
                        != "none"
                    )
                assert page.evaluate("window.__csp || []") == [], path
                assert errors == [], path
            finally:
                context.close()
    finally:
        server.stop()
