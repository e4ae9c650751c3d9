"""Sentence splitting for engines that synthesize one sentence at a time."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (or their CJK forms), possibly followed by closing quotes/brackets,
# then whitespace (or, for CJK punctuation, directly).
BOUNDARY = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])")


def split_sentences(text: str) -> list[str]:
    """Non-empty, trimmed sentences in order; text without an end mark is one sentence."""
    return [piece.strip() for piece in BOUNDARY.split(text) if piece and piece.strip()]
