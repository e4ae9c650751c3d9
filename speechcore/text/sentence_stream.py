"""Sentences out of text that arrives in pieces (an LLM's reply streamed in): each is given out as
soon as the text after it shows it is complete, split where split_sentences splits whole texts."""

from __future__ import annotations

from .sentences import BOUNDARY, split_sentences


class SentenceBuffer:
    """Text added piece by piece; `add` answers the sentences it completed, `flush` what is left.
    A run of text with no end mark is given out at a space once it passes `max_chars`, so that a
    reply without punctuation is still spoken while it comes."""

    def __init__(self, max_chars: int = 300):
        self.max_chars = max_chars
        self._text = ""

    def add(self, text: str) -> list[str]:
        self._text += text
        done = max((match.end() for match in BOUNDARY.finditer(self._text)), default=0)
        sentences = split_sentences(self._text[:done])
        while len(self._text) - done > self.max_chars:
            space = self._text.rfind(" ", done, done + self.max_chars)
            cut = space + 1 if space > done else done + self.max_chars
            sentences += split_sentences(self._text[done:cut])
            done = cut
        self._text = self._text[done:]
        return sentences

    def flush(self) -> list[str]:
        left, self._text = self._text, ""
        return split_sentences(left)
