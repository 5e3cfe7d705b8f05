"""``scripts/pack_static.py`` and the Admin UI's page: ``ui/dist`` copied without its source
maps, ``index.html`` rewritten to load the icon font from the package (``@mdi/font``) and no
Google font, ``server-url.js`` loaded first, the manifest listing it all (what
``rust_frames/build.rs`` checks); a page that still names another site is refused. On a
made-up ``web/``; and the checkout's packed page loads nothing from elsewhere."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
INDEX = (
    '<!DOCTYPE html><html><head><link rel="icon" href="favicon.png">'
    '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto:100,300,400,'
    '500,700,900"><link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@mdi/font@latest/'
    'css/materialdesignicons.min.css"><link href="css/app.css" rel="stylesheet"></head>'
    '<body><div id="app"></div><script src="js/app.js"></script></body></html>'
)


def load_pack_static() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pack_static", ROOT / "scripts/pack_static.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pack_static = load_pack_static()


def package(web: Path, name: str, version: str) -> Path:
    root = web / "node_modules" / name
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": name, "version": version}))
    return root


@pytest.fixture
def web(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    deps = {"socket.io-client": "4.8.1", "@socket.io/admin-ui": "0.5.1", "@mdi/font": "7.4.47"}
    web.mkdir()
    (web / "package.json").write_text(json.dumps({"dependencies": deps}))
    client = package(web, "socket.io-client", "4.8.1")
    (client / "dist").mkdir()
    for name in pack_static.CLIENT_FILES:
        (client / "dist" / name).write_text(name)
    (web / "index.html").write_text("<h1>demo</h1>")
    dist = package(web, "@socket.io/admin-ui", "0.5.1") / "ui" / "dist"
    for rel, text in {
        "index.html": INDEX,
        "favicon.png": "png",
        "css/app.css": "css",
        "js/app.js": "js",
        "js/app.js.map": "map",
    }.items():
        (dist / rel).parent.mkdir(parents=True, exist_ok=True)
        (dist / rel).write_text(text)
    icons = package(web, "@mdi/font", "7.4.47")
    (icons / "css").mkdir()
    (icons / "css" / "materialdesignicons.min.css").write_text("icons")
    (icons / "fonts").mkdir()
    for ext in ("eot", "ttf", "woff", "woff2"):
        (icons / "fonts" / f"materialdesignicons-webfont.{ext}").write_text(ext)
    return web


def test_the_admin_ui_is_packed_to_load_nothing_from_elsewhere(web: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines = pack_static.pack(web, out)
    admin = sorted(line for line in lines if line.startswith("admin-ui/"))
    assert admin == [
        "admin-ui/css/app.css",
        "admin-ui/favicon.png",
        "admin-ui/index.html",
        "admin-ui/js/app.js",  # (no source map)
        "admin-ui/mdi/css/materialdesignicons.min.css",
        "admin-ui/mdi/fonts/materialdesignicons-webfont.woff",
        "admin-ui/mdi/fonts/materialdesignicons-webfont.woff2",
        "admin-ui/server-url.js",
    ]
    assert lines[0] == "socket.io-client 4.8.1"  # (what build.rs skips)
    for rel in lines[1:]:
        assert (out / rel).is_file(), rel  # what build.rs checks
    index = (out / "admin-ui" / "index.html").read_text()
    assert "//" not in index.replace("<!DOCTYPE html>", "")
    assert '<link rel="stylesheet" href="mdi/css/materialdesignicons.min.css">' in index
    assert '<script src="server-url.js"></script><script src="js/app.js">' in index
    assert "location.origin" in (out / "admin-ui" / "server-url.js").read_text()


def test_a_page_that_still_loads_from_elsewhere_is_refused(web: Path, tmp_path: Path) -> None:
    index = web / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist" / "index.html"
    index.write_text(INDEX.replace("js/app.js", "https://cdn.example/app.js"))
    with pytest.raises(SystemExit, match="loads from another site"):
        pack_static.pack(web, tmp_path / "out")


def test_the_admin_ui_version_is_the_pinned_one(web: Path, tmp_path: Path) -> None:
    meta = web / "node_modules" / "@socket.io" / "admin-ui" / "package.json"
    meta.write_text(json.dumps({"version": "0.5.0"}))
    with pytest.raises(SystemExit, match=r"0\.5\.0 is installed but web/package.json pins 0\.5\.1"):
        pack_static.pack(web, tmp_path / "out")


def test_the_checkouts_packed_page() -> None:
    """What bootstrap packed (and a wheel carries): the pinned UI, nothing from elsewhere."""
    pins = json.loads((ROOT / "web" / "package.json").read_text())["dependencies"]
    assert re.fullmatch(r"0\.5\.\d+", pins["@socket.io/admin-ui"])
    packed = ROOT / "pyserver" / "_static"
    manifest = (packed / "MANIFEST").read_text().splitlines()
    assert "admin-ui/index.html" in manifest and "admin-ui/server-url.js" in manifest
    index = (packed / "admin-ui" / "index.html").read_text()
    assert not re.search(r"""(?:href|src)=["']?(?:[a-z]+:)?//""", index)
