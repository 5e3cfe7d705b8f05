"""Static files from a directory, and the socket.io client bundle (blocking; run in a thread).

Rules: only GET/HEAD; the URL path is percent-decoded by the server, then every segment must
be a plain name (no ``..``, no NUL, no backslash) and the resolved file must stay inside the
root (symlinks pointing out are refused): else 403. Never served, as if absent (404):
anything under a ``node_modules`` directory, ``package.json`` and ``package-lock.json`` (the
socket.io client bundle has its own routes, see ``client_file_response``), and dot-files
(``.env``, ``.git/``; ``.well-known/`` excepted), as Node's ``serve-static`` ignores them. Any
``OSError`` while resolving or reading (a segment over the file system's 255-byte name
limit, a file gone meanwhile, no permission) is a 404 too, never a 500. A directory answers
its ``index.html`` (a 301 to the slash form first, so relative links work; the ``Location``
is built from the normalised path, one leading slash, so ``//host`` never becomes a
scheme-relative redirect to another host). Validators: a strong ETag from mtime and size,
Last-Modified, Cache-Control; If-None-Match (weak comparison, RFC 9110 13.1.2) wins over
If-Modified-Since; a match answers 304 without a body. Every answer carries the site's
``security_headers`` (:data:`DEFAULT_SECURITY_HEADERS` unless the App says otherwise).
"""

from __future__ import annotations

import email.utils
import json
import mimetypes
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote

from pyserver.http import Headers, Response

__all__ = [
    "CLIENT_FILE_RE",
    "DEFAULT_SECURITY_HEADERS",
    "PACKAGED_DIR",
    "client_file_response",
    "client_version",
    "content_type",
    "find_client_dist",
    "static_file_response",
]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
}

# The names Node's socket.io serves next to its Engine.IO path (lib/index.ts clientPathRegex).
CLIENT_FILE_RE = re.compile(r"socket\.io(\.msgpack|\.esm)?(\.min)?\.js(\.map)?")

#: The headers every static answer carries by default (``App(security_headers=...)``):
#: no MIME sniffing (a file is only ever what its Content-Type says), no framing by another
#: site (clickjacking), and the Referer only to this origin. Django's defaults are close
#: (``nosniff``, ``Referrer-Policy: same-origin``; it frames DENY); Helmet's too (SAMEORIGIN).
DEFAULT_SECURITY_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN",
        "Referrer-Policy": "same-origin",
    }
)

#: Names never served from the static directory (compared in lower case).
_HIDDEN_DIRS = frozenset({"node_modules"})
_HIDDEN_FILES = frozenset({"package.json", "package-lock.json"})


