"""Encoding PCM chunks into the API's formats with PyAV (FFmpeg in process, no subprocess).
AudioEncoder is one encoder per response: bytes come out as chunks go in, so encoded audio can
be streamed while the engine still speaks."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from .formats import AudioFormat
from .pcm import PcmChunk
from .wav import streaming_wav_header


class _Sink(io.RawIOBase):
    """A non-seekable output that hands over what the muxer has written so far."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _frame(chunk: PcmChunk) -> av.AudioFrame:
    samples = np.frombuffer(chunk.pcm, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = chunk.sample_rate
    return frame


@dataclass(frozen=True)
class Chapter:
    start_s: float
    end_s: float
    title: str


def _ogg_chapter_comments(chapters: list[Chapter]) -> dict[str, str]:
    """Chapters as Ogg keeps them: CHAPTERnnn / CHAPTERnnnNAME comments (Xiph's chapter extension;
    start times only). Written here rather than by FFmpeg's muxer, which rounds the seconds
    (7.93 s became 00:00:08.930) and writes none into a Vorbis stream."""
    comments = {}
    for number, chapter in enumerate(chapters, start=1):
        ms = round(chapter.start_s * 1000)
        hours, rest = divmod(ms, 3_600_000)
        comments[f"CHAPTER{number:03d}"] = f"{hours:02d}:{rest // 60_000:02d}:{rest // 1000 % 60:02d}.{rest % 1000:03d}"
        comments[f"CHAPTER{number:03d}NAME"] = chapter.title
    return comments


class AudioEncoder:
    """Encodes mono PCM at `input_rate` into `fmt`. With `seekable=False` the output is written
    for streaming (no seeking back to fix headers); with `seekable=True` call `finish()` once and
    get a complete file."""

    def __init__(self, fmt: AudioFormat, input_rate: int, seekable: bool = False, out: BinaryIO | None = None,
                 chapters: list[Chapter] | None = None):
        """`out`: a seekable file to write the whole file into (then `write` and `finish` return
        nothing), for audio too long to hold in memory. `chapters`: written where the container
        keeps them (MP4, MP3's ID3 tags, Ogg), dropped elsewhere."""
        self.fmt = fmt
        self.input_rate = input_rate
        self._out: _Sink | BinaryIO = out or (io.BytesIO() if seekable else _Sink())
        self._container = av.open(self._out, mode="w", format=fmt.container, options=fmt.container_options)
        if chapters and fmt.container != "ogg":
            self._container.set_chapters([
                {"id": number, "start": round(c.start_s * 1000), "end": round(c.end_s * 1000),
                 "time_base": Fraction(1, 1000), "metadata": {"title": c.title}}
                for number, c in enumerate(chapters, start=1)])
        rate = fmt.rate or input_rate
        self._stream = self._container.add_stream(fmt.codec, rate=rate, options=fmt.codec_options)
        if chapters and fmt.container == "ogg":
            self._stream.metadata.update(_ogg_chapter_comments(chapters))
        self._stream.layout = fmt.layout
        if fmt.bit_rate:
            self._stream.bit_rate = fmt.bit_rate
        codec = self._stream.codec_context
        self._resampler = av.AudioResampler(format=codec.format.name, layout=fmt.layout, rate=rate,
                                            frame_size=codec.frame_size or None)

    def _encode(self, frame: av.AudioFrame | None) -> None:
        for resampled in self._resampler.resample(frame):
            for packet in self._stream.encode(resampled):
                self._container.mux(packet)

    def write(self, chunk: PcmChunk) -> bytes:
        """Encodes one chunk; returns the bytes ready to send (often empty for a while)."""
        if chunk.sample_rate != self.input_rate:
            raise ValueError(f"chunk at {chunk.sample_rate} Hz in a {self.input_rate} Hz stream")
        if chunk.frames:
            self._encode(_frame(chunk))
        return self._out.take() if isinstance(self._out, _Sink) else b""

    def finish(self) -> bytes:
        """Flushes the encoder and closes the container; returns the rest (or the whole file)."""
        self._encode(None)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        if isinstance(self._out, _Sink):
            return self._out.take()
        return self._out.getvalue() if isinstance(self._out, io.BytesIO) else b""


def encode_whole(fmt: AudioFormat, chunks: list[PcmChunk]) -> bytes:
    """A complete file in `fmt` (headers with real sizes and durations)."""
    encoder = AudioEncoder(fmt, chunks[0].sample_rate, seekable=True)
    for chunk in chunks:
        encoder.write(chunk)
    return encoder.finish()


class WavStream:
    """A WAV stream of unknown length: the 44-byte header, then raw PCM as it comes (§5.1)."""

    def __init__(self, input_rate: int):
        self.input_rate = input_rate
        self._header: bytes | None = streaming_wav_header(input_rate)

    def write(self, chunk: PcmChunk) -> bytes:
        header, self._header = self._header or b"", None
        return header + chunk.pcm

    def finish(self) -> bytes:
        return self._header or b""


def stream_encoder(fmt: AudioFormat, input_rate: int) -> AudioEncoder | WavStream:
    """The streaming encoder for a response in `fmt`."""
    return WavStream(input_rate) if fmt.name == "wav" else AudioEncoder(fmt, input_rate)


def resample(chunks: Iterable[PcmChunk], rate: int) -> PcmChunk:
    """All chunks (any rates) joined into one mono chunk at `rate`, with FFmpeg's resampler."""
    parts: list[bytes] = []
    for chunk in chunks:
        if chunk.sample_rate == rate:
            parts.append(chunk.pcm)
            continue
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in [*resampler.resample(_frame(chunk)), *resampler.resample(None)]:
            parts.append(frame.to_ndarray().astype("<i2").tobytes())
    return PcmChunk(b"".join(parts), rate)


def decoded_duration(path: str) -> float:
    """Seconds of audio in a file of any supported format, by decoding it."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


class AudioTooLong(ValueError):
    """A file holds more audio than its reader takes."""


def decode_mono(path: str, rate: int | None = None, max_seconds: float | None = None) -> PcmChunk:
    """A whole audio file (any supported format) as one mono 16-bit chunk at `rate` (its own by
    default). Past `max_seconds` of audio it stops reading and raises AudioTooLong."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        rate = rate or stream.rate
        limit = None if max_seconds is None else int(max_seconds * rate)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        parts, frames = [], 0
        for frame in _decoded(container, stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().astype("<i2").tobytes())
                frames += out.samples
            if limit is not None and frames > limit:
                raise AudioTooLong(f"more than {max_seconds:g} s of audio")
        return PcmChunk(b"".join(parts), rate)


def _decoded(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame | None]:
    """The stream's frames one by one, then None (flushes the resampler)."""
    yield from container.decode(stream)
    yield None
