"""The package as a user installs it (issue 21): the wheels and the sdist of
``scripts/build_wheel.sh`` (``$PYSERVER_DIST``, set by ``scripts/test.sh``; built here when
unset), installed into fresh virtual environments that have no ``node`` on ``PATH`` and cannot
import this repository.

* the abi3 wheel with ``[redis,demo]`` in CPython 3.11: ``pyserver demo`` from an empty
  directory and ``pyserver run module:sio`` with a user module in a temporary directory serve
  ``/socket.io/socket.io.js`` (and the other bundles) byte for byte as the npm package ships
  them, python-socketio's client connects, and every demo page loads in Chromium under its
  Content-Security-Policy without an error;
* the same abi3 wheel in a second CPython (3.12+; ``scripts/second_python.sh``): it imports and
  its codec and client bundle work;
* the version-specific wheel carries the same files;
* the sdist builds a working wheel in a clean directory with maturin and cargo alone (``node``
  and ``npm`` on ``PATH`` fail the test if called), and refuses to build without the files the
  server serves.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio
from helpers.browser import chromium_browser

pytestmark = [pytest.mark.packaging, pytest.mark.interop]

__all__ = ["chromium_browser"]  # a fixture

ROOT = Path(__file__).resolve().parents[1]
NPM_CLIENT = ROOT / "web" / "node_modules" / "socket.io-client"
CLIENT_FILES = [
    f"socket.io{kind}.js{suffix}"
    for kind in ("", ".min", ".msgpack.min", ".esm.min")
    for suffix in ("", ".map")
]
#: Every demo page and what shows it is up (the same as tests/test_audit_http.py's).
DEMO_PAGES = [
    ("/", "h1"),
    ("/chat/", "#login-name"),
    ("/drawing/", "#status[data-state='connected']"),
    ("/game/", "#game:not([data-me=''])"),
    ("/raw-websocket.html", "#log div"),
]
START_TIMEOUT = 30.0

CODEC_CHECK = """
import sys
from pathlib import Path
import pyserver
from pyserver import _frames
from pyserver.trio.http.static import client_version, find_client_dist
assert _frames.Decoder().feed(_frames.Encoder(client=True).text("héllo")) == ["héllo"]
dist = find_client_dist(None)
print(pyserver.__file__)
print(_frames.__file__)
print(client_version(dist))
print((dist / "socket.io.min.js").read_bytes() == Path(sys.argv[1]).read_bytes())
"""


def npm_version() -> str:
    return str(json.loads((NPM_CLIENT / "package.json").read_text())["version"])


@pytest.fixture(scope="module")
def dist() -> Path:
    given = os.environ.get("PYSERVER_DIST")
    if given:
        return Path(given)
    subprocess.run([str(ROOT / "scripts" / "build_wheel.sh")], cwd=ROOT, check=True)
    return ROOT / "target" / "dist"


def one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{pattern} in {folder}: {found}"
    return found[0]


def make_venv(python: str, where: Path, requirement: str) -> Path:
    """A fresh virtual environment of ``python`` at ``where`` with ``requirement`` installed
    (by this environment's pip, ``pip --python``: no pip inside, quicker); its ``bin``."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(where)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(where / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--disable-pip-version-check", requirement], check=True)
    return where / "bin"


def clean_env(bin_dir: Path) -> dict[str, str]:
    """Only the environment's own ``bin`` on ``PATH`` (no node, no npm, not .venv), nothing
    that would make the repository importable."""
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir.parent), "PYTHONNOUSERSITE": "1"}
    env["LANG"] = "C.UTF-8"
    assert shutil.which("node", path=env["PATH"]) is None
    return env


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The abi3 wheel with its extras in a fresh CPython 3.11 environment: its ``bin``."""
    wheel = one(dist, "pyserver-*-abi3-*.whl")
    return make_venv(sys.executable, tmp_path_factory.mktemp("venv") / "v", f"{wheel}[redis,demo]")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(bin_dir: Path, args: list[str], cwd: Path, log: Path) -> Iterator[str]:
    """``pyserver <args> --port P`` from the installed environment, run in ``cwd``; its base
    URL once it answers. Stopped with SIGTERM (a graceful shutdown) at the end."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "pyserver"), *args, "--port", str(port)],
            cwd=cwd,
            env=clean_env(bin_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, f"pyserver exited: {log.read_text()}"
            try:
                requests.get(base + "/socket.io/socket.io.js", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, f"pyserver did not answer: {log.read_text()}"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def assert_client_bundles_as_npm(base: str) -> None:
    version = npm_version()
    for name in CLIENT_FILES:
        reply = requests.get(f"{base}/socket.io/{name}", timeout=10)
        assert reply.status_code == 200, name
        assert reply.content == (NPM_CLIENT / "dist" / name).read_bytes(), name
        assert reply.headers["etag"] == f'"{version}"', name


def console_error(msg: Any, problems: list[str]) -> None:
    # a failed load is reported with its URL by failed_answer
    if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
        problems.append(f"console: {msg.text}")


def failed_answer(response: Any, problems: list[str]) -> None:
    # /favicon.ico: a page without <link rel="icon"> makes the browser ask for it (the demo
    # serves none); not a file of the package
    if response.status >= 400 and not response.url.endswith("/favicon.ico"):
        problems.append(f"{response.status} {response.url}")


def open_checked(browser: Any, url: str, ready: str) -> None:
    """Load ``url`` (its CSP enforced) until ``ready`` is in the page: no page error, no
    console error, no CSP violation, no answer of 400 or more (but /favicon.ico's)."""
    context = browser.new_context()
    problems: list[str] = []
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: console_error(msg, problems))
        page.on("response", lambda r: failed_answer(r, problems))
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', (e) => "
            "(window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI))"
        )
        page.goto(url)
        page.wait_for_selector(ready, state="attached")
        problems += page.evaluate("window.__csp || []")
    finally:
        context.close()
    assert problems == [], url


