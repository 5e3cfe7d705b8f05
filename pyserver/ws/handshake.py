"""The server side of the WebSocket opening handshake (RFC 6455 section 4.2), sans-IO.

Rules, checked in this order; the first broken rule decides the refusal:

1. The method is GET (else 405 with ``Allow: GET``) and HTTP/1.1 or later (else 400).
2. ``Upgrade`` contains the token ``websocket`` (else 426 with ``Upgrade: websocket``: a
   WebSocket route was hit without asking for the upgrade).
3. ``Connection`` contains the token ``upgrade`` (case-insensitive, comma lists) (else 400).
4. ``Host`` is present exactly once (else 400).
5. ``Sec-WebSocket-Version`` is ``13`` (else 426 with ``Sec-WebSocket-Version: 13``).
6. ``Sec-WebSocket-Key`` is present once and is the base64 of 16 bytes (else 400).
7. ``Origin`` is allowed (else 403): by default only same-origin (no ``Origin``, or its
   host:port equals ``Host``); an explicit list of origins; ``"*"`` allows all.
8. ``Sec-WebSocket-Extensions`` is well formed (else 400); permessage-deflate is agreed
   through ``_frames.negotiate_deflate`` only when compression is on, always with
   ``server_no_context_takeover`` so one compressed frame can go to every peer.

Subprotocol: the first of the server's list (in the server's order of preference) that the
client offered; none when nothing matches (the client then decides whether to go on).

No I/O, no clock: headers in, :class:`HandshakeAccepted` or :class:`HandshakeRefused` out.

:class:`HostAllowList` is the ``allowed_hosts`` rule (DNS-rebinding protection, as Django's
``ALLOWED_HOSTS``); the HTTP server applies it to every request, upgrades included, before
any of the rules above.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pyserver import _frames
from pyserver.http import Headers

__all__ = [
    "WS_GUID",
    "HandshakeAccepted",
    "HandshakeRefused",
    "HostAllowList",
    "accept_key",
    "header_tokens",
    "is_websocket_upgrade",
    "origin_allowed",
    "select_subprotocol",
    "validate_handshake",
]

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


@dataclass(frozen=True, slots=True)
class HandshakeAccepted:
    """Accept: answer 101 with ``headers``; run the connection with ``subprotocol`` and
    ``deflate`` (None when permessage-deflate is off)."""

    headers: list[tuple[str, str]]
    subprotocol: str | None = None
    deflate: _frames.Deflate | None = None


@dataclass(frozen=True, slots=True)
class HandshakeRefused:
    """Refuse: answer ``status`` with ``headers`` and ``reason`` as a plain-text body."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def header_tokens(headers: Headers, name: str) -> list[str]:
    """The comma-separated tokens of every ``name`` header, stripped and lower-cased."""
    return [
        token.strip().lower()
        for value in headers.get_all(name)
        for token in value.split(",")
        if token.strip()
    ]


def is_websocket_upgrade(headers: Headers) -> bool:
    """Whether the request asks for a WebSocket (``Upgrade`` contains ``websocket``)."""
    return "websocket" in header_tokens(headers, "upgrade")


def _host_port(host: str, default_port: int | None) -> tuple[str, int | None] | None:
    """Split ``host[:port]`` (IPv6 in brackets) into (lower-case host, port or default)."""
    try:
        parts = urlsplit("//" + host.strip())
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not hostname:
        return None
    return hostname.lower(), port if port is not None else default_port


