"""Paragraphs of a long text, and which of them are headings (where a chapter begins)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_NOT_A_HEADING_END = tuple('.!?…,;:"\'”’»)')
MAX_HEADING_CHARACTERS = 80


@dataclass(frozen=True)
class Paragraph:
    text: str
    heading: bool
    """A line of its own, short, that does not end as a sentence does ("Chapter One", "II. The Storm")."""


def split_paragraphs(text: str) -> list[Paragraph]:
    """Non-empty paragraphs in order (separated by blank lines), each marked heading or not."""
    found = []
    for block in _BLANK_LINE.split(text.replace("\r\n", "\n")):
        stripped = block.strip()
        if not stripped:
            continue
        heading = ("\n" not in stripped and len(stripped) <= MAX_HEADING_CHARACTERS
                   and not stripped.endswith(_NOT_A_HEADING_END) and any(c.isalnum() for c in stripped))
        found.append(Paragraph(stripped, heading))
    return found
