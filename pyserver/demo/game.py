"""Placeholder: being written."""

from typing import Any

from pyserver.server import Server


def register(sio: Server, **options: Any) -> None:
    pass
