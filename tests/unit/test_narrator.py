"""§4.5 segmentation and voice assignment."""

import pytest

from speechcore.text.narrator import Segment, SegmentKind, assign_voices, prepare_narration, split_narration

N, C, A = SegmentKind.NARRATOR, SegmentKind.CHARACTER, SegmentKind.AMBIGUOUS
WIZARD = '*The old wizard gazed at the stars.* "What mysteries do they hold?" *he wondered aloud.*'


def kinds(text):
    return [(s.kind, s.text) for s in split_narration(text)]


def test_the_wizard_example_splits_into_three_segments_in_order():
    assert kinds(WIZARD) == [(N, "The old wizard gazed at the stars."), (C, "What mysteries do they hold?"),
                             (N, "he wondered aloud.")]


def test_text_outside_spans_is_ambiguous_and_empty_pieces_are_dropped():
    assert kinds('Intro text. "Hi there" middle *narr* ') == [
        (A, "Intro text."), (C, "Hi there"), (A, "middle"), (N, "narr")]


def test_a_quote_inside_a_narrator_span_is_a_character_span_and_stray_asterisks_stay():
    assert kinds('*He said "hi" loudly*') == [(A, "*He said"), (C, "hi"), (A, "loudly*")]


def test_curly_quotes_are_not_delimiters():
    assert kinds("“Hello” she said") == [(A, "“Hello” she said")]


def test_preparation_decodes_entities_and_collapses_dot_runs():
    assert prepare_narration("Wait..... &quot;yes&quot; ...") == 'Wait. "yes" .'


def voices(text, mode="true", text_not_inside="character", min_length=3):
    return [(v.voice, v.text) for v in assign_voices(split_narration(text), mode, text_not_inside, "char.onnx",
                                                         "narr.onnx", min_length)]


def test_true_mode_voices_narrator_and_character():
    assert voices(WIZARD) == [("narr.onnx", "The old wizard gazed at the stars."),
                              ("char.onnx", "What mysteries do they hold?"), ("narr.onnx", "he wondered aloud.")]


def test_silent_mode_drops_the_narrator_text_without_adding_silence():
    assert voices(WIZARD, mode="silent") == [("char.onnx", "What mysteries do they hold?")]


@pytest.mark.parametrize("text_not_inside,expected", [("character", ["char.onnx"]), ("narrator", ["narr.onnx"]),
                                                       ("silent", [])])
def test_text_not_inside_places_ambiguous_text(text_not_inside, expected):
    assert [v for v, _ in voices("Plain words outside any span.", text_not_inside=text_not_inside)] == expected


def test_ambiguous_narrator_text_stays_voiced_in_silent_mode():
    assert voices("Outside the spans.", mode="silent", text_not_inside="narrator") == [
        ("narr.onnx", "Outside the spans.")
    ]


def test_short_segments_are_dropped():
    assert voices('"Hi!" *He waved at them.*') == [("narr.onnx", "He waved at them.")]


def test_segments_keep_their_document_index():
    segments = assign_voices(
        [Segment(A, "one two"), Segment(N, "x"), Segment(C, "three four")], "true", "character", "c", "n", 3
    )
    assert [s.index for s in segments] == [0, 2]
