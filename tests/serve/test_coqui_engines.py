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

from tests.serve.test_observability import _samples, _wait_for
from tests.support import decode_audio, fixed_replicas, metric_value

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


@pytest.fixture
def one_xtts_replica(xtts_current):
    """XTTS current and on one replica: what a handle reads or speaks is that replica's."""
    with fixed_replicas("xtts", "tts-xtts", 1):
        yield xtts_current


def _tally() -> dict[str, int]:
    """The XTTS replica's own count of its batch steps (exact, not Ray's metric export)."""
    from ray import serve

    return serve.get_deployment_handle("tts-xtts", "xtts").batch_tally.remote().result(timeout_s=60)


def test_concurrent_xtts_streams_share_decoding_steps(one_xtts_replica):
    """Four streams at once on the one XTTS replica: every one gets its audio, and the replica's
    own step counts show that they shared steps (a replica taking turns would run one row per step)."""
    client = one_xtts_replica
    params = {"voice": "female_01.wav", "language": "en", "output_file": "batch"}
    before = _tally()

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

    after = _tally()
    steps, rows = after["steps"] - before["steps"], after["rows"] - before["rows"]
    # Taking turns is exactly one row per step; the streams start a moment apart, so the first and
    # last steps of the four run with fewer rows.
    assert steps > 0 and rows / steps > 1.3, f"{rows} rows over {steps} steps"


def test_an_xtts_stream_closed_mid_way_leaves_the_batch_and_the_others_finish(one_xtts_replica):
    client = one_xtts_replica
    params = {
        "voice": "female_01.wav",
        "language": "en",
        "output_file": "leave",
        "text": "The first sentence is here. A second one follows. And a third one ends it.",
    }
    before, tally_before = _samples(), _tally()
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
        return metric_value(s, "ray_alltalk_cancellations_total", engine="xtts", reason="disconnect")

    assert disconnects(_wait_for(lambda s: disconnects(s) > disconnects(before))) == disconnects(before) + 1
    # The replica's batcher dropped the row of the stream that went away (its sentences were not
    # all spoken: the kept stream of the same text ran to its end).
    deadline = time.monotonic() + 60
    while _tally()["rows_left"] == tally_before["rows_left"]:
        assert time.monotonic() < deadline, "the closed stream's row never left the batch"
        time.sleep(0.2)
    assert _tally()["rows_left"] == tally_before["rows_left"] + 1
    again = client.get("/api/tts-generate-streaming", params=params)
    assert again.status_code == 200 and decode_audio(again.content).duration_s > 1.0, "the batch serves on"


def backwards(pcm: bytes) -> bytes:
    """16-bit samples in reverse order: the same length of sound, another clip."""
    return np.frombuffer(pcm, dtype="<i2")[::-1].tobytes()


def _greedy_pcm(text: str, voice: str) -> bytes:
    """The XTTS replica's audio for `text` with top-k 1, through a Serve handle: with no sampling,
    the same voice gives the same samples and another voice other ones."""
    import asyncio

    from deployments.handles import HandleEngineClient
    from deployments.rollout import ServeRollout
    from speechcore.engine_types import SynthesisRequest

    async def collect() -> bytes:
        client = HandleEngineClient("xtts", "tts-xtts", ServeRollout(), 30)
        request = SynthesisRequest(text=text, voice=voice, language="en", top_k=1)
        return b"".join([chunk.pcm async for chunk in client.synthesize(request)])

    return asyncio.run(collect())


def test_an_uploaded_clip_is_an_xtts_voice_at_once_and_replacing_it_keeps_it_working(one_xtts_replica):
    client = one_xtts_replica
    spoken = client.post("/api/tts-generate", data={
        "engine": "piper", "character_voice_gen": "en_US-joe-medium.onnx", "narrator_enabled": "false",
        "text_input": "This recording becomes a voice that XTTS clones, uploaded while the server runs."}).json()
    clip = client.get(spoken["output_file_url"]).content
    text = "Hello from a new voice."
    try:
        stored = client.post("/api/voices/xtts", data={"name": "uploaded"}, files=[("files", ("me.wav", clip))])
        assert stored.status_code == 201 and stored.json()["voice"] == "uploaded.wav", stored.text
        assert "uploaded.wav" in client.get("/api/voices").json()["voices"]  # XTTS is current: its list
        body = client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": "uploaded.wav"}).json()
        assert body["status"] == "generate-success", body
        assert decode_audio(client.get(body["output_file_url"]).content).sample_rate == 24000
        first = _greedy_pcm(text, "uploaded.wav")
        assert _greedy_pcm(text, "uploaded.wav") == first, "greedy decoding repeats itself"

        replaced = client.post("/api/voices/xtts", data={"name": "uploaded", "replace": "true"},
                               files=[("files", ("again.wav", clip[:44] + backwards(clip[44:])))])
        assert replaced.status_code == 201, replaced.text
        body = client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": "uploaded.wav"}).json()
        assert body["status"] == "generate-success", body
        assert _greedy_pcm(text, "uploaded.wav") != first, "the replica speaks with the new clip"
    finally:
        client.delete("/api/voices/xtts/uploaded")
    assert "uploaded.wav" not in client.get("/api/voices").json()["voices"]
