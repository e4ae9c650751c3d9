"""Sentences out of text streamed in word by word (speechcore/text/sentence_stream.py)."""

from __future__ import annotations

from speechcore.text.sentence_stream import SentenceBuffer
from speechcore.text.sentences import split_sentences

REPLY = ("The storm came in at dusk. “Close the shutters!” she said. Did anyone listen? "
         "Nobody did… The lamps went out. 灯が消えた。誰も来なかった。 And then")


def test_word_by_word_gives_each_sentence_once_complete_and_as_whole_text_splits():
    buffer, given = SentenceBuffer(), []
    for word in REPLY.split(" "):
        completed = buffer.add(word + " ")
        assert all(sentence in split_sentences(REPLY) for sentence in completed)
        given += completed
    assert given[:3] == ["The storm came in at dusk.", "“Close the shutters!", "she said."]
    assert given + buffer.flush() == split_sentences(REPLY)


def test_a_sentence_is_given_only_once_the_text_after_its_end_mark_comes():
    buffer = SentenceBuffer()
    assert buffer.add("It costs 3.") == []  # 3.50 or the end: the next piece tells
    assert buffer.add("50 dollars. Then") == ["It costs 3.50 dollars."]
    assert buffer.flush() == ["Then"] and buffer.flush() == []


def test_text_without_end_marks_is_given_at_a_space_past_the_limit():
    buffer = SentenceBuffer(max_chars=20)
    assert buffer.add("one two three four") == []
    assert buffer.add(" five six seven") == ["one two three four"]
    assert buffer.add(" " + "x" * 45) == ["five six seven", "x" * 20, "x" * 20]
    assert buffer.flush() == ["x" * 5]
