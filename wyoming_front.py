"""Home Assistant's Wyoming protocol in front of this server: a TCP server that answers `describe`
with the server's voices, `synthesize` with audio-start, audio-chunk and audio-stop, and the
streaming synthesis of Wyoming 1.7 (synthesize-start, -chunk, -stop) sentence by sentence.

It speaks through the server's own API, as any client does: its text goes into the ElevenLabs
input stream (`/v1/text-to-speech/{voice}/stream-input`, speechcore/api/elevenlabs_socket.py), so
the same pipeline, engines, keys and limits apply, and it holds nothing of its own. On a cluster
it runs anywhere that reaches the ingress (one per node beside HAProxy, or one for the cluster),
and the ingress replicas and engines behind the URL do the work and scale as for HTTP clients.
Wyoming has no authentication: the front answers only addresses in `allowed_networks` (the
private ranges by default). No Ray import here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

_LOGGER = logging.getLogger(__name__)

RATE, WIDTH, CHANNELS = 22050, 2, 1
"""What the front sends: 16-bit mono PCM at 22.05 kHz (Piper's own rate; other engines' audio is
resampled by the server)."""
PRIVATE_NETWORKS = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",
                    "fe80::/10"]
_PIPER_LANGUAGE = re.compile(r"^(?:.*/)?([a-z]{2,3}_[A-Z]{2})-")
ATTRIBUTION = Attribution(name="alltalk-serve", url="")


class WyomingArgs(BaseModel):
    api_url: str = Field(description="The server's HTTP API (the embedded server's own, or a cluster's ingress).")
    api_key: SecretStr | None = Field(None, description="An API key of the server, when it has keys on.")
    host: str = Field("0.0.0.0", description="Listen address of the Wyoming port.")
    port: int = Field(10200, ge=1, le=65535, description="The Wyoming port (Home Assistant's default: 10200).")
    allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in PRIVATE_NETWORKS],
        description="Client addresses the front answers (Wyoming has no authentication).")
    samples_per_chunk: int = Field(1024, ge=64, description="Samples per audio-chunk event.")
    inactivity_timeout_s: float = Field(60.0, gt=0, le=180, description=(
        "How long a streaming synthesis may wait for its next text chunk."))


class SpeechFailed(RuntimeError):
    """The server refused or could not finish a synthesis (`code`: its error's kind)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


class ServerSpeech:
    """One synthesis through the server's input stream: text in with `add`, `end` when it is all
    there; `audio()` yields PCM as the server sends it."""

    def __init__(self, socket: ClientConnection):
        self.socket = socket
        self._reading = False

    async def add(self, text: str) -> None:
        if text:
            await self._send({"text": text})

    async def end(self) -> None:
        await self._send({"text": ""})

    async def _send(self, message: dict[str, str]) -> None:
        try:
            await self.socket.send(json.dumps(message))
        except ConnectionClosed:
            if not self._reading:  # the server refused the stream (an unknown voice): its reason came first
                async for _ in self.audio():
                    pass
            raise SpeechFailed("the server closed the stream", "connection_closed") from None

    async def audio(self) -> AsyncIterator[bytes]:
        self._reading = True
        try:
            async for raw in self.socket:
                message = json.loads(raw)
                if message.get("error"):
                    raise SpeechFailed(message.get("message", "the server ended the synthesis"), message["error"])
                if message.get("audio"):
                    yield base64.b64decode(message["audio"])
                if message.get("isFinal"):
                    return
        except ConnectionClosed as closed:
            raise SpeechFailed(f"the server closed the stream ({closed})", "connection_closed") from None
        finally:
            self._reading = False
        raise SpeechFailed("the server closed the stream before its last audio", "connection_closed")


class ServerApi:
    """The server's HTTP API, as this front uses it."""

    def __init__(self, args: WyomingArgs):
        self.url = args.api_url.rstrip("/")
        self.headers = {"xi-api-key": args.api_key.get_secret_value()} if args.api_key else {}
        self.inactivity_timeout_s = args.inactivity_timeout_s

    async def info(self) -> Info:
        voices, models = await asyncio.gather(self._get("/v1/voices"), self._get("/v1/models"))
        languages = {model["model_id"]: [lang["language_id"] for lang in model.get("languages", [])] or ["en"]
                     for model in models}
        tts_voices = [TtsVoice(name=voice["voice_id"], description=voice.get("description") or voice["voice_id"],
                               attribution=ATTRIBUTION, installed=True, version=None,
                               languages=_voice_languages(voice["voice_id"], languages.get(
                                   voice.get("labels", {}).get("engine", ""), ["en"])))
                      for voice in voices["voices"]]
        program = TtsProgram(name="alltalk-serve", description="AllTalk-compatible TTS on Ray Serve",
                             attribution=ATTRIBUTION, installed=True, version=None, voices=tts_voices,
                             supports_synthesize_streaming=True)
        return Info(tts=[program])

    @contextlib.asynccontextmanager
    async def speech(self, voice: str | None) -> AsyncIterator[ServerSpeech]:
        if voice is None:
            voice = (await self._get("/v1/voices"))["voices"][0]["voice_id"]
        query = urllib.parse.urlencode({"output_format": f"pcm_{RATE}",
                                        "inactivity_timeout": f"{self.inactivity_timeout_s:g}"})
        path = urllib.parse.quote(voice, safe="/")
        target = f"{self.url.replace('http', 'ws', 1)}/v1/text-to-speech/{path}/stream-input?{query}"
        async with connect(target, additional_headers=self.headers, max_size=None) as socket:
            yield ServerSpeech(socket)

    async def _get(self, path: str) -> Any:
        def get() -> Any:
            request = urllib.request.Request(f"{self.url}{path}", headers=self.headers)
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read())

        return await asyncio.to_thread(get)


