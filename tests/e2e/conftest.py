"""Fixtures for the browser tests of the demo apps: the demo server in a thread, headless
Chromium through Playwright, and screenshots.

Every app page takes ``?transport=polling`` to force HTTP long-polling (the official client's
``transports: ["polling"]``); without it the client starts with polling and upgrades to
WebSocket, as in production. Screenshots go to ``artifacts/screenshots/<name>.png`` (ignored
by git) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.browser import chromium_browser
from helpers.server_thread import ServerThread

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
JWT_SECRET = "e2e-test-secret-that-is-long-enough-for-hs256"

__all__ = ["JWT_SECRET", "SCREENSHOTS", "chromium_browser"]  # chromium_browser: a fixture


@pytest.fixture(scope="module")
def demo_server() -> Iterator[ServerThread]:
    """The demo server on a free port, with short heartbeats so a cut connection is noticed
    quickly."""
    from pyserver.demo import build_server

    server = ServerThread(
        lambda: build_server(ping_interval=2.0, ping_timeout=2.0, jwt_secret=JWT_SECRET)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_page(chromium_browser: Any) -> Iterator[Callable[..., Any]]:
    """``new_page(url, **context_options)``: a page in a fresh browser context (its own
    cookies and storage: another user). Page errors fail the test at teardown."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(url: str, **options: Any) -> Any:
        # Playwright's wait_for_function("expression") evaluates a string, which the demo's
        # Content-Security-Policy (no 'unsafe-eval') refuses; the pages themselves are run
        # under their CSP by tests/test_audit_http.py.
        options.setdefault("bypass_csp", True)
        context = chromium_browser.new_context(viewport={"width": 1000, "height": 700}, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: errors.append(f"{url}: {exc}"))
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors in the pages: {errors}"


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot of ``page`` as ``artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
