"""Cluster adapters: :class:`RedisAdapter` (several server processes as one, over Redis).

The in-memory adapter, the interface and :class:`~pyserver.sio.adapter.RemoteSocket` are in
:mod:`pyserver.sio.adapter`. ``RedisAdapter`` is loaded on first use (it imports coredis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RedisAdapter"]

if TYPE_CHECKING:
    from pyserver.adapters.redis import RedisAdapter


def __getattr__(name: str) -> Any:
    if name == "RedisAdapter":
        from pyserver.adapters.redis import RedisAdapter

        return RedisAdapter
    raise AttributeError(f"module 'pyserver.adapters' has no attribute {name!r}")
