"""The web page in a real headless Chromium (Debian's chromium and chromedriver, driven by
Selenium) against the real Serve server: it loads, lists the voices, generates speech the
standard way and streamed, and plays it. A screenshot of the page after generating is saved to
test-artifacts/ (or $ALLTALK_TEST_ARTIFACTS)."""

from __future__ import annotations

import time
import wave

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import ARTIFACTS
from tests.conftest import BUNDLED_VOICE
from tests.support import decode_audio

pytestmark = pytest.mark.serve

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs far away into the green forest."


@pytest.fixture
def page(browser, serve_server):
    """The page, loaded afresh for each test."""
    browser.get(f"{serve_server.client.base_url}/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "ready").text == "Ready")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "voice")).options) > 0)
    return browser


def _player(driver) -> dict:
    return driver.execute_script(
        "const p = document.getElementById('player');"
        "return {src: p.src, readyState: p.readyState, duration: p.duration, currentTime: p.currentTime,"
        "        paused: p.paused, error: p.error && p.error.code};")


def _generate(driver, mode: str) -> None:
    text = driver.find_element(By.ID, "text")
    text.clear()
    text.send_keys(TEXT)
    driver.find_element(By.ID, f"mode-{mode}").click()
    driver.find_element(By.ID, "generate").click()


def test_the_page_shows_the_engines_voices_and_settings(page, serve_server):
    voices = [o.get_attribute("value") for o in Select(page.find_element(By.ID, "voice")).options]
    assert BUNDLED_VOICE in voices
    assert voices == serve_server.client.get("/api/voices").json()["voices"]
    engine = Select(page.find_element(By.ID, "engine")).first_selected_option.get_attribute("value")
    assert engine == "piper"
    page.find_element(By.CSS_SELECTOR, "#settings-box summary").click()
    settings = page.find_element(By.ID, "settings").text
    assert "current_engine_loaded piper" in settings and "streaming_capable true" in settings


def test_generate_from_the_page_and_play(page, serve_server):
    before = set(serve_server.outputs.glob("page_output*.wav"))
    _generate(page, "standard")
    wait = WebDriverWait(page, 120)
    wait.until(lambda d: d.find_element(By.ID, "result").text.startswith(("Generated in", "HTTP", "The")))
    assert page.find_element(By.ID, "result").text.startswith("Generated in"), page.find_element(By.ID, "result").text
    wait.until(lambda d: _player(d)["readyState"] >= 1)
    state = _player(page)
    assert state["error"] is None
    assert 3.0 < state["duration"] < 15.0, state  # two sentences of speech
    page.execute_script("document.getElementById('player').currentTime = 0; document.getElementById('player').play();")
    wait.until(lambda d: _player(d)["currentTime"] > 0.2)  # it plays
    new = set(serve_server.outputs.glob("page_output*.wav")) - before
    assert len(new) == 1  # the file the page played is the one the server wrote
    with wave.open(str(new.pop())) as wav:
        assert wav.getframerate() == 22050 and abs(wav.getnframes() / 22050 - state["duration"]) < 0.1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "web-page.png"
    page.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_stream_from_the_page_and_play(page, serve_server):
    _generate(page, "streaming")
    wait = WebDriverWait(page, 120)
    wait.until(lambda d: "first audio after" in d.find_element(By.ID, "result").text
               or d.find_element(By.ID, "result").get_attribute("class") == "error")
    assert "first audio after" in page.find_element(By.ID, "result").text
    state = _player(page)
    assert "/api/tts-generate-streaming?" in state["src"] and state["error"] is None
    wait.until(lambda d: _player(d)["currentTime"] > 0.5)
    # What the page streamed decodes as speech of the right rate and a plausible length.
    audio = serve_server.client.get(state["src"].replace(str(serve_server.client.base_url), ""))
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    decoded = decode_audio(audio.content)  # a stream's WAV header has no length: decode it all
    assert decoded.sample_rate == 22050 and 3.0 < decoded.duration_s < 15.0
    page.save_screenshot(str(ARTIFACTS / "web-page-streaming.png"))


def test_an_error_from_the_api_is_shown_on_the_page(page):
    page.find_element(By.ID, "text").clear()
    page.find_element(By.ID, "mode-standard").click()
    page.find_element(By.ID, "generate").click()
    assert page.find_element(By.ID, "result").text == "Type some text first."
    page.execute_script("const s = document.getElementById('voice'); "
                        "s.add(new Option('no-such-voice', 'no-such-voice')); s.value = 'no-such-voice';")
    page.find_element(By.ID, "text").send_keys("Hello there.")
    page.find_element(By.ID, "generate").click()
    WebDriverWait(page, 60).until(lambda d: d.find_element(By.ID, "result").get_attribute("class") == "error")
    assert "no-such-voice" in page.find_element(By.ID, "result").text


def test_a_long_text_runs_as_a_job_from_the_page_with_progress_then_plays(page, serve_server, tmp_path):
    text = " ".join(f"Sentence number {i} of the long text on the page." for i in range(1, 13))
    page.find_element(By.ID, "mode-job").click()
    assert page.find_element(By.ID, "job-progress").is_displayed()
    page.execute_script("window.seen = []; const p = document.getElementById('job-progress');"
                        "window.watching = setInterval(() => window.seen.push([p.value, p.max]), 50);")
    area = page.find_element(By.ID, "text")
    area.clear()
    area.send_keys(text)
    page.find_element(By.ID, "generate").click()
    wait = WebDriverWait(page, 180)
    wait.until(lambda d: d.find_element(By.ID, "result").text.startswith("Job done")
               or d.find_element(By.ID, "result").get_attribute("class") == "error")
    assert page.find_element(By.ID, "result").text.startswith("Job done: 12 sentences"), \
        page.find_element(By.ID, "result").text
    seen = page.execute_script("clearInterval(window.watching); return window.seen;")
    assert any(0 < value < maximum for value, maximum in seen), "the progress bar followed the job"
    assert seen[-1] == [12, 12]

    wait.until(lambda d: _player(d)["readyState"] >= 1)
    state = _player(page)
    assert "/api/jobs/" in state["src"] and state["src"].endswith("/audio") and state["error"] is None
    assert 15.0 < state["duration"] < 60.0, state  # twelve sentences of speech
    page.execute_script("document.getElementById('player').currentTime = 0; document.getElementById('player').play();")
    wait.until(lambda d: _player(d)["currentTime"] > 0.2)
    links = {a.text: a.get_attribute("href") for a in page.find_elements(By.CSS_SELECTOR, "#download a")}
    assert set(links) == {"Download the audio", "Captions (SRT)", "Captions (WebVTT)"}
    captions = serve_server.client.get(links["Captions (WebVTT)"].replace(str(serve_server.client.base_url), ""))
    assert captions.status_code == 200 and captions.text.count(" --> ") == 12
    page.save_screenshot(str(ARTIFACTS / "web-page-job.png"))

    story = tmp_path / "story.txt"
    story.write_text("A file of two sentences. It was uploaded from the page.", encoding="utf-8")
    page.find_element(By.ID, "job-file").send_keys(str(story))
    page.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_element(By.ID, "result").text.startswith("Job done: 2 ")
               or d.find_element(By.ID, "result").get_attribute("class") == "error")
    assert page.find_element(By.ID, "result").text.startswith("Job done: 2 sentences")


