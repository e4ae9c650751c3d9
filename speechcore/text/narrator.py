"""Narrator mode segmentation (§4.5): `*narrator*` spans, `"character"` spans, and the text
between them, in document order, with the voice each one is spoken in."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from enum import Enum

_SPANS = re.compile(r'\*([^*"]+)\*|"([^"*]+)"')
_DOT_RUNS = re.compile(r"\.{3,}")


class SegmentKind(str, Enum):
    NARRATOR = "narrator"
    CHARACTER = "character"
    AMBIGUOUS = "ambiguous"  # text outside both kinds of span: `text_not_inside` decides


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    text: str


@dataclass(frozen=True)
class VoicedSegment:
    """A segment to speak: its text, voice, and which RVC settings apply (character or narrator)."""

    index: int
    text: str
    voice: str
    role: str  # "character" or "narrator"


def prepare_narration(text: str) -> str:
    """Decodes HTML entities and turns runs of three or more dots into one, before segmenting."""
    return _DOT_RUNS.sub(".", html.unescape(text))


def split_narration(text: str) -> list[Segment]:
    """Segments in document order; delimiters removed, each trimmed, empty ambiguous pieces
    dropped. Curly quotes are not delimiters; a quote inside a narrator span splits it (as AllTalk)."""
    segments: list[Segment] = []

    def ambiguous(piece: str) -> None:
        if piece.strip():
            segments.append(Segment(SegmentKind.AMBIGUOUS, piece.strip()))

    position = 0
    for match in _SPANS.finditer(text):
        ambiguous(text[position:match.start()])
        narrator, character = match.groups()
        if narrator is not None:
            segments.append(Segment(SegmentKind.NARRATOR, narrator.strip()))
        else:
            segments.append(Segment(SegmentKind.CHARACTER, character.strip()))
        position = match.end()
    ambiguous(text[position:])
    return segments


def assign_voices(segments: list[Segment], mode: str, text_not_inside: str, character_voice: str,
                  narrator_voice: str, min_length: int) -> list[VoicedSegment]:
    """The segments that are spoken, with their voices (§4.5 table). `mode` is `true` or `silent`
    (narrator text is dropped); `text_not_inside` places text outside spans. Segments whose
    trimmed length is at most `min_length` are dropped."""
    voiced = []
    for index, segment in enumerate(segments):
        if len(segment.text.strip()) <= min_length:
            continue
        role = segment.kind.value if segment.kind is not SegmentKind.AMBIGUOUS else text_not_inside
        if role == "silent" or (role == "narrator" and segment.kind is SegmentKind.NARRATOR and mode == "silent"):
            continue
        voice = narrator_voice if role == "narrator" else character_voice
        voiced.append(VoicedSegment(index, segment.text, voice, role))
    return voiced
