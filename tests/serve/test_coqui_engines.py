"""VITS and XTTS over real HTTP on real Ray Serve, each engine in its own Serve application
beside Piper (CPU: the launcher turns their GPU shares into num_gpus: 0)."""

import importlib.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest

from tests.serve.test_observability import _samples, _value, _wait_for
from tests.support import decode_audio

pytestmark = [pytest.mark.serve,
              pytest.mark.skipif(importlib.util.find_spec("TTS") is None, reason="the coqui extra is not installed")]

ENGINES = {  # engine: (model, voices, sample rate)
    "vits": ("vits - tiny-single", ["default"], 22050),
    "xtts": ("xtts - tiny-xtts", ["female_01.wav", "male_01.wav", "voiceset:narrators", "latent:saved.json"], 24000),
}


@pytest.fixture(params=list(ENGINES))
def current(request, serve_server):
    """Makes the engine current for the test and Piper current again afterwards."""
    client = serve_server.client
    assert client.post("/api/enginereload", params={"engine": request.param}).json() == {"status": "engine-success"}
    yield request.param
    assert client.post("/api/enginereload", params={"engine": "piper"}).json() == {"status": "engine-success"}


def test_current_settings_describe_the_engine(serve_server, current):
    model, _, _ = ENGINES[current]
    body = serve_server.client.get("/api/currentsettings").json()
    assert body["current_engine_loaded"] == current
    assert body["engines_available"] == ["piper", "vits", "xtts"]
    assert model in [m["name"] for m in body["models_available"]]
    assert body["manufacturer_name"] == "Coqui"
    assert body["streaming_capable"] is True and body["lowvram_capable"] is True
    assert body["lowvram_enabled"] is False, "no CUDA here"
    assert body["deepspeed_capable"] is (current == "xtts") and body["deepspeed_available"] is False
    assert body["temperature_capable"] is (current == "xtts") and body["languages_capable"] is (current == "xtts")


def test_reload_selects_a_model_of_the_current_engine(serve_server, current):
    model, voices, _ = ENGINES[current]
    client = serve_server.client
    assert client.post("/api/reload", params={"tts_method": model}).json() == {"status": "model-success"}
    assert client.get("/api/currentsettings").json()["current_model_loaded"] == model
    assert client.get("/api/voices").json() == {"status": "success", "voices": voices}


def test_generate_stream_and_openai_work_for_the_current_engine(serve_server, current):
    _, voices, rate = ENGINES[current]
    client = serve_server.client
    client.post("/api/reload", params={"tts_method": ENGINES[current][0]})
    body = client.post("/api/tts-generate", data={"text_input": "Hello there. How are you?",
                                                   "character_voice_gen": voices[0]}).json()
    assert body["status"] == "generate-success", body
    audio = decode_audio(client.get(body["output_file_url"]).content)
    assert (audio.sample_rate, audio.channels) == (rate, 1) and audio.duration_s > 0.2

    stream = client.get("/api/tts-generate-streaming", params={"text": "One. Two. Three.", "voice": voices[-1],
                                                               "language": "en", "output_file": "x"})
    assert stream.status_code == 200 and stream.headers["content-type"] == "audio/wav"
    assert decode_audio(stream.content).sample_rate == rate

    sdk = openai.OpenAI(api_key="none", base_url=f"{client.base_url}/v1", max_retries=0,
                        http_client=httpx.Client(timeout=120))
    mp3 = sdk.audio.speech.create(model="tts-1", voice=voices[0], input="Good morning.", response_format="mp3").content
    assert decode_audio(mp3).codec == "mp3float"


def test_lowvram_without_cuda_is_accepted_and_stays_off(serve_server, current):
    client = serve_server.client
    assert client.post("/api/lowvramsetting", params={"new_low_vram_value": "True"}).json() == \
        {"status": "lowvram-success", "message": ""}
    assert client.get("/api/currentsettings").json()["lowvram_enabled"] is False


