"""What an endpoint asks the speech pipeline for (SpeechOrder, with its Roles and Narration), the
unit a long text is planned into (Line), and what can be wrong with an order before anything is
spoken."""

from __future__ import annotations

from dataclasses import dataclass


class NothingToSpeak(ValueError):
    """Nothing of the text is left to speak (400)."""


class TextTooLong(ValueError):
    """The text is longer than the server takes (400)."""


class StreamingUnsupported(ValueError):
    """The engine cannot stream (400)."""


class TooManySegments(ValueError):
    """A narrated text splits into more segments than one request may have (400, as a validation error)."""


@dataclass(frozen=True)
class Role:
    """Who speaks a part: the engine voice, and the RVC voice and pitch it is converted with."""

    voice: str
    rvc_voice: str = "Disabled"
    rvc_pitch: float = 0.0


@dataclass(frozen=True)
class Narration:
    """Narrator mode (`true` or `silent`): who speaks the narration, and who the text outside
    quotes and asterisks."""

    mode: str
    narrator: Role
    text_not_inside: str


@dataclass(frozen=True)
class SpeechOrder:
    """What an endpoint asks for. Knobs left None take the engine's defaults (model settings);
    `filtering`: a `text_filtering` mode of the contract (none, standard, html) or `openai` (the
    OpenAI endpoint's processing, §6.2)."""

    text: str
    character: Role
    language: str = "auto"
    engine: str | None = None
    filtering: str = "none"
    narration: Narration | None = None
    speed: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    pitch: float | None = None
    max_characters: int | None = None
    streaming: bool = False
    """The engine must stream (its `streaming_capable`), as the AllTalk streaming endpoint requires."""
    text_field: str = "text"
    """The text's name on the wire, for messages."""


@dataclass(frozen=True)
class Line:
    """One sentence of a long text as its role speaks it: the unit a job synthesizes, retries and
    captions. `role` is `character` or `narrator`."""

    role: str
    text: str
    language: str
    chapter: str | None = None
    """The title of the chapter this line begins (a heading of the text), if it begins one."""
