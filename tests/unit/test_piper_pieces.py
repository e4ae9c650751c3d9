"""Where engines.piper_pieces cuts a sentence's phonemes (plain lists: no model, no espeak)."""

import pytest

from engines.piper_pieces import bounded_pieces


def phonemes(text: str) -> list[str]:
    return list(text)


def joined(pieces: list[list[str]]) -> list[str]:
    return ["".join(piece) for piece in pieces]


def test_a_sentence_within_the_limit_is_one_piece():
    assert joined(bounded_pieces(phonemes("short one."), 20)) == ["short one."]
    assert bounded_pieces([], 20) == []


def test_a_long_sentence_ends_its_pieces_after_a_clause_mark_in_the_second_half():
    text = "aaaa bbbb, cccc dddd eeee; ffff gggg."
    assert joined(bounded_pieces(phonemes(text), 16)) == ["aaaa bbbb,", "cccc dddd eeee;", "ffff gggg."]


def test_a_clause_mark_too_early_loses_to_the_last_word_break():
    text = "a, bbbb cccc dddd eeee ffff"
    assert joined(bounded_pieces(phonemes(text), 12)) == ["a, bbbb cccc", "dddd eeee", "ffff"]


def test_a_word_longer_than_the_limit_is_cut_at_the_limit():
    assert joined(bounded_pieces(phonemes("abcdefghijkl mn"), 5)) == ["abcde", "fghij", "kl mn"]


@pytest.mark.parametrize("limit", [1, 3, 7, 20])
def test_no_piece_is_longer_than_the_limit_or_empty_and_nothing_but_breaks_is_lost(limit):
    text = "the quick, brown fox; jumps over: the lazy dog   and keeps running"
    pieces = bounded_pieces(phonemes(text), limit)
    assert all(0 < len(piece) <= limit for piece in pieces)
    assert "".join(joined(pieces)).replace(" ", "") == text.replace(" ", "")


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        bounded_pieces(phonemes("abc"), 0)
