"""Headless Debian Chromium for the browser tests, driven by Selenium through Debian's chromedriver.

Giving the driver's path skips Selenium Manager, so nothing is downloaded at run time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from tests.deploy.stack import require_tool

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


@pytest.fixture
def browser() -> Iterator[object]:
    require_tool(CHROMIUM, "browser test")
    require_tool(CHROMEDRIVER, "browser test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.TemporaryDirectory(prefix="guard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile.name}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()
