"""§5 streaming endpoints, §6B.1 previews, transcoding, and the clients' request shapes."""

import struct
import time

import httpx
import pytest

from tests.conftest import BUNDLED_VOICE
from tests.support import decode_audio

SIX_SENTENCES = (
    "The morning was cold and bright. A small boat drifted across the lake. "
    "On the shore, children were building a fire. Smoke rose slowly into the pale sky. "
    "Somewhere far away a dog began to bark. Then everything was quiet again."
)


def stream_params(**extra):
    return {"text": SIX_SENTENCES, "voice": BUNDLED_VOICE, "language": "en", "output_file": "stream_output.wav",
            **extra}


def test_streaming_get_sends_a_length_unknown_wav_header_then_pcm(server):
    response = server.client.get("/api/tts-generate-streaming", params=stream_params())
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert "content-length" not in response.headers
    header = response.content[:44]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    riff_size, = struct.unpack("<I", header[4:8])
    channels, rate = struct.unpack("<HI", header[22:28])
    data_size, = struct.unpack("<I", header[40:44])
    assert (riff_size, channels, rate, data_size) == (36, 1, 22050, 0)
    audio = decode_audio(response.content)
    assert audio.sample_rate == 22050 and audio.duration_s > 6
    assert (len(response.content) - 44) % 2 == 0


def test_streaming_writes_no_file(server):
    before = set(server.outputs.iterdir()) if server.outputs.exists() else set()
    assert server.client.get("/api/tts-generate-streaming", params=stream_params()).status_code == 200
    after = set(server.outputs.iterdir()) if server.outputs.exists() else set()
    assert after == before


@pytest.mark.parametrize("missing", ["text", "voice", "language", "output_file"])
def test_streaming_needs_all_four_parameters(server, missing):
    params = stream_params()
    del params[missing]
    assert server.client.get("/api/tts-generate-streaming", params=params).status_code == 422


@pytest.mark.parametrize("voice", ["missing.onnx", "../../etc/passwd"])
def test_streaming_with_a_bad_voice_is_an_invalid_value(server, voice):
    response = server.client.get("/api/tts-generate-streaming", params=stream_params(voice=voice))
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid value: ")


def test_streaming_auto_language_that_cannot_be_detected(server):
    response = server.client.get("/api/tts-generate-streaming", params=stream_params(text="12345 678", language="auto"))
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid value: Could not detect language"}


def test_streaming_post_writes_the_named_file_and_echoes_it(server):
    response = server.client.post("/api/tts-generate-streaming", data=stream_params(output_file="posted_clip"))
    assert response.status_code == 200
    assert response.json() == {"output_file_path": "posted_clip"}
    audio = decode_audio((server.outputs / "posted_clip.wav").read_bytes())
    assert audio.duration_s > 6


@pytest.mark.parametrize("name", ["../../somewhere/name", "/tmp/x", "a/b", ".hidden"])
def test_streaming_post_refuses_names_with_folders(server, name):
    response = server.client.post("/api/tts-generate-streaming", data=stream_params(output_file=name))
    assert response.status_code == 400
    assert "output_file" in response.json()["detail"]


def test_preview_speaks_a_short_sentence_into_a_fresh_file(server):
    response = server.client.post("/api/previewvoice/", data={"voice": BUNDLED_VOICE})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "output_file_path", "output_file_url"}
    assert body["status"] == "generate-success"
    assert body["output_file_url"].startswith("/audio/api_preview_voice_")
    audio = decode_audio(server.client.get(body["output_file_url"]).content)
    assert 1.5 < audio.duration_s < 10


def test_preview_without_the_slash_redirects_with_307(server):
    response = server.client.post("/api/previewvoice", data={"voice": BUNDLED_VOICE}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].endswith("/api/previewvoice/")


