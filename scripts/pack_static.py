#!/usr/bin/env python3
"""Copy what the server serves into the package, so that a wheel carries it (run before
every build; ``scripts/bootstrap.sh`` and ``scripts/build_wheel.sh`` do).

Writes ``pyserver/_static/`` (generated, ignored by git, shipped in the wheel and the sdist):

* ``socket.io-client/dist/``: the socket.io-client bundles and their maps, byte for byte as
  the npm package ships them (``web/node_modules/socket.io-client/dist``), and
  ``socket.io-client/package.json``, the package's own (its ``version`` is the bundles' ETag).
  The version is pinned in one place, ``web/package.json``; the installed package must be it.
* ``web/``: the demo's pages, scripts and styles, as ``web/`` has them, less what the static
  handler never serves (``node_modules/``, ``package*.json``, dot-files).
* ``admin-ui/``: the Socket.IO Admin UI (``@socket.io/admin-ui``'s built ``ui/dist``, source
  maps left out), served at ``/admin/`` by ``sio.instrument(..., serve_ui=True)``, when
  ``web/package.json`` depends on it. Its ``index.html`` loads a Google font and the Material
  Design icon font from CDNs: the copy loads the icons from ``admin-ui/mdi/`` (the
  ``@mdi/font`` package's CSS and woff2/woff fonts) and drops the font (the system sans-serif
  instead), so the UI loads nothing from the internet; packing fails when the page still names
  another site. ``admin-ui/server-url.js`` (loaded first) makes the login form offer the
  page's own server.
* ``MANIFEST``: the client's name and version on the first line, then the path of every file
  (paths only, so that editing a page does not rebuild the Rust crate).
  ``rust_frames/build.rs`` refuses to build the extension for Python when the manifest or a
  file it lists is missing, so no wheel goes out without them.

Fails (exit 1) when the npm packages are not installed or are not the pinned version. The
copy is idempotent: a file whose bytes are already there is not rewritten (its mtime, the
static ETag, stays), and files no longer in the source are removed.

Standard library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
OUT = ROOT / "pyserver" / "_static"
CLIENT = "socket.io-client"
#: The files of the client's ``dist/`` that the server serves (``static.CLIENT_FILE_RE``).
CLIENT_FILES = tuple(
    f"socket.io{kind}.js{suffix}"
    for kind in ("", ".min", ".msgpack.min", ".esm.min")
    for suffix in ("", ".map")
)
_NEVER_SERVED = {"node_modules", "package.json", "package-lock.json"}
ADMIN_UI = "@socket.io/admin-ui"
ICONS = "@mdi/font"
#: What the Admin UI's index.html loads from CDNs, and what the packed copy loads instead.
_ADMIN_UI_LINKS = (
    (
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto:100,300,'
        '400,500,700,900">',
        "",
    ),
    (
        "https://cdn.jsdelivr.net/npm/@mdi/font@latest/css/materialdesignicons.min.css",
        "mdi/css/materialdesignicons.min.css",
    ),
    ("<script src=", '<script src="server-url.js"></script><script src=', 1),
)
#: Loaded first by the packed page: the UI's login form needs a server URL (its Connect
#: button stays disabled while it is empty), so the page served by a server offers that
#: server (its own origin) until the user saves another.
_SERVER_URL_JS = b"""// pyserver: by default, connect to the server that serves this page
try {
  if (!localStorage.getItem("server_url")) localStorage.setItem("server_url", location.origin);
} catch (e) {}
"""


def fail(message: str) -> NoReturn:
    raise SystemExit(f"pack_static: {message}")


def pinned_version(web: Path = WEB) -> str:
    """The client version ``web/package.json`` pins (an exact version, never a range)."""
    pin = json.loads((web / "package.json").read_text("utf-8"))["dependencies"][CLIENT]
    if not pin[:1].isdigit():
        fail(f"web/package.json must pin {CLIENT} to an exact version, not {pin!r}")
    return str(pin)


def installed(web: Path, name: str) -> Path:
    """The npm package ``name`` in ``web/node_modules``, at the version ``web/package.json``
    pins (exactly)."""
    pin = json.loads((web / "package.json").read_text("utf-8"))["dependencies"][name]
    package = web / "node_modules" / name
    try:
        version = json.loads((package / "package.json").read_text("utf-8"))["version"]
    except FileNotFoundError:
        fail(f"{package} is missing: run scripts/bootstrap.sh (npm ci in web/)")
    if version != pin:
        fail(f"{name} {version} is installed but web/package.json pins {pin}: npm ci")
    return package


def admin_ui_sources(web: Path = WEB) -> dict[str, Path | bytes]:
    """The Admin UI's files under ``admin-ui/`` (empty when ``web/package.json`` does not
    depend on it): ``ui/dist`` without source maps, its ``index.html`` rewritten to load
    nothing from another site, and the icon font it needs."""
    deps = json.loads((web / "package.json").read_text("utf-8"))["dependencies"]
    if ADMIN_UI not in deps:
        return {}
    dist = installed(web, ADMIN_UI) / "ui" / "dist"
    files: dict[str, Path | bytes] = {}
    for path in sorted(dist.rglob("*")):
        if path.is_file() and path.suffix != ".map":
            files["admin-ui/" + path.relative_to(dist).as_posix()] = path
    index = (dist / "index.html").read_text("utf-8")
    for cdn, local, *count in _ADMIN_UI_LINKS:
        index = index.replace(cdn, local, *count)
    if re.search(r"""(?:href|src)=["']?(?:[a-z]+:)?//""", index, re.IGNORECASE):
        fail(f"{dist / 'index.html'} loads from another site (a new {ADMIN_UI} version?)")
    files["admin-ui/index.html"] = index.encode("utf-8")
    files["admin-ui/server-url.js"] = _SERVER_URL_JS
    icons = installed(web, ICONS)
    files["admin-ui/mdi/css/materialdesignicons.min.css"] = (
        icons / "css" / "materialdesignicons.min.css"
    )
    for font in sorted((icons / "fonts").glob("materialdesignicons-webfont.woff*")):
        files[f"admin-ui/mdi/fonts/{font.name}"] = font
    return files


