"""Narrator mode's orchestration with a deterministic tone engine: segments run concurrently but
are joined in document order, resampled to 44.1 kHz, without gaps."""

import io
import wave

import pytest
from fastapi.testclient import TestClient

from speechcore.api import create_app
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.service import SpeechService
from tests.support import InProcessEngineClient, ToneEngine, dominant_frequency

# Narrator text first and slowest: if joining followed completion order, it would come last.
TEXT = '*Narration comes first here.* "Then the character speaks." *And narration ends it.*'


@pytest.fixture
def client(tmp_path):
    engine = ToneEngine(delay_s=lambda text: 0.3 if text.startswith("Narration") else 0.0)
    service = SpeechService(SettingsStore(ServerPaths.at(tmp_path)), {"piper": InProcessEngineClient(engine)},
                            ["piper"], "piper", narrator_concurrency=3)
    with TestClient(create_app(service)) as client:
        yield client


def narrate(client, **form):
    data = {"text_input": TEXT, "narrator_enabled": "true", "narrator_voice_gen": "440hz@16000",
            "character_voice_gen": "880hz@22050", **form}
    return client.post("/api/tts-generate", data=data)


def read_wav(client, url):
    with wave.open(io.BytesIO(client.get(url).content)) as wav:
        return wav.getframerate(), wav.getnchannels(), wav.readframes(wav.getnframes())


def test_segments_are_joined_in_document_order_at_44100_hz(client):
    body = narrate(client).json()
    assert body["output_file_url"].endswith("_combined.wav")
    rate, channels, pcm = read_wav(client, body["output_file_url"])
    assert (rate, channels) == (44100, 1)
    lengths = [len("Narration comes first here."), len("Then the character speaks."), len("And narration ends it.")]
    bounds, start = [], 0
    for n in lengths:
        frames = int(0.05 * n * rate)
        bounds.append((start, start + frames))
        start += frames
    assert len(pcm) // 2 == pytest.approx(start, abs=10), "no gaps, nothing lost"
    freqs = [dominant_frequency(pcm[2 * (a + 200):2 * (b - 200)], rate) for a, b in bounds]
    assert freqs == [pytest.approx(440, abs=5), pytest.approx(880, abs=5), pytest.approx(440, abs=5)]


def test_silent_mode_keeps_only_the_character(client):
    rate, _, pcm = read_wav(client, narrate(client, narrator_enabled="silent").json()["output_file_url"])
    assert len(pcm) // 2 == pytest.approx(int(0.05 * len("Then the character speaks.") * rate), abs=10)
    assert dominant_frequency(pcm, rate) == pytest.approx(880, abs=5)


def test_nothing_to_speak_is_a_clear_error_and_no_file(client, tmp_path):
    response = narrate(client, text_input='*Only narration here.*', narrator_enabled="silent")
    assert response.status_code == 400
    assert response.json()["status"] == "generate-failure"
    assert not list((tmp_path / "outputs").glob("*")) if (tmp_path / "outputs").exists() else True


def test_an_unknown_narrator_voice_is_a_clear_400(client):
    response = narrate(client, narrator_voice_gen="Please set a voice")
    assert response.status_code == 400
    assert "Please set a voice" in response.json()["error"]


def test_timestamp_off_still_gets_a_random_part(client):
    url = narrate(client, output_file_name="scene", output_file_timestamp="false").json()["output_file_url"]
    assert (
        url.startswith("/audio/scene_")
        and url.endswith("_combined.wav")
        and len(url) > len("/audio/scene__combined.wav")
    )
