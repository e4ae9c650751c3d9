"""The `text_filtering` modes of `/api/tts-generate` (none, standard, html), as AllTalk applies them."""

from __future__ import annotations

import html
import re

FILTER_MODES = ("none", "standard", "html")

_REPEATED_PUNCTUATION = re.compile(r"([!?.])\1+")
_NEWLINE_RUNS = re.compile(r"\n+")
_ASTERISK_RUNS = re.compile(r"\*{1,3}")


def standard_filter(text: str, allowed_filter: re.Pattern[str]) -> str:
    """Collapse repeated `! ? .`, delete what `allowed_filter` matches, newlines to one space.
    HTML entities are not decoded here (`&amp;` becomes `amp;`), as in AllTalk."""
    text = _REPEATED_PUNCTUATION.sub(r"\1", text)
    text = allowed_filter.sub("", text)
    return _NEWLINE_RUNS.sub(" ", text)


def html_prefilter(text: str) -> str:
    """The html mode's first steps: drop markdown emphasis, halve blank lines, decode entities."""
    text = _ASTERISK_RUNS.sub("", text)
    text = text.replace("\n\n", "\n").replace("&#x27;", "'")
    return html.unescape(text)


def filter_text(text: str, mode: str, allowed_filter: re.Pattern[str]) -> str:
    """Applies one of FILTER_MODES; `none` leaves the text untouched."""
    if mode == "none":
        return text
    if mode == "html":
        text = html_prefilter(text)
    elif mode != "standard":
        raise ValueError(f"unknown text filtering mode {mode!r}")
    return standard_filter(text, allowed_filter)


def has_speech(text: str) -> bool:
    """Whether anything in `text` can be spoken: a letter or a digit of any script (whitespace,
    punctuation and invisible characters alone make an engine produce no audio)."""
    return any(ch.isalnum() for ch in text)