def test_deepspeed_needs_cuda(serve_server):
    client = serve_server.client
    client.post("/api/enginereload", params={"engine": "xtts"})
    try:
        body = client.post("/api/deepspeed", params={"new_deepspeed_value": "True"}).json()
        assert body["status"] == "error" and "DeepSpeed" in body["message"]
    finally:
        client.post("/api/enginereload", params={"engine": "piper"})


def test_a_request_can_name_a_live_engine_that_is_not_current(serve_server):
    client = serve_server.client
    # Other tests leave VITS on another model; the voice "default" is the single-speaker model's.
    assert client.post("/api/enginereload", params={"engine": "vits"}).json() == {"status": "engine-success"}
    try:
        assert client.post("/api/reload", params={"tts_method": ENGINES["vits"][0]}).json() == {
            "status": "model-success"
        }
    finally:
        assert client.post("/api/enginereload", params={"engine": "piper"}).json() == {"status": "engine-success"}
    assert client.get("/api/currentsettings").json()["current_engine_loaded"] == "piper"
    body = client.post(
        "/api/tts-generate",
        data={"text_input": "From another engine.", "engine": "vits", "character_voice_gen": "default"},
    ).json()
    assert body["status"] == "generate-success", body
    assert decode_audio(client.get(body["output_file_url"]).content).sample_rate == 22050


def test_a_language_whose_text_front_end_is_missing_is_a_clear_400(serve_server):
    response = serve_server.client.post(
        "/api/tts-generate",
        data={"text_input": "Hello.", "engine": "xtts", "character_voice_gen": "female_01.wav", "language": "zh"},
    )
    if importlib.util.find_spec("pypinyin") is None:
        assert response.status_code == 400
        assert "pypinyin" in response.json()["error"]
    else:
        assert response.status_code == 200, "zh is spoken as zh-cn"


@pytest.fixture
def xtts_current(serve_server):
    """The streaming endpoints speak with the current engine: XTTS for the test, Piper after."""
    client = serve_server.client
    assert client.post("/api/enginereload", params={"engine": "xtts"}).json() == {"status": "engine-success"}
    yield client
    assert client.post("/api/enginereload", params={"engine": "piper"}).json() == {"status": "engine-success"}


def _settled_batch_rows(samples: dict) -> dict:
    """The metric samples once XTTS's step count and row sum have not moved for one export round
    (3 s): a scrape can catch one updated before the other (seen: fewer rows than steps)."""
    def reading(s: dict) -> tuple[float, float]:
        return (_value(s, "ray_alltalk_batch_rows_count", engine="xtts"),
                _value(s, "ray_alltalk_batch_rows_sum", engine="xtts"))

    for _ in range(10):
        time.sleep(3)
        again = _samples()
        if reading(again) == reading(samples):
            break
        samples = again
    return samples


def test_concurrent_xtts_streams_share_decoding_steps(xtts_current):
    """Four streams at once on the one XTTS replica: every one gets its audio, and the replica's
    batch-occupancy metric shows that they shared steps (a replica taking turns would run one
    row per step)."""
    client = xtts_current
    params = {"voice": "female_01.wav", "language": "en", "output_file": "batch"}
    # Earlier tests' steps may still be on their way out of Ray's metric export: start the window
    # once the count has stopped moving, or their one-row steps would count as this test's.
    before = _settled_batch_rows(_samples())

    def stream(i: int) -> bytes:
        response = client.get(
            "/api/tts-generate-streaming",
            # Long enough that the streams run side by side for most of their steps, however far
            # apart they reach the replica.
            params={**params, "text": f"Request {i}. It has four sentences. This is the third. And a last one."},
        )
        assert response.status_code == 200, response.text
        return response.content

    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(stream, range(4)))
    for body in bodies:
        audio = decode_audio(body)
        assert audio.sample_rate == 24000 and audio.duration_s > 0.3

    def grown(s: dict) -> bool:
        return _value(s, "ray_alltalk_batch_rows_count", engine="xtts") > _value(
            before, "ray_alltalk_batch_rows_count", engine="xtts"
        )

    after = _settled_batch_rows(_wait_for(grown))  # Ray exports in rounds: every step of the four streams
    steps = _value(after, "ray_alltalk_batch_rows_count", engine="xtts") - _value(
        before, "ray_alltalk_batch_rows_count", engine="xtts"
    )
    rows = _value(after, "ray_alltalk_batch_rows_sum", engine="xtts") - _value(
        before, "ray_alltalk_batch_rows_sum", engine="xtts"
    )
    # Taking turns is exactly one row per step; the streams start a moment apart, so the first and
    # last steps of the four run with fewer rows.
    assert steps > 0 and rows / steps > 1.3, f"{rows} rows over {steps} steps"


