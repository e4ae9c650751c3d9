"""The ElevenLabs-compatible API through its real client, the `elevenlabs` SDK, over real HTTP: in
process (uvicorn) and behind real Serve. Speech from a whole text (convert, stream), the voice and
model lists, and text streamed in over a WebSocket, spoken sentence by sentence while the rest is
still coming (the SDK's realtime client always dials wss://; here it is pointed at ws://, as it
would be behind a TLS-terminating proxy)."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from elevenlabs.client import ElevenLabs
from elevenlabs.core.api_error import ApiError
from websockets.sync.client import connect

from speechcore.api.app import create_app
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.service import SpeechService
from tests.conftest import BUNDLED_VOICE, SECOND_VOICE
from tests.support import InProcessEngineClient, ToneEngine, decode_audio, serve_over_http, wait_until

TEXT = "The lighthouse keeper climbed the stairs. The storm was coming in from the west."


@pytest.fixture
def url(api_url) -> str:
    return api_url


def sdk(url: str) -> ElevenLabs:
    client = ElevenLabs(api_key="unused", base_url=url)
    client.text_to_speech._ws_base_url = url.replace("http://", "ws://", 1)  # type: ignore[attr-defined]
    return client


def pcm_seconds(data: bytes, rate: int) -> float:
    return len(data) / 2 / rate


def test_convert_and_stream_speak_the_servers_voice_in_the_asked_format(url):
    client = sdk(url)
    pcm = b"".join(client.text_to_speech.convert(BUNDLED_VOICE, text=TEXT, output_format="pcm_22050"))
    assert 3.0 < pcm_seconds(pcm, 22050) < 9.0
    streamed = decode_audio(b"".join(client.text_to_speech.stream(BUNDLED_VOICE, text=TEXT)))
    assert streamed.sample_rate == 44100 and abs(streamed.duration_s - pcm_seconds(pcm, 22050)) < 0.5
    ulaw = b"".join(client.text_to_speech.convert(BUNDLED_VOICE, text=TEXT, output_format="ulaw_8000"))
    assert abs(len(ulaw) / 8000 - pcm_seconds(pcm, 22050)) < 0.2  # one byte per sample


def test_voices_and_models_list_this_servers_engines(url):
    client = sdk(url)
    voices = {voice.voice_id: voice for voice in client.voices.get_all().voices}
    assert {BUNDLED_VOICE, SECOND_VOICE} <= set(voices)
    assert voices[BUNDLED_VOICE].labels["engine"] == "piper"
    models = [model.model_id for model in client.models.list()]
    assert "piper" in models


def test_the_voice_id_picks_the_voice_a_folder_in_it_too(url):
    """The second voice speaks more slowly (as the suite tells the voices apart)."""
    client = sdk(url)

    def spoken(voice: str) -> float:
        audio = client.text_to_speech.convert(voice, text=TEXT, model_id="piper", output_format="pcm_16000")
        return pcm_seconds(b"".join(audio), 16000)

    lengths = {voice: spoken(voice) for voice in (BUNDLED_VOICE, SECOND_VOICE)}
    assert lengths[SECOND_VOICE] > 1.4 * lengths[BUNDLED_VOICE], lengths


def test_bad_requests_get_elevenlabs_errors(url):
    client = sdk(url)
    with pytest.raises(ApiError) as unknown:
        b"".join(client.text_to_speech.convert("nobody", text=TEXT))
    assert unknown.value.status_code == 404 and unknown.value.body["detail"]["status"] == "voice_not_found"
    with pytest.raises(ApiError) as model:
        b"".join(client.text_to_speech.convert(BUNDLED_VOICE, text=TEXT, model_id="tortoise"))
    assert model.value.status_code == 400 and model.value.body["detail"]["status"] == "model_not_found"
    with pytest.raises(ApiError) as fmt:
        b"".join(client.text_to_speech.convert(BUNDLED_VOICE, text=TEXT, output_format="opus_48000_64"))
    assert fmt.value.status_code == 400 and "output_format" in fmt.value.body["detail"]["message"]


def test_the_sdks_realtime_client_speaks_text_streamed_in(url):
    words = (TEXT + " Then the lamps went out").split(" ")
    audio = b"".join(sdk(url).text_to_speech.convert_realtime(BUNDLED_VOICE, text=iter(words),
                                                             output_format="pcm_24000"))
    whole = b"".join(sdk(url).text_to_speech.convert(BUNDLED_VOICE, text=" ".join(words),
                                                     output_format="pcm_24000"))
    assert abs(pcm_seconds(audio, 24000) - pcm_seconds(whole, 24000)) < 1.0  # three sentences each


def _socket(url: str, query: str = "output_format=pcm_22050"):
    return connect(f"{url.replace('http://', 'ws://', 1)}/v1/text-to-speech/{BUNDLED_VOICE}/stream-input?{query}")


@pytest.mark.both_fronts
def test_a_sentence_is_spoken_while_the_rest_of_the_text_is_still_coming(url):
    with _socket(url) as socket:
        socket.send(json.dumps({"text": " ", "voice_settings": {"speed": 1.0}}))
        socket.send(json.dumps({"text": "The storm came in at dusk. The keeper"}))
        first = json.loads(socket.recv(timeout=60))  # before the reply's end: the first sentence is complete
        assert first["isFinal"] is None and base64.b64decode(first["audio"])
        socket.send(json.dumps({"text": " lit the lamp"}))
        socket.send(json.dumps({"flush": True}))
        socket.send(json.dumps({"text": ""}))
        messages = [first]
        while not messages[-1].get("isFinal"):
            messages.append(json.loads(socket.recv(timeout=60)))
        with pytest.raises(Exception, match="1000"):
            socket.recv(timeout=10)
    audio = b"".join(base64.b64decode(m["audio"]) for m in messages if m.get("audio"))
    assert 1.5 < pcm_seconds(audio, 22050) < 8.0


@pytest.mark.parametrize("send, status, code", [
    ("not json", "invalid_message", 1007),
    (json.dumps({"text": "x" * 70_000}), "message_too_big", 1009),
    (json.dumps({"text": "x" * 5001}), "invalid_message", 1007),
    (json.dumps({"text": ["a list"]}), "invalid_message", 1007),
])
def test_a_bad_message_ends_the_stream_with_a_clear_error(url, send, status, code):
    with _socket(url) as socket:
        socket.send(send)
        error = json.loads(socket.recv(timeout=30))
        assert error["error"] == status and error["code"] == code and error["message"]
        with pytest.raises(Exception, match=str(code)):
            socket.recv(timeout=10)


def test_an_unknown_voice_or_a_silent_client_ends_the_stream(url):
    with connect(f"{url.replace('http://', 'ws://', 1)}/v1/text-to-speech/nobody/stream-input") as socket:
        error = json.loads(socket.recv(timeout=30))
        assert error["error"] == "voice_not_found" and error["code"] == 1008
    with _socket(url, "inactivity_timeout=1") as socket:
        socket.send(json.dumps({"text": " "}))
        error = json.loads(socket.recv(timeout=30))
        assert error["error"] == "input_timeout_exceeded" and error["code"] == 1008


def test_a_whole_request_is_served_while_a_text_stream_is_open(url):
    """A text stream holds one generation while its client is still writing; others are served
    beside it, and the stream then ends as usual."""
    spoke, audio = threading.Event(), []

    def stream(socket) -> None:
        while not (message := json.loads(socket.recv(timeout=60))).get("isFinal"):
            audio.append(base64.b64decode(message["audio"]))
            spoke.set()

    with _socket(url) as socket:
        socket.send(json.dumps({"text": "The storm came in at dusk. "}))
        reader = threading.Thread(target=stream, args=(socket,))
        reader.start()
        assert spoke.wait(60)
        whole = b"".join(sdk(url).text_to_speech.convert(BUNDLED_VOICE, text=TEXT, output_format="pcm_22050"))
        socket.send(json.dumps({"text": "The keeper lit the lamp. "}))
        socket.send(json.dumps({"text": ""}))
        reader.join(60)
        assert not reader.is_alive()
    assert pcm_seconds(whole, 22050) > 3.0 and pcm_seconds(b"".join(audio), 22050) > 2.0


def test_a_client_that_goes_away_ends_its_synthesis_and_its_generation(tmp_path):
    """A slow engine (ToneEngine, 0.3 s a sentence) and ten sentences: the client leaves after the
    first audio, and the sentences after that are never synthesized."""
    spoken: list[str] = []

    def slow(text: str) -> float:
        spoken.append(text)
        return 0.3

    service = SpeechService(SettingsStore(ServerPaths.at(tmp_path)),
                            {"piper": InProcessEngineClient(ToneEngine(slow))}, ["piper"], "piper")
    app = create_app(service)
    with serve_over_http(app) as url:
        socket_url = f"{url.replace('http://', 'ws://', 1)}/v1/text-to-speech/440hz@16000/stream-input"
        with connect(socket_url) as socket:
            socket.send(json.dumps({"text": " ".join(f"Sentence number {n} is here." for n in range(10)) + " "}))
            assert json.loads(socket.recv(timeout=60))["audio"]
        wait_until(lambda: app.state.generations.total == 0, "the stream's generation ended", 30)
        assert len(spoken) < 10, spoken
        assert json.loads(_tone_after(socket_url))["audio"]  # the server is free for the next client


def _tone_after(socket_url: str) -> str:
    with connect(socket_url) as socket:
        socket.send(json.dumps({"text": "Next. "}))
        socket.send(json.dumps({"text": ""}))
        return socket.recv(timeout=60)