def test_a_clip_uploaded_from_the_page_becomes_an_xtts_voice_that_speaks(page, serve_server, tmp_path):
    pytest.importorskip("TTS", reason="the coqui extra is not installed (XTTS clones the voice)")
    client = serve_server.client
    # A user's recording: real speech, here spoken by the bundled voice.
    spoken = client.post("/api/tts-generate", data={
        "text_input": "My own voice, recorded at home and uploaded from the web page of the server.",
        "character_voice_gen": BUNDLED_VOICE, "narrator_enabled": "false"}).json()
    clip = tmp_path / "my recording.wav"
    clip.write_bytes(client.get(spoken["output_file_url"]).content)
    short = tmp_path / "short.wav"
    with wave.open(str(clip)) as full, wave.open(str(short), "wb") as out:
        out.setparams(full.getparams())
        out.writeframes(full.readframes(full.getframerate()))  # one second: too short to clone

    wait = WebDriverWait(page, 120)
    Select(page.find_element(By.ID, "engine")).select_by_value("xtts")
    wait.until(lambda d: "female_01.wav" in [o.get_attribute("value")
                                             for o in Select(d.find_element(By.ID, "voice")).options])
    try:
        page.find_element(By.CSS_SELECTOR, "#clone-box summary").click()
        name = page.find_element(By.ID, "clone-name")
        name.clear()
        name.send_keys("from_page")
        result = page.find_element(By.ID, "clone-result")
        page.find_element(By.ID, "clone-file").send_keys(str(short))
        page.find_element(By.ID, "clone-upload").click()
        wait.until(lambda d: result.get_attribute("class") == "error")
        assert "after trimming silence" in result.text and "(HTTP 400)" in result.text

        page.find_element(By.ID, "clone-file").send_keys(str(clip))
        page.find_element(By.ID, "clone-upload").click()
        wait.until(lambda d: result.text.startswith("Stored as") or result.get_attribute("class") == "error")
        assert result.text == "Stored as from_page.wav: selected, ready to speak.", result.text
        assert Select(page.find_element(By.ID, "voice")).first_selected_option.get_attribute("value") == \
            "from_page.wav"

        before = set(serve_server.outputs.glob("page_output*.wav"))
        _generate(page, "standard")
        wait.until(lambda d: d.find_element(By.ID, "result").text.startswith("Generated in")
                   or d.find_element(By.ID, "result").get_attribute("class") == "error")
        assert page.find_element(By.ID, "result").text.startswith("Generated in")
        wait.until(lambda d: _player(d)["readyState"] >= 1)
        assert _player(page)["error"] is None and _player(page)["duration"] > 0.2
        new = set(serve_server.outputs.glob("page_output*.wav")) - before
        with wave.open(str(new.pop())) as wav:
            assert wav.getframerate() == 24000  # XTTS spoke it, with the uploaded voice
        page.save_screenshot(str(ARTIFACTS / "web-page-clone.png"))
    finally:
        client.delete("/api/voices/xtts/from_page")
        assert client.post("/api/enginereload", params={"engine": "piper"}).json() == {"status": "engine-success"}