def test_preview_errors(server):
    assert server.client.post("/api/previewvoice/", data={}).status_code == 422
    response = server.client.post("/api/previewvoice/", data={"voice": "nobody.onnx"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid value: ")


@pytest.mark.parametrize("setting,extension,codec", [("mp3", "mp3", "mp3float"), ("flac", "flac", "flac"),
                                                     ("opus", "opus", "opus"), ("aac", "aac", "aac"),
                                                     ("vorbis", "ogg", "vorbis")])
def test_transcode_audio_format_changes_the_file(server, setting, extension, codec):
    server.write_config({"transcode_audio_format": setting})
    body = server.client.post("/api/tts-generate", data={"text_input": "Transcoded output."}).json()
    assert body["output_file_url"].endswith(f".{extension}")
    assert not list(server.outputs.glob(f"{body['output_file_url'].split('/')[-1].rsplit('.', 1)[0]}.wav"))
    audio = decode_audio(server.client.get(body["output_file_url"]).content)
    assert audio.codec == codec and audio.duration_s > 0.5


def test_text_generation_webui_request_shape(server):
    form = {"text_input": "<p>Hello &amp; welcome, *waves*</p>", "text_filtering": "html",
            "character_voice_gen": BUNDLED_VOICE, "rvccharacter_voice_gen": "Disabled", "rvccharacter_pitch": "0",
            "narrator_enabled": "false", "narrator_voice_gen": BUNDLED_VOICE, "rvcnarrator_voice_gen": "Disabled",
            "rvcnarrator_pitch": "0", "text_not_inside": "character", "language": "en", "output_file_name": "Alice_",
            "output_file_timestamp": "true", "autoplay": "false", "autoplay_volume": "0.8", "speed": "1.0",
            "pitch": "0", "temperature": "0.75", "repetition_penalty": "10"}
    body = server.client.post("/api/tts-generate", data=form).json()
    assert body["status"] == "generate-success"
    assert body["output_file_url"].startswith("/audio/Alice__")


def test_sillytavern_narrator_request_shape(server):
    form = {"text_input": '*She smiled warmly.* "Welcome to the inn, traveller."', "text_filtering": "standard",
            "character_voice_gen": BUNDLED_VOICE, "narrator_enabled": "true", "narrator_voice_gen": BUNDLED_VOICE,
            "text_not_inside": "character", "language": "en", "output_file_name": "st_output",
            "output_file_timestamp": "true", "autoplay": "false", "autoplay_volume": "0.8",
            "rvccharacter_voice_gen": "Disabled", "rvccharacter_pitch": "0"}
    body = server.client.post("/api/tts-generate", data=form).json()
    assert body["status"] == "generate-success"
    assert body["output_file_url"].endswith("_combined.wav")


@pytest.mark.serve
@pytest.mark.both_fronts
def test_streaming_first_audio_arrives_well_before_the_whole_generation(serve_server):
    client = serve_server.client
    client.post("/api/tts-generate", data={"text_input": SIX_SENTENCES})  # warm the voice
    start = time.perf_counter()
    assert client.post("/api/tts-generate", data={"text_input": SIX_SENTENCES}).status_code == 200
    whole = time.perf_counter() - start
    start = time.perf_counter()
    with httpx.stream("GET", f"{client.base_url}/api/tts-generate-streaming", params=stream_params(), timeout=60) as r:
        iterator = r.iter_raw()
        first = next(iterator)
        first_audio = time.perf_counter() - start
        rest = b"".join(iterator)
    assert len(first) > 44, "the first bytes carry audio, not only the header"
    assert decode_audio(first + rest).duration_s > 6
    assert first_audio < 0.5 * whole, (first_audio, whole)


def test_streaming_true_on_tts_generate_returns_the_stream_with_its_options(server):
    normal = server.client.get("/api/tts-generate-streaming", params=stream_params())
    fast = server.client.post("/api/tts-generate",
                              data={"text_input": SIX_SENTENCES, "streaming": "true", "speed": "2"})
    assert fast.status_code == 200
    assert fast.headers["content-type"] == "audio/wav"
    assert fast.content[:4] == b"RIFF"
    assert decode_audio(fast.content).duration_s < 0.7 * decode_audio(normal.content).duration_s


def test_streaming_true_still_validates_first(server):
    response = server.client.post("/api/tts-generate", data={"text_input": "x", "streaming": "true", "speed": "9"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("speed:")
