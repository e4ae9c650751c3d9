"""Cutting a sentence's phonemes into pieces no longer than one Piper model run may take.

A Piper run's memory grows with the length of what it speaks, and onnxruntime's arena keeps the most
a run ever needed for the life of the process; so the engine never hands the model more than a set
number of phonemes. A piece ends, in order of preference, after a clause mark (where a speaker would
pause anyway), between words, or (a single "word" longer than the limit) at the limit itself."""

from __future__ import annotations

CLAUSE_MARKS = frozenset(",;:—–")
WORD_BREAK = " "


def bounded_pieces(phonemes: list[str], limit: int) -> list[list[str]]:
    """The phonemes of one sentence as pieces of at most `limit` phonemes, in order, none empty."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    pieces: list[list[str]] = []
    rest = phonemes
    while len(rest) > limit:
        end = _cut(rest, limit)
        piece = rest[:end]
        rest = rest[end:]
        while rest and rest[0] == WORD_BREAK:
            rest = rest[1:]
        while piece and piece[-1] == WORD_BREAK:
            piece = piece[:-1]
        if piece:
            pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


def _cut(phonemes: list[str], limit: int) -> int:
    """Where the first piece ends (`phonemes` is longer than `limit`): after the last clause mark in
    the second half of the first `limit`, else at the last word break, else at the limit."""
    for at in range(limit - 1, limit // 2 - 1, -1):
        if phonemes[at] in CLAUSE_MARKS:
            return at + 1
    for at in range(limit, 0, -1):  # a break just past the window still ends a full piece
        if phonemes[at] == WORD_BREAK:
            return at
    return limit
