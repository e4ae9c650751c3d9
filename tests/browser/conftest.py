"""A real headless Chromium (Debian's chromium and chromedriver, driven by Selenium) for the browser
tests; screenshots go to test-artifacts/ (or $ALLTALK_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.conftest import PROJECT_DIR

ARTIFACTS = Path(os.environ.get("ALLTALK_TEST_ARTIFACTS", PROJECT_DIR / "test-artifacts"))


def _chromium_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing: scripts/run-tests installs them", pytrace=False)
        pytest.skip("chromium and chromedriver are not installed (scripts/run-tests installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1000,900",
                 # a microphone without a person: Chromium's own test device, allowed without asking
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        psutil.wait_procs(_chromium_children(), timeout=10)
        assert not _chromium_children(), "a Chromium process was left behind"
