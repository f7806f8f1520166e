"""Headless Chromium for the console tests: Debian's `chromium` driven by Playwright
(nothing downloads a browser). Missing, the test is skipped, unless
WORKERLEDGER_REQUIRE_SERVICES=1 (CI), where it fails."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from support.services import unavailable

CHROMIUM = os.environ.get("WORKERLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 15_000  # failure bound for an awaited page state, never a measured time


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A Playwright browser on the system's Chromium."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as error:
        unavailable("Playwright (the dev extra)", error)
        raise
    if not Path(CHROMIUM).exists():
        unavailable("Chromium", FileNotFoundError(f"{CHROMIUM} (apt-get install chromium)"))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_console(browser: Any, url: str, token: str, errors: list[str]) -> Any:
    """A new page on the console, the token typed into its form once; the page's
    uncaught script errors are appended to `errors`."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url + "/console")
    await page.fill("#login input[name=token]", token)
    await page.click("#login button")
    await page.wait_for_selector("body[data-rendered]")
    return page
