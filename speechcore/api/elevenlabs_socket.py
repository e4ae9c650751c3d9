"""ElevenLabs' "input streaming" over a WebSocket: text comes in piece by piece (an LLM's reply as
it is written) and each sentence is spoken as soon as it is complete, in order, while later text
is still arriving. Audio goes back as base64 `audio` messages, then `{"isFinal": true}`, and the
server closes the socket. Alignment is not sent (no engine here gives character timings)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..audio.encode import stream_encoder
from ..audio.formats import AudioFormat
from ..orders import NothingToSpeak, SpeechOrder
from ..pipeline import SpeechPipeline
from ..text.sentence_stream import SentenceBuffer
from .elevenlabs_wire import BadMessage, StreamMessage, VoiceSettings, parse_stream_message
from .errors import error_status

_LOGGER = logging.getLogger(__name__)

CLOSE_NORMAL, CLOSE_INVALID_DATA, CLOSE_POLICY, CLOSE_ERROR = 1000, 1007, 1008, 1011
MAX_INACTIVITY_S = 180.0


class StreamEnded(Exception):
    """The text stream ends with an error message to the client and this close code."""

    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class TextStream:
    """What one stream speaks: the voice, the engine, the format; `order(sentence, settings)` makes
    the order for one sentence."""

    fmt: AudioFormat
    order: Callable[[str, VoiceSettings | None], SpeechOrder]
    inactivity_s: float


async def speak_text_stream(socket: WebSocket, pipeline: SpeechPipeline, stream: TextStream) -> None:
    """Reads the socket's messages and speaks their sentences until an empty text ends the stream;
    a client that goes away ends the synthesis under way (its stream is closed). An error ends the
    stream with an error message and a close code."""
    sentences: asyncio.Queue[str | None] = asyncio.Queue()
    settings: list[VoiceSettings | None] = [None]
    reading = asyncio.create_task(_read(socket, sentences, stream.inactivity_s, settings))
    speaking = asyncio.create_task(_speak(socket, pipeline, stream, sentences, lambda: settings[0]))
    try:
        await asyncio.wait({reading, speaking}, return_when=asyncio.FIRST_EXCEPTION)
        if reading.done():
            reading.result()  # an error in the text stream ends it at once
        await speaking
        await socket.send_json({"isFinal": True})
        await socket.close(CLOSE_NORMAL)
    except StreamEnded as ended:
        await end_stream(socket, ended.code, ended.status, str(ended))
    except (WebSocketDisconnect, OSError):
        _LOGGER.info("the client of a text stream went away")
    except Exception as exc:  # the engine's or the pipeline's, as the HTTP routes would answer it
        status, message = error_status(exc)
        await end_stream(socket, CLOSE_POLICY if status < 500 else CLOSE_ERROR, "speech_failed", message)
    finally:
        for task in (reading, speaking):
            task.cancel()
        await asyncio.gather(reading, speaking, return_exceptions=True)


async def _read(socket: WebSocket, sentences: asyncio.Queue[str | None], inactivity_s: float,
                settings: list[VoiceSettings | None]) -> None:
    buffer = SentenceBuffer()
    while True:
        message = await _next_message(socket, inactivity_s)
        if message.voice_settings is not None:
            settings[0] = message.voice_settings
        ended = message.text == ""
        ready = buffer.add(message.text or "")
        if message.flush or ended:
            ready += buffer.flush()
        for sentence in ready:
            sentences.put_nowait(sentence)
        if ended:
            sentences.put_nowait(None)
            return


async def _next_message(socket: WebSocket, inactivity_s: float) -> StreamMessage:
    try:
        raw = await asyncio.wait_for(socket.receive_text(), inactivity_s)
    except TimeoutError:
        raise StreamEnded(CLOSE_POLICY, "input_timeout_exceeded",
                          f"no text for {inactivity_s:g} s (inactivity_timeout); send an empty text to end a "
                          "stream") from None
    except KeyError:  # a binary frame: receive_text reads text frames only
        raise StreamEnded(CLOSE_INVALID_DATA, "invalid_message", "messages must be JSON text") from None
    try:
        return parse_stream_message(raw)
    except BadMessage as exc:
        raise StreamEnded(CLOSE_INVALID_DATA, "invalid_message", str(exc)) from None


async def _speak(socket: WebSocket, pipeline: SpeechPipeline, stream: TextStream,
                 sentences: asyncio.Queue[str | None], settings: Callable[[], VoiceSettings | None]) -> None:
    """Speaks each sentence in turn, one encoder for the whole stream (so mp3 frames run on)."""
    encoder = None
    while (sentence := await sentences.get()) is not None:
        try:
            plan = await pipeline.plan(stream.order(sentence, settings()))
        except NothingToSpeak:
            continue
        first, rest = await pipeline.stream(plan)
        encoder = encoder or stream_encoder(stream.fmt, first.sample_rate)
        await _send_audio(socket.send_json, encoder.write(first))
        async with contextlib.aclosing(rest):  # type: ignore[type-var]
            async for chunk in rest:
                await _send_audio(socket.send_json, encoder.write(chunk))
    if encoder is not None:
        await _send_audio(socket.send_json, encoder.finish())


async def _send_audio(send: Callable[[dict[str, object]], Awaitable[None]], data: bytes) -> None:
    if data:
        await send({"audio": base64.b64encode(data).decode("ascii"), "isFinal": None})


async def end_stream(socket: WebSocket, code: int, status: str, message: str) -> None:
    """The error as ElevenLabs sends one (a message with `error`), then the close."""
    _LOGGER.info("text stream ended: %s (%s)", message, status)
    with contextlib.suppress(Exception):
        await socket.send_json({"message": message, "error": status, "code": code})
        await socket.close(code, reason=message[:120])
