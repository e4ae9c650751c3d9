"""Captions of a job's audio: one cue per line (sentence), as SubRip (.srt) and WebVTT (.vtt)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def _stamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def _one_line(text: str) -> str:
    """Cue text on one line: a blank line would end the cue early in both formats."""
    return " ".join(text.split()).replace("-->", "->")


def srt(cues: list[Cue]) -> str:
    return "".join(f"{number}\n{_stamp(cue.start_s, ',')} --> {_stamp(cue.end_s, ',')}\n{_one_line(cue.text)}\n\n"
                   for number, cue in enumerate(cues, start=1))


def vtt(cues: list[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_stamp(cue.start_s, '.')} --> {_stamp(cue.end_s, '.')}\n{_one_line(cue.text)}\n\n"
                                  for cue in cues)