def test_a_clip_recorded_on_the_page_is_uploaded_as_a_voice(page, serve_server):
    # Chromium's test microphone (a beep each second) stands in for a person speaking.
    page.find_element(By.CSS_SELECTOR, "#clone-box summary").click()
    record = page.find_element(By.ID, "clone-record")
    assert record.is_displayed()  # the page is served on 127.0.0.1: browsers give it a microphone
    name = page.find_element(By.ID, "clone-name")
    name.clear()
    name.send_keys("recorded")
    result = page.find_element(By.ID, "clone-result")
    record.click()
    WebDriverWait(page, 10).until(lambda d: result.text.startswith(("Recording", "No microphone")))
    assert result.text.startswith("Recording"), result.text
    time.sleep(6)
    record.click()
    WebDriverWait(page, 10).until(lambda d: result.text.startswith("Recorded"))
    page.find_element(By.ID, "clone-upload").click()
    try:
        WebDriverWait(page, 60).until(lambda d: result.text.startswith("Stored as")
                                      or result.get_attribute("class") == "error")
        assert result.text.startswith("Stored as recorded.wav"), result.text
        with wave.open(str(serve_server.root / "voices" / "recorded.wav")) as wav:
            assert wav.getframerate() == 22050 and wav.getnchannels() == 1
            assert 3.0 <= wav.getnframes() / 22050 <= 6.5
    finally:
        serve_server.client.delete("/api/voices/xtts/recorded")