def _voice_languages(voice: str, engine_languages: list[str]) -> list[str]:
    """A Piper voice's language is in its name (`en_US-joe-medium.onnx`); others speak what their
    engine speaks."""
    named = _PIPER_LANGUAGE.match(voice)
    return [named.group(1)] if named else engine_languages


class WyomingSession(AsyncEventHandler):
    """One Home Assistant connection: its events, and the synthesis it has under way."""

    def __init__(self, args: WyomingArgs, api: ServerApi, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        super().__init__(reader, writer)
        self.args, self.api = args, api
        self._streaming: contextlib.AsyncExitStack | None = None
        self._speech: ServerSpeech | None = None
        self._playing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        peer = self.writer.get_extra_info("peername")
        address = ipaddress.ip_address(peer[0]) if peer else None
        if address is None or not any(address in network for network in self.args.allowed_networks):
            _LOGGER.warning("Wyoming: refused %s (not in allowed_networks)", address)
            await self.write_event(Error(text="this address may not use the server", code="forbidden").event())
            self.writer.close()
            return
        await super().run()

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event((await self.api.info()).event())
            elif Synthesize.is_type(event.type) and self._speech is None:
                await self._speak_whole(Synthesize.from_event(event))
            elif SynthesizeStart.is_type(event.type):
                await self._start(SynthesizeStart.from_event(event))
            elif SynthesizeChunk.is_type(event.type) and self._speech is not None:
                await self._streamed(self._speech.add(SynthesizeChunk.from_event(event).text))
            elif SynthesizeStop.is_type(event.type) and self._speech is not None:
                await self._finish()
        except (SpeechFailed, OSError, WebSocketException) as exc:
            await self._close_stream()
            code = exc.code if isinstance(exc, SpeechFailed) else "server_unreachable"
            _LOGGER.info("Wyoming: synthesis failed: %s (%s)", exc, code)
            await self.write_event(Error(text=str(exc), code=code).event())
        return True

    async def _speak_whole(self, synthesize: Synthesize) -> None:
        async with self.api.speech(synthesize.voice.name if synthesize.voice else None) as speech:
            await speech.add(synthesize.text)
            await speech.end()
            await self._play(speech)

    async def _start(self, start: SynthesizeStart) -> None:
        await self._close_stream()
        self._streaming = contextlib.AsyncExitStack()
        self._speech = await self._streaming.enter_async_context(
            self.api.speech(start.voice.name if start.voice else None))
        self._playing = asyncio.create_task(self._play(self._speech))

    async def _streamed(self, step: Awaitable[None]) -> None:
        """A step of a streaming synthesis; when the server has closed the stream, the reason it
        gave (which the audio reader has) rather than the closed socket."""
        try:
            await step
        except SpeechFailed:
            if self._playing is not None:
                await self._playing
            raise

    async def _finish(self) -> None:
        assert self._speech is not None and self._playing is not None
        await self._streamed(self._speech.end())
        try:
            await self._playing
        finally:
            await self._close_stream()
        await self.write_event(SynthesizeStopped().event())

    async def _play(self, speech: ServerSpeech) -> None:
        """audio-start with the first audio (an error before it is an error event alone), the audio
        in chunks of `samples_per_chunk`, audio-stop."""
        size, pending, started = self.args.samples_per_chunk * WIDTH * CHANNELS, b"", False
        async for data in speech.audio():
            if not started:
                await self.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
                started = True
            pending += data
            while len(pending) >= size:
                await self._chunk(pending[:size])
                pending = pending[size:]
        if not started:
            await self.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
        if pending:
            await self._chunk(pending)
        await self.write_event(AudioStop().event())

    async def _chunk(self, audio: bytes) -> None:
        await self.write_event(AudioChunk(audio=audio, rate=RATE, width=WIDTH, channels=CHANNELS).event())

    async def _close_stream(self) -> None:
        """Ends the synthesis under way: closing its socket stops it on the server."""
        playing, streaming = self._playing, self._streaming
        self._playing, self._streaming, self._speech = None, None, None
        if playing is not None:
            playing.cancel()
            with contextlib.suppress(BaseException):  # a failure it ended with was reported, or is moot
                await playing
        if streaming is not None:
            with contextlib.suppress(Exception):
                await streaming.aclose()

    async def disconnect(self) -> None:
        await self._close_stream()


class WyomingThread:
    """The front on a thread of its own, beside the embedded server in its process."""

    def __init__(self, args: WyomingArgs):
        self.args = args
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wyoming", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError(f"the Wyoming port {self.args.port} did not open")

    def stop(self) -> None:
        if self._loop is not None and self._serving is not None:
            self._loop.call_soon_threadsafe(self._serving.cancel)
        self._thread.join(10)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            started = asyncio.Event()
            self._serving = asyncio.create_task(serve_wyoming(self.args, started))
            opened = asyncio.create_task(started.wait())
            await asyncio.wait({self._serving, opened}, return_when=asyncio.FIRST_COMPLETED)
            if opened.done():
                self._started.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving

        try:
            asyncio.run(main())
        except Exception:
            _LOGGER.exception("the Wyoming front stopped")


async def serve_wyoming(args: WyomingArgs, started: asyncio.Event | None = None) -> None:
    """Serves the Wyoming port until cancelled."""
    api = ServerApi(args)
    server = AsyncTcpServer(args.host, args.port)
    await server.start(lambda reader, writer: WyomingSession(args, api, reader, writer))
    _LOGGER.info("Wyoming (Home Assistant): tcp://%s:%d, speaking through %s", args.host, args.port, api.url)
    if started is not None:
        started.set()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
