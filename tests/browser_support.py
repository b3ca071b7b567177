"""Headless Chromium for the web UI's tests: Debian's `chromium` (/usr/bin/chromium) driven by Playwright, never a
browser Playwright downloads; and screenshots of pages at the widths the README promises.

Without the browser a test skips on a laptop and fails under CI=true, like the other services.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rollway_testing import TOKEN, unavailable

CHROMIUM = os.environ.get("ROLLWAY_TEST_CHROMIUM", "/usr/bin/chromium")
# The README names this folder: every page at both widths, refreshed by the browser tests.
SCREENSHOTS = Path(
    os.environ.get("ROLLWAY_SCREENSHOTS", Path(__file__).resolve().parent.parent / "docs" / "screenshots")
)
WIDTHS = {"desktop": 1280, "phone": 390}


@contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright Browser on Debian's Chromium, headless."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        unavailable("Debian's chromium (apt install chromium)", FileNotFoundError(CHROMIUM))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        unavailable("Playwright (pip install playwright)", error)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


def logged_in(
    browser: Any, url: str, token: str = TOKEN, width: int = WIDTHS["desktop"], next_page: str | None = None
) -> Any:
    """A new page of a fresh context that has logged in at `url` with `token` through the login form, landing on
    `next_page` (by default where the login sends everyone: the Executions list, which follows a live stream)."""
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/login" if next_page is None else f"/login?next={quote(next_page)}")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def screenshot(page: Any, name: str) -> list[Path]:
    """Save the page, whole, at each width of WIDTHS as SCREENSHOTS/<name>-<width>.png; the page keeps its size."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    saved = []
    for width in WIDTHS.values():
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        path = SCREENSHOTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
    page.set_viewport_size(size)
    return saved