def request_host(host: str) -> str:
    """The host name of a ``Host`` header value: the port stripped, lower case, no brackets
    around an IPv6 address, no trailing dot ("" when it is not a plausible host)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (end + 1 < len(host) and not host[end + 1 :].startswith(":")):
            return ""
        return host[1:end]
    name, colon, port = host.rpartition(":")
    if colon:
        if ":" in name or not port.isdigit():
            return ""  # an unbracketed IPv6 address, or a port that is not a number
        host = name
    return host.rstrip(".")


class HostAllowList:
    """Which ``Host`` header values a site answers (DNS-rebinding protection).

    A page on ``evil.example`` whose name the attacker re-points at 127.0.0.1 is same-origin
    with itself, so the browser lets it read this server's answers and open WebSockets whose
    Origin "matches" the Host it sends; only the Host (``evil.example``) tells it apart.
    Entries, compared without case and without the request's port: an exact name
    (``localhost``, ``127.0.0.1``, ``[::1]`` or ``::1``); ``*.example.com`` (any subdomain of
    ``example.com``, not the domain itself); ``.example.com`` (the domain and its subdomains,
    Django's form); ``*`` (anything). Matching is a set lookup plus one test per wildcard."""

    __slots__ = ("_any", "_exact", "_suffixes")

    def __init__(self, entries: Sequence[str]) -> None:
        if isinstance(entries, str):
            raise TypeError("allowed_hosts is a list of host names, not one string")
        exact: set[str] = set()
        suffixes: list[str] = []
        self._any = False
        for entry in entries:
            entry = entry.strip().lower()
            if entry == "*":
                self._any = True
            elif entry.startswith("*."):
                suffixes.append(entry[1:].rstrip("."))
            elif entry.startswith("."):
                suffixes.append(entry.rstrip("."))
                exact.add(entry[1:].rstrip("."))
            elif entry:
                name = entry.strip("[]") if entry.count(":") > 1 else request_host(entry)
                if not name:
                    raise ValueError(f"allowed_hosts: {entry!r} is not a host name")
                exact.add(name)
        self._exact = frozenset(exact)
        self._suffixes = tuple(suffixes)

    def __call__(self, host: str | None) -> bool:
        """Whether a request with this ``Host`` header value (None: absent) is answered."""
        if self._any:
            return True
        if not host:
            return False
        name = request_host(host)
        if not name:
            return False
        return name in self._exact or (bool(self._suffixes) and name.endswith(self._suffixes))

    def __repr__(self) -> str:
        names = ["*"] if self._any else [*sorted(self._exact), *("*" + s for s in self._suffixes)]
        return f"HostAllowList({names!r})"


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str] | None) -> bool:
    """The Origin rule: ``allowed`` None means same-origin only; ``"*"`` in it allows all;
    otherwise the Origin must equal one of the entries (scheme://host[:port], no case)."""
    if allowed is not None and "*" in allowed:
        return True
    if origin is None:
        return True  # not a browser: the Origin rule protects browsers' users only
    origin = origin.strip()
    if allowed is not None:
        wanted = origin.rstrip("/").lower()
        return any(wanted == entry.rstrip("/").lower() for entry in allowed)
    if host is None or origin == "null":
        return False
    try:
        parts = urlsplit(origin)
        origin_host = parts.hostname
        origin_port = parts.port
    except ValueError:
        return False
    if not origin_host:
        return False
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    origin_key = (origin_host.lower(), origin_port if origin_port is not None else default)
    host_key = _host_port(host, default)
    return host_key is not None and origin_key == host_key


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first of ``supported`` (server preference) that the client ``offered``."""
    for proto in supported:
        if proto in offered:
            return proto
    return None


def _refuse(status: int, reason: str, *headers: tuple[str, str]) -> HandshakeRefused:
    return HandshakeRefused(status, reason, list(headers))


def validate_handshake(
    method: str,
    http_version: str,
    headers: Headers,
    *,
    subprotocols: Sequence[str] = (),
    allowed_origins: Sequence[str] | None = None,
    origin_ok: Callable[[str], bool] | None = None,
    compression: bool = False,
) -> HandshakeAccepted | HandshakeRefused:
    """Check an upgrade request against RFC 6455 4.2.1 and the server's policy.
    ``origin_ok`` accepts an Origin that ``allowed_origins`` refuses (the endpoint's own
    allow-list: Engine.IO's CORS origins)."""
    if method != "GET":
        return _refuse(405, "WebSocket handshake must use GET", ("Allow", "GET"))
    try:
        major, minor = (int(x) for x in http_version.split("."))
    except ValueError:
        return _refuse(400, "bad HTTP version")
    if (major, minor) < (1, 1):
        return _refuse(400, "WebSocket handshake needs HTTP/1.1")
    if not is_websocket_upgrade(headers):
        return _refuse(
            426,
            "this resource speaks WebSocket only",
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
        )
    if "upgrade" not in header_tokens(headers, "connection"):
        return _refuse(400, "Connection header must contain 'upgrade'")
    hosts = headers.get_all("host")
    if len(hosts) != 1:
        return _refuse(400, "exactly one Host header required")
    versions = header_tokens(headers, "sec-websocket-version")
    if versions != ["13"]:
        return _refuse(426, "unsupported WebSocket version", ("Sec-WebSocket-Version", "13"))
    keys = headers.get_all("sec-websocket-key")
    if len(keys) != 1:
        return _refuse(400, "exactly one Sec-WebSocket-Key header required")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return _refuse(400, "Sec-WebSocket-Key is not base64")
    if len(raw) != 16:
        return _refuse(400, "Sec-WebSocket-Key must encode 16 bytes")
    origins = headers.get_all("origin")
    if len(origins) > 1:
        return _refuse(403, "more than one Origin header")
    origin = origins[0] if origins else None
    if not origin_allowed(origin, hosts[0], allowed_origins) and not (
        origin is not None and origin_ok is not None and origin_ok(origin.strip())
    ):
        return _refuse(403, "cross-origin WebSocket refused")

    deflate: _frames.Deflate | None = None
    offers = headers.get_all("sec-websocket-extensions")
    if compression and offers:
        try:
            deflate = _frames.negotiate_deflate(", ".join(offers), server_no_context_takeover=True)
        except ValueError:
            return _refuse(400, "malformed Sec-WebSocket-Extensions")
    subprotocol = select_subprotocol(
        header_tokens_raw(headers, "sec-websocket-protocol"), subprotocols
    )

    answer = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol is not None:
        answer.append(("Sec-WebSocket-Protocol", subprotocol))
    if deflate is not None:
        answer.append(("Sec-WebSocket-Extensions", deflate.response_header()))
    return HandshakeAccepted(answer, subprotocol, deflate)


def header_tokens_raw(headers: Headers, name: str) -> list[str]:
    """Like :func:`header_tokens` but keeping case (subprotocol names are case-sensitive)."""
    return [
        token.strip()
        for value in headers.get_all(name)
        for token in value.split(",")
        if token.strip()
    ]
