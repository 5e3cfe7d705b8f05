"""The demo's index page links the three apps, and the official client bundle is served."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.server_thread import ServerThread

from .conftest import screenshot

pytestmark = pytest.mark.interop


def test_index_links_the_three_apps(demo_server: ServerThread, new_page: Any) -> None:
    page = new_page(demo_server.base_url + "/")
    for href in ("/drawing/", "/game/", "/chat/"):
        assert page.locator(f'a[href="{href}"]').count() >= 1, href
    screenshot(page, "index")
    bundle = page.request.get(demo_server.base_url + "/socket.io/socket.io.min.js")
    assert bundle.ok
    assert b"io" in bundle.body()
