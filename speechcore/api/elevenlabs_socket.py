"""ElevenLabs' "input streaming" over a WebSocket: text comes in piece by piece (an LLM's reply as
it is written) and each sentence is spoken as soon as it is complete, in order, while later text
is still arriving. Audio goes back as base64 `audio` messages, then `{"isFinal": true}`, and the
server closes the socket. Alignment is not sent (no engine here gives character timings).

Reading and speaking are two tasks joined by a bounded queue of sentences: a client that sends
text faster than it is spoken waits for room (the socket pushes back), and a session that ends,
however it ends, stops both before its last message, so that no audio follows an error."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..audio.encode import stream_encoder
from ..audio.formats import AudioFormat
from ..orders import NothingToSpeak, SpeechOrder
from ..pipeline import SpeechPipeline
from ..text.language import LanguageNotDetected
from ..text.sentence_stream import SentenceBuffer
from .contract_error import ContractError
from .elevenlabs_wire import (
    MAX_MESSAGE_BYTES,
    MAX_QUEUED_SENTENCES,
    MAX_SENTENCE_CHARACTERS,
    BadMessage,
    StreamMessage,
    VoiceSettings,
    parse_stream_message,
)
from .errors import error_status

_LOGGER = logging.getLogger(__name__)

CLOSE_NORMAL, CLOSE_INVALID_DATA, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_ERROR = 1000, 1007, 1008, 1009, 1011
MAX_CLOSE_REASON_BYTES = 123
"""What a close frame's reason may hold (RFC 6455)."""


class StreamEnded(Exception):
    """The text stream ends with an error message to the client and this close code."""

    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class TextStream:
    """What one stream speaks: `order(sentence, settings, language)` makes the order of one
    sentence (language None: the stream's own, or detected); `stopping()` says the server is
    stopping (no more text is taken; what was taken is spoken)."""

    fmt: AudioFormat
    order: Callable[[str, VoiceSettings | None, str | None], SpeechOrder]
    inactivity_s: float
    stopping: Callable[[], bool]


class _Session:
    """What the reading and speaking tasks of one stream share."""

    def __init__(self) -> None:
        self.sentences: asyncio.Queue[str | None] = asyncio.Queue(MAX_QUEUED_SENTENCES)
        self.settings: VoiceSettings | None = None
        self.speaking = False


async def speak_text_stream(socket: WebSocket, pipeline: SpeechPipeline, stream: TextStream) -> None:
    """Reads the socket's messages and speaks their sentences until an empty text ends the stream;
    a client that goes away ends the synthesis under way (its stream is closed). An error ends the
    stream with an error message and a close code."""
    session = _Session()
    reading = asyncio.create_task(_read(socket, session, stream))
    speaking = asyncio.create_task(_speak(socket, pipeline, stream, session))
    ending: tuple[int, str, str] | None = None
    try:
        await asyncio.wait({reading, speaking}, return_when=asyncio.FIRST_EXCEPTION)
        if reading.done():
            reading.result()  # an error in the text stream ends it at once
        await speaking
    except StreamEnded as ended:
        ending = (ended.code, ended.status, str(ended))
    except (WebSocketDisconnect, OSError):
        _LOGGER.info("the client of a text stream went away")
        return
    except Exception as exc:  # the engine's or the pipeline's, as the HTTP routes would answer it
        ending = stream_failure(exc, "speech_failed")
    finally:
        for task in (reading, speaking):
            task.cancel()
        await asyncio.gather(reading, speaking, return_exceptions=True)
    if ending is not None:
        await end_stream(socket, *ending)
        return
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.send_json({"isFinal": True})
        await socket.close(CLOSE_NORMAL)


