"""Browser tests of the web UI: Playwright drives Debian's Chromium against a live server.

The server is the real app (`create_app`) under uvicorn, in a thread of the test process (its
own event loop), on a free loopback port, on the worker's test database. The tests use
Playwright's async API in the session's event loop, and make their data through the same
server's JSON API (`UiApi`).

Chromium comes from Debian (`/usr/bin/chromium`; `.ci/run` installs it). Without it the tests
skip, unless SERVICEDESK_REQUIRE_SERVICES=1 (CI), where they fail. Never `playwright install`.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from servicedesk.app import create_app
from servicedesk.models import Organization
from tests.conftest import PASSWORD, REQUIRE_SERVICES, Session, test_settings
from tests.ui.helpers import UiApi

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SECRET_KEY = test_settings().resolved_secret_key()
"""The same key as the session's app: tokens issued by either are good on both."""


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and SERVICEDESK_REQUIRE_SERVICES=1")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[str]:
    """`http://127.0.0.1:<port>`: the app under uvicorn, in a thread, on the test database."""
    require_chromium()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    files = tempfile.mkdtemp(prefix="sd-ui-files-")
    settings = test_settings(
        SERVICEDESK_PUBLIC_URL=url,
        SERVICEDESK_FILES_DIR=files,
        # Every browser request comes from 127.0.0.1: the per-IP limits are for real clients.
        SERVICEDESK_RATE_LOGIN_IP="10000/minute",
        SERVICEDESK_RATE_LOGIN_ACCOUNT="1000/minute",
        SERVICEDESK_RATE_REGISTER_IP="10000/hour",
        SERVICEDESK_RATE_REFRESH_IP="10000/minute",
    )
    app = create_app(settings, database_url=database_url)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", ws="auto"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ui-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the live server did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
async def browser(live_server: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(browser: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context(viewport=DESKTOP, locale="en-GB", timezone_id="Europe/Berlin")
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: Any) -> Any:
    """A page that records console errors and uncaught exceptions in `page.errors` (a CSP
    violation, a failing script), except the failed loads of 4xx answers."""
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message: Any) -> None:
        # A 4xx page (a form with errors, a 404) logs a failed load: that is the point of it.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


@pytest.fixture
def ui(live_server: str, org: Organization, admin: Session) -> UiApi:
    """The organization's API on the live server, as its admin."""
    return UiApi(live_server, org.slug, admin.access_token)


@pytest.fixture
def password() -> str:
    return PASSWORD
