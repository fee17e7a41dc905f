"""A real headless Chromium driven through Debian's chromedriver with selenium (nothing is downloaded)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

NO_BROWSER_REASON = "no chromium and chromedriver on PATH: install Debian's `chromium` and `chromium-driver`"
PAGE_LOAD_SECONDS = 30


def find() -> tuple[str, str] | None:
    """(browser, driver) paths, or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(browser: str, driver: str, width: int = 1280, height: int = 1800) -> Iterator[webdriver.Chrome]:
    """A fresh headless browser with its own profile; console messages are kept for get_log("browser")."""
    with tempfile.TemporaryDirectory(prefix="sync-job-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        session.set_page_load_timeout(PAGE_LOAD_SECONDS)
        try:
            yield session
        finally:
            session.quit()