def sources(web: Path = WEB) -> dict[str, Path | bytes]:
    """Relative path under ``_static`` -> the file it is copied from (or its bytes)."""
    package = web / "node_modules" / CLIENT
    version = pinned_version(web)
    try:
        installed = json.loads((package / "package.json").read_text("utf-8"))["version"]
    except FileNotFoundError:
        fail(f"{package} is missing: run scripts/bootstrap.sh (npm ci in web/)")
    if installed != version:
        fail(f"{CLIENT} {installed} is installed but web/package.json pins {version}: npm ci")
    files: dict[str, Path | bytes] = {f"{CLIENT}/package.json": package / "package.json"}
    for name in CLIENT_FILES:
        path = package / "dist" / name
        if not path.is_file():
            fail(f"{path} is missing from the npm package")
        files[f"{CLIENT}/dist/{name}"] = path
    for path in sorted(web.rglob("*")):
        parts = path.relative_to(web).parts
        if not path.is_file() or any(p in _NEVER_SERVED or p.startswith(".") for p in parts):
            continue
        files["web/" + "/".join(parts)] = path
    if "web/index.html" not in files:
        fail("web/index.html is missing")
    files.update(admin_ui_sources(web))
    return files


def pack(web: Path = WEB, out: Path = OUT) -> list[str]:
    """Copy ``web``'s client bundles and pages into ``out``; the manifest's lines."""
    files = sources(web)
    lines = [f"{CLIENT} {pinned_version(web)}"]
    if out.exists() and not out.is_dir():
        out.unlink()
    for rel, src in files.items():
        data = src if isinstance(src, bytes) else src.read_bytes()
        dest = out / rel
        if not dest.is_file() or dest.read_bytes() != data:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        lines.append(rel)
    for path in sorted(out.rglob("*"), reverse=True):  # what the sources no longer have
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel not in files and rel != "MANIFEST":
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    manifest = "\n".join(lines) + "\n"
    target = out / "MANIFEST"
    if not target.is_file() or target.read_text("utf-8") != manifest:
        target.write_text(manifest, "utf-8")
    return lines


def main() -> None:
    lines = pack()
    print(f"pack_static: {lines[0]}, {len(lines) - 1} files in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
