"""Joins a job's finished lines in order into its audio file and captions, at the highest rate
among them (lines differ only with RVC voices of other rates), without holding the whole audio."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from ..audio.encode import AudioEncoder, Chapter, resample
from ..audio.formats import AUDIO_FORMATS
from ..audio.pcm import PcmChunk
from ..audio.wav import write_wav
from ..orders import Line
from .captions import Cue, srt, vtt
from .records import JobRecord
from .store import JobStore

DEFAULT_RATE = 24_000
"""The rate of a job whose lines are all silent."""


def assemble(store: JobStore, record: JobRecord, lines: list[Line]) -> None:
    """Writes `audio.<ext>`, `captions.srt` and `captions.vtt` of the job from its line files."""
    formats = [store.line_format(record.id, i) for i in range(len(lines))]
    rate = max((fmt[0] for fmt in formats if fmt and fmt[1]), default=DEFAULT_RATE)
    audio_format = AUDIO_FORMATS[record.response_format].for_file()
    cues: list[Cue] = []
    chapters = _chapters(lines, [frames * rate / line_rate if frames else 0.0
                                 for line_rate, frames in (fmt or (rate, 0) for fmt in formats)], rate)

    def joined() -> Iterator[PcmChunk]:
        frames = 0
        for index, line in enumerate(lines):
            chunk = store.read_line(record.id, index)
            if not chunk.frames:
                continue
            if chunk.sample_rate != rate:
                chunk = resample([chunk], rate)
            cues.append(Cue(frames / rate, (frames + chunk.frames) / rate, line.text))
            frames += chunk.frames
            yield chunk

    def write(out: BinaryIO) -> None:
        if audio_format.name == "wav":
            write_wav(out, rate, joined())
            return
        encoder = AudioEncoder(audio_format, rate, out=out, chapters=chapters)
        for chunk in joined():
            encoder.write(chunk)
        encoder.finish()

    store.write_result(record.id, f"audio.{audio_format.extension}", write)
    store.write_result(record.id, "captions.srt", lambda out: out.write(srt(cues).encode()))
    store.write_result(record.id, "captions.vtt", lambda out: out.write(vtt(cues).encode()))


def _chapters(lines: list[Line], frames: list[float], rate: int) -> list[Chapter]:
    """A chapter from each line that begins one to the next (the last to the end), timed as the
    lines will be joined (frames at the joined rate)."""
    starts, elapsed = [], 0.0
    for line, line_frames in zip(lines, frames):
        if line.chapter:
            starts.append((elapsed / rate, line.chapter))
        elapsed += line_frames
    ends = [start for start, _title in starts[1:]] + [elapsed / rate]
    return [Chapter(start, end, title) for (start, title), end in zip(starts, ends)]