def content_type(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    known = _TYPES.get(suffix)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/"):
        return guessed + "; charset=utf-8"
    return guessed


def _not_modified(headers: Headers, etag: str, mtime: int) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return etag.removeprefix("W/") in tags
    ims = headers.get("if-modified-since")
    if ims is not None:
        try:
            since = email.utils.parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since is None:  # older Pythons
            return False
        return mtime <= int(since.timestamp())
    return False


def _text(status: int, body: str, *extra: tuple[str, str]) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8"), *extra], body.encode())


def _file_response(
    file: Path, method: str, headers: Headers, cache_control: str, ctype: str, etag: str | None
) -> Response:
    st = file.stat()
    mtime = int(st.st_mtime)
    if etag is None:
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    validators = [
        ("ETag", etag),
        ("Last-Modified", email.utils.formatdate(mtime, usegmt=True)),
        ("Cache-Control", cache_control),
    ]
    if _not_modified(headers, etag, mtime):
        return Response(304, validators)
    out = [("Content-Type", ctype), ("X-Content-Type-Options", "nosniff"), *validators]
    if method == "HEAD":
        out.append(("Content-Length", str(st.st_size)))
        return Response(200, out)
    return Response(200, out, file.read_bytes())


def static_file_response(
    root: Path,
    url_path: str,
    method: str,
    headers: Headers,
    *,
    cache_control: str,
    query_string: str = "",
    extra_headers: Mapping[str, str] = DEFAULT_SECURITY_HEADERS,
) -> Response | None:
    """The answer for ``url_path`` under ``root``, or None when there is no such file (or it
    is one never served, or the file system refused it: the caller answers 404).
    ``query_string`` is kept in the redirect from a directory to its slash form;
    ``extra_headers`` (the security headers) go on every answer."""
    answer = _static_answer(root, url_path, method, headers, cache_control, query_string)
    if answer is not None and extra_headers:
        present = {name.lower() for name, _ in answer.headers}
        answer.headers.extend(
            (name, value) for name, value in extra_headers.items() if name.lower() not in present
        )
    return answer


def _hidden(segments: list[str]) -> bool:
    """Whether the path names something never served: a dot-file, ``node_modules/``,
    ``package*.json`` (the web app's npm metadata)."""
    for seg in segments:
        low = seg.lower()
        if low in _HIDDEN_DIRS or (low.startswith(".") and low != ".well-known"):
            return True
    return bool(segments) and segments[-1].lower() in _HIDDEN_FILES


def _static_answer(
    root: Path, url_path: str, method: str, headers: Headers, cache_control: str, query: str
) -> Response | None:
    segments = url_path.split("/")
    for seg in segments:
        if seg in ("..", ".") or "\x00" in seg or "\\" in seg:
            return _text(403, "Forbidden\n")
    names = [s for s in segments if s]
    if _hidden(names):
        return None
    try:
        root = root.resolve()
        resolved = root.joinpath(*names).resolve()
        if not resolved.is_relative_to(root):
            return _text(403, "Forbidden\n")
        if resolved.is_dir():
            if not url_path.endswith("/"):
                # from the normalised path: "//chat" must not become "Location: //chat/"
                # (scheme-relative: a browser would go to the host "chat")
                location = quote("/" + "/".join(names) + "/") + (f"?{query}" if query else "")
                return Response(301, [("Location", location), ("Content-Length", "0")])
            resolved = resolved / "index.html"
        if not resolved.is_file():
            return None
        if method not in ("GET", "HEAD"):
            return _text(405, "Method Not Allowed\n", ("Allow", "GET, HEAD"))
        return _file_response(
            resolved, method, headers, cache_control, content_type(str(resolved)), None
        )
    except (OSError, RuntimeError):
        # a segment over NAME_MAX (ENAMETOOLONG), a file removed or made unreadable meanwhile,
        # a symlink loop: no such file, never a 500
        return None


#: What the wheel carries besides the code (``scripts/pack_static.py`` writes it at build
#: time from the npm packages; absent from a checkout until ``scripts/bootstrap.sh`` runs):
#: ``socket.io-client/`` (its ``package.json`` and ``dist/``) and ``web/`` (the demo's pages).
PACKAGED_DIR = Path(__file__).resolve().parents[2] / "_static"


def find_client_dist(option: str | os.PathLike[str] | None) -> Path | None:
    """Where the socket.io-client ``dist/`` is: the option, else ``$PYSERVER_CLIENT_DIST``,
    else ``./node_modules/socket.io-client/dist``, else the copy the package carries
    (:data:`PACKAGED_DIR`: an installed wheel needs no Node), else
    ``<repo>/web/node_modules/...`` (a checkout before its first build)."""
    if option is not None:
        return Path(option)
    env = os.environ.get("PYSERVER_CLIENT_DIST")
    if env:
        return Path(env)
    for candidate in (
        Path.cwd() / "node_modules" / "socket.io-client" / "dist",
        PACKAGED_DIR / "socket.io-client" / "dist",
        Path(__file__).resolve().parents[3] / "web" / "node_modules" / "socket.io-client" / "dist",
    ):
        if candidate.is_dir():
            return candidate
    return None


def client_version(dist: Path) -> str | None:
    """The socket.io-client version of a ``dist/`` (its package's ``package.json``), or None
    when it cannot be read."""
    try:
        version = json.loads((dist.parent / "package.json").read_text("utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) else None


def client_file_response(dist: Path, name: str, method: str, headers: Headers) -> Response:
    """One of the client bundle files, answered as Node's socket.io does: ETag is the quoted
    client version, ``Cache-Control: public, max-age=0``, JavaScript or JSON (for maps)."""
    file = dist / name
    if not file.is_file():
        return _text(404, "Not Found\n")
    version = client_version(dist)
    etag = None if version is None else f'"{version}"'
    ctype = (
        "application/json; charset=utf-8"
        if name.endswith(".map")
        else "application/javascript; charset=utf-8"
    )
    return _file_response(file, method, headers, "public, max-age=0", ctype, etag)
