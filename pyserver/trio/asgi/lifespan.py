"""The ASGI ``lifespan`` scope: pyserver's background work, and the other app's lifespan.

pyserver's own background work (``Server.run``: the Engine.IO timers, the server's
nursery for handler tasks and room nurseries, a cluster adapter's tasks; for a bare
``App``, its Engine.IO mounts' ``serve``) starts on ``lifespan.startup`` in a nursery of the
lifespan task and is cancelled on ``lifespan.shutdown``, which closes every session as the
native server does when it stops ("server shutting down", disconnect handlers run).

The other ASGI app gets its own lifespan through a pair of channels: it starts after
pyserver's work (so its startup may already emit) and stops after it too (so Socket.IO's
disconnect handlers, run while pyserver stops, may still use what the other app's shutdown
closes). An app that
does not speak lifespan (it raises or returns at once, as the ASGI spec allows) is left
out silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import trio

from pyserver.trio.asgi.scope import ASGIReceive, ASGISend, Scope

__all__ = ["Background", "run_lifespan"]

logger = logging.getLogger("pyserver.asgi")

Background = Callable[..., Coroutine[Any, Any, Any]]
"""A ``nursery.start``-able runner (``Server.run``, ``EngineIOServer.serve``)."""
ASGIApp3 = Callable[[Scope, ASGIReceive, ASGISend], Coroutine[Any, Any, None]]


class _OtherLifespan:
    """The other app's lifespan, driven through channels."""

    def __init__(self, app: ASGIApp3, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self.to_app, self._app_in = trio.open_memory_channel[dict[str, Any]](math.inf)
        self._app_out, self.from_app = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.supported = True

    async def run(self) -> None:
        async def receive() -> dict[str, Any]:
            return await self._app_in.receive()

        async def send(message: dict[str, Any]) -> None:
            await self._app_out.send(message)

        try:
            await self.app(self.scope, receive, send)
        except Exception:
            logger.debug("the other ASGI app does not take lifespan", exc_info=True)
        finally:
            self._app_out.close()

    async def ask(self, event: str) -> str | None:
        """Send ``lifespan.<event>``: None when it completed (or lifespan is unsupported),
        else the failure's message."""
        if not self.supported:
            return None
        self.to_app.send_nowait({"type": f"lifespan.{event}"})
        try:
            answer = await self.from_app.receive()
        except trio.EndOfChannel:
            self.supported = False
            return None
        if answer.get("type") == f"lifespan.{event}.failed":
            return str(answer.get("message", "")) or f"the other app's {event} failed"
        return None


async def run_lifespan(
    scope: Scope,
    receive: ASGIReceive,
    send: ASGISend,
    background: Sequence[Background],
    other: ASGIApp3 | None,
    started: Callable[[bool], None],
) -> None:
    """Serve one ``lifespan`` scope (module docstring); ``started(True)`` once everything
    is up, ``started(False)`` when it stops."""
    event = await receive()
    if event["type"] != "lifespan.startup":
        return
    async with trio.open_nursery() as outer:
        peer = None
        if other is not None:
            peer = _OtherLifespan(other, {**scope})
            outer.start_soon(peer.run)
        failure: str | None = None
        async with trio.open_nursery() as ours:
            try:
                for runner in background:
                    await ours.start(runner)
            except Exception as exc:
                logger.exception("pyserver's background work failed to start")
                failure = f"pyserver failed to start: {exc!r}"
            if failure is None and peer is not None:
                failure = await peer.ask("startup")
            if failure is not None:
                ours.cancel_scope.cancel()
                outer.cancel_scope.cancel()
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
            started(True)
            await send({"type": "lifespan.startup.complete"})
            event = await receive()  # lifespan.shutdown (nothing else may come)
            started(False)
            ours.cancel_scope.cancel()  # Server.run closes every session, then returns
        failure = await peer.ask("shutdown") if peer is not None else None
        if peer is not None:
            peer.to_app.close()
    if failure is not None:
        await send({"type": "lifespan.shutdown.failed", "message": failure})
    else:
        await send({"type": "lifespan.shutdown.complete"})
