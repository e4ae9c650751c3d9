"""§6 `POST /v1/audio/speech` through the official `openai` package, and the voice map (§3.7)."""

import base64
import json
import time

import openai
import pytest

from tests.conftest import BUNDLED_VOICE, SECOND_VOICE
from tests.support import decode_audio

TEXT = "The official client asks for speech in every format."
EXPECTED = {  # response_format: (codec, sample rate, content type)
    "wav": ("pcm_s16le", 22050, "audio/wav"),
    "mp3": ("mp3float", 22050, "audio/mpeg"),
    "opus": ("opus", 48000, "audio/ogg"),
    "aac": ("aac", 22050, "audio/aac"),
    "flac": ("flac", 22050, "audio/flac"),
    "ogg": ("vorbis", 22050, "audio/ogg"),
    "m4a": ("aac", 22050, "audio/mp4"),
}


@pytest.fixture
def sdk(server):
    return openai.OpenAI(api_key="not-needed", base_url=f"{server.client.base_url}/v1", http_client=server.client,
                         max_retries=0)


def files(server):
    return set(server.outputs.iterdir()) if server.outputs.exists() else set()


@pytest.mark.parametrize("fmt", list(EXPECTED))
def test_every_format_decodes_with_a_plausible_duration(server, sdk, fmt):
    before = files(server)
    response = sdk.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=TEXT, response_format=fmt)
    codec, rate, content_type = EXPECTED[fmt]
    assert response.headers["content-type"] == content_type
    audio = decode_audio(response.content)
    assert (audio.codec, audio.sample_rate) == (codec, rate)
    assert 2.0 < audio.duration_s < 8.0
    assert files(server) == before, "the OpenAI endpoint leaves no files behind"


def test_pcm_is_raw_16_bit_mono_at_24_khz(sdk):
    data = sdk.audio.speech.create(model="tts-1", voice="nova", input=TEXT, response_format="pcm").content
    assert len(data) % 2 == 0
    assert 2.0 < len(data) / 2 / 24000 < 8.0


def test_streamed_formats_decode(server, sdk):
    for fmt in ("mp3", "wav", "opus"):
        with sdk.audio.speech.with_streaming_response.create(model="tts-1", voice="echo", input=TEXT,
                                                             response_format=fmt,
                                                             extra_body={"stream_format": "audio"}) as r:
            data = b"".join(r.iter_bytes())
        assert 2.0 < decode_audio(data).duration_s < 8.5, fmt


def test_sse_stream_carries_base64_audio(server):
    response = server.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": TEXT,
                                                           "response_format": "mp3", "stream_format": "sse"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    seconds = decode_audio(audio).duration_s
    assert seconds > 2
    # OpenAI's done event carries usage: here the input's characters and milliseconds of audio.
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == len(TEXT)
    assert usage["output_tokens"] == pytest.approx(seconds * 1000, abs=150)  # mp3 adds its encoder's padding
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.both_fronts
def test_sse_events_arrive_as_the_audio_is_made(server):
    """The first audio event arrives long before the last sentence is spoken (a stream, not one
    answer sent in pieces at the end)."""
    text = " ".join(["Every sentence here is spoken one after the other."] * 8)
    warm = server.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Warm.",
                                                         "response_format": "pcm"})
    assert warm.status_code == 200  # the voice loaded: what follows times speaking, not loading
    arrivals = []
    started = time.monotonic()
    with server.client.stream("POST", "/v1/audio/speech", json={
            "model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm", "stream_format": "sse"}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic() - started, json.loads(line[6:])["type"]))
    deltas = [at for at, kind in arrivals if kind == "speech.audio.delta"]
    assert arrivals[-1][1] == "speech.audio.done" and len(deltas) >= 8
    assert deltas[0] < 0.5 * arrivals[-1][0], arrivals


def _seconds(sdk, voice: str) -> float:
    return decode_audio(sdk.audio.speech.create(model="tts-1", voice=voice, input=TEXT,
                                                response_format="wav").content).duration_s


@pytest.fixture
def spoken_by(server) -> dict[str, float]:
    """How long TEXT lasts spoken by each Piper voice (the second one speaks slower)."""
    def seconds(voice: str) -> float:
        answer = server.client.post("/api/tts-generate", data={"text_input": TEXT, "character_voice_gen": voice})
        return decode_audio(server.client.get(answer.json()["output_file_url"]).content).duration_s
    lengths = {voice: seconds(voice) for voice in (BUNDLED_VOICE, SECOND_VOICE)}
    assert lengths[SECOND_VOICE] > 1.4 * lengths[BUNDLED_VOICE]  # the voices can be told apart
    return lengths


def test_any_engine_voice_works_too(sdk, spoken_by):
    """The audio shows which voice spoke."""
    for voice in (BUNDLED_VOICE, SECOND_VOICE):
        assert _seconds(sdk, voice) == pytest.approx(spoken_by[voice], rel=0.12), voice  # Piper varies a little


@pytest.mark.parametrize("kwargs,param", [
    ({"voice": "bob"}, "voice"),
    ({"voice": "../../etc/passwd"}, "voice"),
    ({"speed": 5.0}, "speed"),
    ({"speed": 0.1}, "speed"),
    ({"input": "x" * 4097}, "input"),
    ({"response_format": "wma"}, "response_format"),
])
def test_bad_requests_are_400_json_and_leave_no_file(server, sdk, kwargs, param):
    before = files(server)
    args = {"model": "tts-1", "voice": "alloy", "input": TEXT, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.audio.speech.create(**args)
    assert caught.value.status_code == 400
    error = caught.value.response.json()["error"]
    assert error["param"] == param and error["message"]
    assert files(server) == before


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"model": "tts-1", "voice": "alloy"}'])
def test_malformed_bodies_are_400_not_422(server, body):
    response = server.client.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "message" in response.json()["error"]


def test_voice_list_and_voice_map_round_trip(server, sdk, spoken_by):
    body = server.client.get("/v1/audio/voices").json()
    assert body["voices"] == [BUNDLED_VOICE, SECOND_VOICE]
    assert set(body["aliases"]) == {"alloy", "echo", "fable", "nova", "onyx", "shimmer"}
    new_map = {name: (SECOND_VOICE if name == "onyx" else BUNDLED_VOICE) for name in body["aliases"]}
    response = server.client.put("/api/openai-voicemap", json=new_map)
    assert response.status_code == 200 and "message" in response.json()
    assert server.client.get("/v1/audio/voices").json()["aliases"]["onyx"] == SECOND_VOICE
    saved = json.loads((server.root / "system/tts_engines/piper/model_settings.json").read_text())
    assert saved["openai_voices"]["onyx"] == SECOND_VOICE
    # The map is used: onyx now speaks with the second voice, alloy with the bundled one.
    assert _seconds(sdk, "onyx") == pytest.approx(spoken_by[SECOND_VOICE], rel=0.12)
    assert _seconds(sdk, "alloy") == pytest.approx(spoken_by[BUNDLED_VOICE], rel=0.12)
    server.client.put("/api/openai-voicemap", json=body["aliases"])


def test_voice_map_needs_all_six_names_and_safe_values(server):
    assert server.client.put("/api/openai-voicemap", json={"alloy": "x"}).status_code == 422
    evil = {name: "../../etc/passwd" for name in ("alloy", "echo", "fable", "nova", "onyx", "shimmer")}
    assert server.client.put("/api/openai-voicemap", json=evil).status_code == 400