def test_installed_wheel_needs_neither_node_nor_the_repository(
    installed: Path, tmp_path: Path
) -> None:
    env = clean_env(installed)
    out = subprocess.run(
        [str(installed / "python"), "-c", CODEC_CHECK, NPM_CLIENT / "dist" / "socket.io.min.js"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    site = installed.parent / "lib"
    assert Path(out[0]).is_relative_to(site), out  # not this checkout
    assert out[1].endswith("_frames.abi3.so"), out
    assert out[2:4] == [npm_version(), "True"]
    version = subprocess.run(
        [str(installed / "pyserver"), "--version"], env=env, capture_output=True, text=True
    )
    assert version.stdout.strip() == f"pyserver 0.1.0 (socket.io-client {npm_version()})"
    # the extras came from the wheel's metadata alone
    subprocess.run(
        [str(installed / "python"), "-c", "import jwt, coredis, msgpack, trio, h11"],
        env=env,
        check=True,
    )


def test_demo_from_an_empty_directory(
    installed: Path, tmp_path: Path, chromium_browser: Any
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with served(installed, ["demo"], empty, tmp_path / "demo.log") as base:
        assert_client_bundles_as_npm(base)
        client = socketio.Client(reconnection=False)
        client.connect(base, namespaces=["/drawing"], wait_timeout=10)
        try:
            assert client.get_sid("/drawing") is not None
        finally:
            client.disconnect()
        pages = [str(p.relative_to(ROOT / "web")) for p in (ROOT / "web").rglob("*.html")]
        pages = ["/" + p.removesuffix("index.html") for p in pages if "node_modules" not in p]
        assert sorted(pages) == sorted(path for path, _ in DEMO_PAGES)  # every page, checked
        for path, ready in DEMO_PAGES:
            open_checked(chromium_browser, base + path, ready)
    assert list(empty.iterdir()) == []


USER_MODULE = """
from pathlib import Path

from pyserver import Server

sio = Server(static_dir=Path(__file__).parent / "public")


@sio.on("echo")
async def echo(socket, data):
    return data
"""

USER_PAGE = """<!doctype html>
<html><head><title>user app</title><link rel="icon" href="data:,">
<script src="/socket.io/socket.io.min.js"></script><script src="/app.js" defer></script>
</head><body></body></html>
"""

USER_SCRIPT = """
const socket = io();
socket.emitWithAck("echo", "from the browser").then((reply) => {
  document.body.dataset.echo = reply;
});
"""


def test_run_a_user_module(installed: Path, tmp_path: Path, chromium_browser: Any) -> None:
    app = tmp_path / "app"
    (app / "public").mkdir(parents=True)
    (app / "userapp.py").write_text(USER_MODULE)
    (app / "public" / "index.html").write_text(USER_PAGE)
    (app / "public" / "app.js").write_text(USER_SCRIPT)
    with served(installed, ["run", "userapp:sio"], app, tmp_path / "run.log") as base:
        assert_client_bundles_as_npm(base)
        client = socketio.Client(reconnection=False)
        client.connect(base, wait_timeout=10)
        try:
            assert client.call("echo", {"n": 1}, timeout=10) == {"n": 1}
        finally:
            client.disconnect()
        open_checked(chromium_browser, base + "/", "body[data-echo='from the browser']")


def test_abi3_wheel_in_a_second_cpython(dist: Path, tmp_path: Path) -> None:
    found = subprocess.run(
        [str(ROOT / "scripts" / "second_python.sh")], capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr  # scripts/bootstrap.sh --system installs one
    python = found.stdout.strip()
    bin_dir = make_venv(python, tmp_path / "v", str(one(dist, "pyserver-*-abi3-*.whl")))
    env = clean_env(bin_dir)
    minor = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert minor.stdout.strip() == "True"
    out = subprocess.run(
        [str(bin_dir / "python"), "-c", CODEC_CHECK, NPM_CLIENT / "dist" / "socket.io.min.js"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert Path(out[0]).is_relative_to(tmp_path / "v"), out
    assert out[1].endswith("_frames.abi3.so"), out
    assert out[2:4] == [npm_version(), "True"]


def packaged_files(archive: Path) -> dict[str, bytes]:
    """``_static/...`` -> bytes, from a wheel or an sdist."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as whl:
            return {
                n.split("pyserver/", 1)[1]: whl.read(n)
                for n in whl.namelist()
                if n.startswith("pyserver/_static/")
            }
    with tarfile.open(archive) as sdist:
        return {
            m.name.split("/pyserver/", 1)[1]: sdist.extractfile(m).read()  # type: ignore[union-attr]
            for m in sdist.getmembers()
            if "/pyserver/_static/" in m.name and m.isfile()
        }


def test_every_artifact_carries_the_npm_bytes(dist: Path) -> None:
    artifacts = [
        one(dist, "pyserver-*-abi3-*.whl"),
        one(dist, "pyserver-*-cp311-cp311-*.whl"),
        one(dist, "pyserver-*.tar.gz"),
    ]
    expected = {
        f"_static/socket.io-client/dist/{name}": (NPM_CLIENT / "dist" / name).read_bytes()
        for name in CLIENT_FILES
    }
    expected["_static/socket.io-client/package.json"] = (NPM_CLIENT / "package.json").read_bytes()
    for page in ("index.html", "chat/chat.js", "drawing/app.js", "game/game.js"):
        expected[f"_static/web/{page}"] = (ROOT / "web" / page).read_bytes()
    for archive in artifacts:
        files = packaged_files(archive)
        for name, data in expected.items():
            assert files.get(name) == data, (archive.name, name)
        assert not any("node_modules" in name or "package-lock" in name for name in files)


def test_sdist_builds_a_working_wheel_with_cargo_alone(dist: Path, tmp_path: Path) -> None:
    with tarfile.open(one(dist, "pyserver-*.tar.gz")) as sdist:
        sdist.extractall(tmp_path / "src", filter="data")
    (src,) = (tmp_path / "src").iterdir()
    assert not (src / "web").exists() and not (src / "node_modules").exists()
    trap = tmp_path / "trap"  # a node or npm called by the build leaves a mark and fails it
    trap.mkdir()
    for tool in ("node", "npm", "npx"):
        (trap / tool).write_text(f'#!/bin/sh\necho {tool} >> "{trap}/called"\nexit 1\n')
        (trap / tool).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{trap}:{os.environ['PATH']}",
        # the release build's target directory (scripts/bootstrap.sh's maturin develop): its
        # dependencies are compiled already, only the crate is built again from the sdist
        "CARGO_TARGET_DIR": str(ROOT / "target"),
    }
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    maturin = [str(Path(sys.executable).parent / "maturin"), "build", "--release"]
    maturin += ["-i", sys.executable]

    manifest = src / "pyserver" / "_static" / "MANIFEST"
    kept = manifest.read_bytes()
    manifest.unlink()
    refused = subprocess.run(
        [*maturin, "-o", str(tmp_path / "none")], cwd=src, env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "run scripts/pack_static.py" in refused.stdout + refused.stderr
    manifest.write_bytes(kept)

    subprocess.run([*maturin, "-o", str(tmp_path / "out")], cwd=src, env=env, check=True)
    assert not (trap / "called").exists(), (trap / "called").read_text()
    wheel = one(tmp_path / "out", "pyserver-*.whl")
    bin_dir = make_venv(sys.executable, tmp_path / "v", str(wheel))
    out = subprocess.run(
        [str(bin_dir / "python"), "-c", CODEC_CHECK, NPM_CLIENT / "dist" / "socket.io.min.js"],
        cwd=tmp_path,
        env=clean_env(bin_dir),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert Path(out[0]).is_relative_to(tmp_path / "v"), out
    assert out[2:4] == [npm_version(), "True"]
