"""Test helpers for pyserver applications under pytest-trio: ``serve``, ``connect``,
``wait_for_event``, ``drop_connection`` (see :mod:`pyserver.trio.client.testing`).

Loaded on first use, as the public API is, so that this module stays free of I/O imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["connect", "drop_connection", "serve", "wait_for_event"]

if TYPE_CHECKING:
    from pyserver.trio.client.testing import connect, drop_connection, serve, wait_for_event


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'pyserver.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module("pyserver.trio.client.testing"), name)
    globals()[name] = value
    return value