def test_an_xtts_stream_closed_mid_way_leaves_the_batch_and_the_others_finish(xtts_current):
    client = xtts_current
    params = {
        "voice": "female_01.wav",
        "language": "en",
        "output_file": "leave",
        "text": "The first sentence is here. A second one follows. And a third one ends it.",
    }
    before = _samples()
    answers = {}

    def leave() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=120) as own:
            with own.stream("GET", "/api/tts-generate-streaming", params=params) as response:
                answers["first"] = next(response.iter_raw())  # then the client goes away

    def stay() -> None:
        answers["kept"] = client.get("/api/tts-generate-streaming", params=params)

    threads = [threading.Thread(target=stay), threading.Thread(target=leave)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert answers["first"] and answers["kept"].status_code == 200
    assert decode_audio(answers["kept"].content).duration_s > 1.0

    def disconnects(s: dict) -> float:
        return _value(s, "ray_alltalk_cancellations_total", engine="xtts", reason="disconnect")

    assert disconnects(_wait_for(lambda s: disconnects(s) > disconnects(before))) == disconnects(before) + 1
    again = client.get("/api/tts-generate-streaming", params=params)
    assert again.status_code == 200 and decode_audio(again.content).duration_s > 1.0, "the batch serves on"


def backwards(pcm: bytes) -> bytes:
    """16-bit samples in reverse order: the same length of sound, another clip."""
    return np.frombuffer(pcm, dtype="<i2")[::-1].tobytes()


def test_an_uploaded_clip_is_an_xtts_voice_at_once_and_replacing_it_keeps_it_working(xtts_current):
    client = xtts_current
    spoken = client.post("/api/tts-generate", data={
        "engine": "piper", "character_voice_gen": "en_US-joe-medium.onnx", "narrator_enabled": "false",
        "text_input": "This recording becomes a voice that XTTS clones, uploaded while the server runs."}).json()
    clip = client.get(spoken["output_file_url"]).content
    try:
        stored = client.post("/api/voices/xtts", data={"name": "uploaded"}, files=[("files", ("me.wav", clip))])
        assert stored.status_code == 201 and stored.json()["voice"] == "uploaded.wav", stored.text
        assert "uploaded.wav" in client.get("/api/voices").json()["voices"]  # XTTS is current: its list
        for _ in range(2):  # as uploaded, then replaced (the replicas load the new clip)
            body = client.post("/api/tts-generate", data={"text_input": "Hello from a new voice.",
                                                           "character_voice_gen": "uploaded.wav"}).json()
            assert body["status"] == "generate-success", body
            assert decode_audio(client.get(body["output_file_url"]).content).sample_rate == 24000
            replaced = client.post("/api/voices/xtts", data={"name": "uploaded", "replace": "true"},
                                   files=[("files", ("again.wav", clip[:44] + backwards(clip[44:])))])
            assert replaced.status_code == 201, replaced.text
    finally:
        client.delete("/api/voices/xtts/uploaded")
    assert "uploaded.wav" not in client.get("/api/voices").json()["voices"]
