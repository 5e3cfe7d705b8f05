"""Engine.IO's hooks on its HTTP answers and sessions, as the reference server has them.

* ``cookie``: a ``Set-Cookie`` with the session id on the handshake answer, for load balancers
  that keep a client on one node by cookie (AWS ALB, HAProxy, Traefik). ``True`` is the
  reference server's default, ``io=<sid>; Path=/; HttpOnly; SameSite=Lax``; a :class:`Cookie`
  (or a dict of its fields, or a name) changes it. ``path=None`` leaves ``Path`` out and, as
  in Node, then ``HttpOnly`` too unless asked.
* ``initial_headers(headers, request)``: called with the headers of the handshake answer (a
  list of ``(name, value)`` pairs, the cookie already in it) to add to or change;
  ``headers(headers, request)`` the same for every HTTP answer of a session (the handshake
  included, after ``initial_headers``): Node's ``initial_headers`` and ``headers`` events.
* ``generate_id(request) -> str``: the session ids (Node's ``generateId``); a duplicate of a
  live session's id is replaced by a random one, with a warning.
* ``allow_request(request)`` may be ``async`` (a database look-up): it is awaited before the
  handshake is answered, over long-polling and for a WebSocket that opens a session alike
  (before the upgrade: refused, the reference server's 403 JSON answer and no ``101``).

A WebSocket's ``101`` answer carries the hooks' headers as the reference server's does
(``initial_headers`` when the WebSocket opens a session, then ``headers``; both start from an
empty list), but not the cookie: Node sets it on the polling handshake only (the session id
is not made before the upgrade, and a client that starts over WebSocket has no later request
to route).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyserver.http import Request

__all__ = ["AllowRequest", "Cookie", "HeadersHook", "make_cookie", "new_sid", "request_allowed"]

logger = logging.getLogger("pyserver.engineio")

HeadersHook = Callable[[list[tuple[str, str]], Request], None]
"""``hook(headers, request)``: change ``headers`` (the answer's, a list) in place."""
AllowRequest = Callable[[Request], "bool | Awaitable[bool]"]
"""``allow_request(request) -> bool`` (sync or async): False refuses the handshake."""

_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


@dataclass(frozen=True, slots=True)
class Cookie:
    """The session cookie (see the module docstring); fields as Node's ``cookie`` option."""

    name: str = "io"
    path: str | None = "/"
    http_only: bool | None = None
    same_site: str | bool | None = "lax"
    domain: str | None = None
    secure: bool = False
    max_age: int | None = None

    def header(self, sid: str) -> tuple[str, str]:
        parts = [f"{self.name}={sid}"]
        if self.max_age is not None:
            parts.append(f"Max-Age={int(self.max_age)}")
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.path is not None:
            parts.append(f"Path={self.path}")
        http_only = self.http_only if self.http_only is not None else self.path is not None
        if http_only:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        same_site = self.same_site
        if same_site is True:
            parts.append("SameSite=Strict")
        elif isinstance(same_site, str):
            value = _SAME_SITE.get(same_site.lower())
            if value is None:
                raise ValueError(f"same_site must be lax, strict or none, not {same_site!r}")
            parts.append(f"SameSite={value}")
        return "Set-Cookie", "; ".join(parts)


def make_cookie(spec: Cookie | Mapping[str, Any] | str | bool | None) -> Cookie | None:
    """The ``cookie`` option as a :class:`Cookie` (None: no cookie)."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return Cookie()
    if isinstance(spec, str):
        return Cookie(name=spec)
    if isinstance(spec, Cookie):
        cookie = spec
    else:
        cookie = Cookie(**dict(spec))
    cookie.header("x")  # a bad same_site fails now, not at the first handshake
    return cookie


def new_sid(
    generate_id: Callable[[Request], str], request: Request, taken: Mapping[Any, Any]
) -> str | None:
    """The id ``generate_id`` gives ``request``; None (use a random one) when it is taken."""
    sid = generate_id(request)
    if not isinstance(sid, str) or not sid:
        raise TypeError(f"generate_id must return a non-empty str, not {sid!r}")
    if sid in taken:
        logger.warning("generate_id gave %r, the id of a live session: a random one is used", sid)
        return None
    return sid


async def request_allowed(allow_request: AllowRequest, request: Request) -> bool:
    """``allow_request(request)``, awaited when it is async."""
    allowed = allow_request(request)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    return bool(allowed)


def is_async(fn: Callable[..., Any] | None) -> bool:
    """``fn`` is an ``async def`` (its result must be awaited)."""
    return fn is not None and inspect.iscoroutinefunction(fn)


def extra_headers(
    server: Any, request: Request, sid: str | None, headers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``headers`` with the cookie (``sid`` given: a handshake) and the hooks' changes."""
    cookie: Cookie | None = server.cookie
    initial: HeadersHook | None = server.initial_headers
    every: HeadersHook | None = server.headers
    if sid is not None:
        if cookie is not None:
            headers.append(cookie.header(sid))
        if initial is not None:
            initial(headers, request)
    if every is not None:
        every(headers, request)
    return headers