def stream_failure(exc: Exception, kind: str) -> tuple[int, str, str]:
    """The close code, error kind and message that end a stream on `exc`: an ElevenLabs-shaped
    refusal as it says, any other error as the HTTP routes would answer it (`kind`)."""
    if isinstance(exc, ContractError):
        detail = exc.body["detail"]
        return CLOSE_POLICY, detail["status"], detail["message"]
    status, message = error_status(exc)
    if status >= 500:
        _LOGGER.error("text stream failed: %s", message, exc_info=exc)
    return (CLOSE_POLICY if status < 500 else CLOSE_ERROR), kind, message


async def _read(socket: WebSocket, session: _Session, stream: TextStream) -> None:
    buffer = SentenceBuffer(MAX_SENTENCE_CHARACTERS)
    while True:
        message = await _next_message(socket, session, stream.inactivity_s)
        if message.voice_settings is not None:
            session.settings = message.voice_settings
        ended = message.text == "" or stream.stopping()
        ready = buffer.add(message.text or "")
        if message.flush or ended:
            ready += buffer.flush()
        for sentence in ready:
            await session.sentences.put(sentence)
        if ended:
            await session.sentences.put(None)
            return


async def _next_message(socket: WebSocket, session: _Session, inactivity_s: float) -> StreamMessage:
    """The next message; the client's silence counts only while nothing of its text is left to
    speak."""
    receiving = asyncio.ensure_future(socket.receive_text())
    try:
        while True:
            done, _ = await asyncio.wait({receiving}, timeout=inactivity_s)
            if done:
                break
            if not (session.speaking or session.sentences.qsize()):
                raise StreamEnded(CLOSE_POLICY, "input_timeout_exceeded",
                                  f"no text for {inactivity_s:g} s (inactivity_timeout); send an empty text to "
                                  "end a stream")
        raw = receiving.result()
    except KeyError:  # a binary frame: receive_text reads text frames only
        raise StreamEnded(CLOSE_INVALID_DATA, "invalid_message", "messages must be JSON text") from None
    finally:
        receiving.cancel()
    if len(raw) > MAX_MESSAGE_BYTES:  # before parsing: a huge frame costs nothing more than its reading
        raise StreamEnded(CLOSE_TOO_BIG, "message_too_big", f"a message may have at most {MAX_MESSAGE_BYTES} "
                          "characters")
    try:
        return parse_stream_message(raw)
    except BadMessage as exc:
        raise StreamEnded(CLOSE_INVALID_DATA, "invalid_message", str(exc)) from None


async def _speak(socket: WebSocket, pipeline: SpeechPipeline, stream: TextStream, session: _Session) -> None:
    """Speaks each sentence in turn, one encoder for the whole stream (so mp3 frames run on). A
    sentence whose language cannot be told (a number, a short interjection) is spoken in the last
    sentence's language."""
    encoder, language = None, None
    while (sentence := await session.sentences.get()) is not None:
        session.speaking = True
        try:
            try:
                plan = await pipeline.plan(stream.order(sentence, session.settings, None))
            except LanguageNotDetected:
                plan = await pipeline.plan(stream.order(sentence, session.settings, language or "en"))
        except NothingToSpeak:
            session.speaking = False
            continue
        language = plan.parts[0].request.language
        first, rest = await pipeline.stream(plan)
        async with contextlib.aclosing(rest):  # type: ignore[type-var]
            encoder = encoder or stream_encoder(stream.fmt, first.sample_rate)
            await _send_audio(socket, encoder.write(first))
            async for chunk in rest:
                await _send_audio(socket, encoder.write(chunk))
        session.speaking = False
    if encoder is not None:
        await _send_audio(socket, encoder.finish())


async def _send_audio(socket: WebSocket, data: bytes) -> None:
    if data:
        await socket.send_json({"audio": base64.b64encode(data).decode("ascii"), "isFinal": None})


async def end_stream(socket: WebSocket, code: int, status: str, message: str) -> None:
    """The error as ElevenLabs sends one (a message with `error`), then the close."""
    _LOGGER.info("text stream ended: %s (%s)", message, status)
    reason = message.encode()[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.send_json({"message": message, "error": status, "code": code})
        await socket.close(code, reason=reason)
