"""SillyTavern's AllTalk provider runs in the browser page of SillyTavern, at its own origin
(http://127.0.0.1:8000 by default), and calls this server directly. A page served from another
origin (another port on 127.0.0.1) makes exactly the provider's calls, with its headers and bodies
(a `Cache-Control` header that makes the browser send a preflight for tts-generate), fetches the
generated file, and plays it and the stream in an <audio> element, in headless Chromium against the
real Serve server with its default settings. A call the browser blocks (CORS) fails the test."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import ARTIFACTS
from tests.conftest import BUNDLED_VOICE

pytestmark = [pytest.mark.serve, pytest.mark.both_fronts]

CALLS = ["ready", "currentsettings", "voices", "rvcvoices", "previewvoice", "tts-generate", "audio-file", "stream",
         "reload", "deepspeed", "lowvramsetting"]


@pytest.fixture(scope="module")
def other_origin() -> Iterator[str]:
    """The provider's page, served by a plain HTTP server on another port: another origin."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(Path(__file__).parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_sillytavern_provider_works_from_its_own_origin(browser, serve_server, other_origin):
    engines_file = serve_server.root / "system" / "tts_engines" / "tts_engines.json"
    saved = engines_file.read_bytes() if engines_file.exists() else None
    try:
        browser.get(f"{other_origin}/sillytavern_provider.html?server={serve_server.client.base_url}"
                    f"&voice={BUNDLED_VOICE}")
        WebDriverWait(browser, 180).until(lambda d: d.execute_script("return window.done"))
        results = browser.execute_script("return window.results")
    finally:
        if saved is None:
            engines_file.unlink(missing_ok=True)
        else:
            engines_file.write_bytes(saved)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "sillytavern-provider.png"))
    assert [r["name"] for r in results] == CALLS
    blocked = [r for r in results if not r["ok"]]
    assert not blocked, blocked
    by_name = {r["name"]: r["detail"] for r in results}
    assert by_name["ready"] == "Ready"
    assert by_name["audio-file"].startswith(("audio/wav", "audio/x-wav")) and "played" in by_name["audio-file"], by_name
    assert by_name["stream"].startswith("played") and by_name["previewvoice"].startswith("played")
    assert '"status": "model-success"' in by_name["reload"] or '"status":"model-success"' in by_name["reload"]
