"""SpeechPipeline: the one path from "speak this" to audio, for every endpoint that speaks.

An endpoint decodes its wire format into a SpeechOrder (its own defaults stated there), the
pipeline plans it once (engine, voices, language, the text after filtering and narrator
splitting, knobs, RVC) into a SpeechPlan, then renders the plan into audio or streams it, and
the endpoint encodes the answer. Everything wrong with an order is raised as a domain error
while planning, before any synthesis; the API layer maps those errors to statuses and bodies."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .audio.encode import resample
from .audio.pcm import PcmChunk
from .config.store import SettingsStore
from .engine_directory import EngineDirectory
from .engine_types import EngineInfo, SynthesisRequest, UnknownVoice
from .orders import Line, NothingToSpeak, Role, SpeechOrder, StreamingUnsupported, TextTooLong, TooManySegments
from .safe_paths import unsafe_reason
from .synthesis import AudioSource, SynthesisRunner
from .text.filtering import filter_text, has_speech, html_prefilter
from .text.language import LanguageDetectorService, LanguageNotDetected
from .text.narrator import VoicedSegment, assign_voices, prepare_narration, split_narration
from .text.paragraphs import split_paragraphs
from .text.sentences import split_sentences
from .voice_conversion import VoiceConversion

NARRATOR_RATE = 44_100
"""Narrated audio is joined at this rate (segments may come at different rates after RVC)."""


class NoAudio(RuntimeError):
    """The engine finished without producing any audio (500)."""


@dataclass(frozen=True)
class Part:
    source: AudioSource
    request: SynthesisRequest


@dataclass(frozen=True)
class SpeechPlan:
    engine: EngineInfo
    parts: list[Part]
    join_rate: int | None = None
    """Narrated parts are joined into one chunk at this rate; None: one part, chunks as they come."""

    @property
    def characters(self) -> int:
        return sum(len(part.request.text) for part in self.parts)


class SpeechPipeline:
    def __init__(self, engines: EngineDirectory, conversion: VoiceConversion, runner: SynthesisRunner,
                 settings: SettingsStore, detector: LanguageDetectorService, narrator_concurrency: int = 4,
                 max_narrator_segments: int = 200):
        self.engines = engines
        self.conversion = conversion
        self.runner = runner
        self.settings = settings
        self.detector = detector
        self.narrator_concurrency = narrator_concurrency
        self.max_narrator_segments = max_narrator_segments

    # ----- planning

    async def plan(self, order: SpeechOrder) -> SpeechPlan:
        info = await self.engines.info(order.engine)
        if order.streaming and not info.capabilities.streaming:
            raise StreamingUnsupported("Streaming not supported by current TTS engine")
        if order.max_characters is not None and len(order.text) > order.max_characters:
            raise TextTooLong(f"{order.text_field} must be at most {order.max_characters} characters long "
                              f"(got {len(order.text)})")
        if order.narration is None:
            return SpeechPlan(info, [await self._standard_part(info, order)])
        return SpeechPlan(info, await self._narrated_parts(info, order), join_rate=NARRATOR_RATE)

    async def _standard_part(self, info: EngineInfo, order: SpeechOrder) -> Part:
        text = self._filtered(order.text, order.filtering)
        if not has_speech(text):
            raise NothingToSpeak(f"{order.text_field} has nothing to speak" if order.filtering in ("none", "openai")
                                 else f"{order.text_field} has nothing left to speak after text filtering")
        source = self._source(info, order.character)
        self._check_voice(info, order.character.voice)
        return Part(source, self._request(info, order, text, order.character.voice, await self._language(order, text)))

    async def _narrated_parts(self, info: EngineInfo, order: SpeechOrder) -> list[Part]:
        """Segments in document order, each with its role's voice and RVC; silent segments, empty
        ones and those whose language cannot be detected are left out (as AllTalk)."""
        sources = {role: self._source(info, who) for role, who in self._roles(order).items()}
        segments = self._narrator_segments(order, order.text)
        if len(segments) > self.max_narrator_segments:
            raise TooManySegments(f"{order.text_field} splits into {len(segments)} narrator segments; at most "
                                  f"{self.max_narrator_segments} are allowed per request")
        parts = []
        for segment in segments:
            if (spoken := await self._spoken(order, segment.text)) is None:
                continue
            text, language = spoken
            self._check_voice(info, segment.voice)
            parts.append(Part(sources[segment.role], self._request(info, order, text, segment.voice, language)))
        if not parts:
            raise NothingToSpeak("Narrator mode found nothing to speak: every segment was silent, at most "
                                 f"{self.settings.config.api_def.api_length_stripping} characters long, or empty "
                                 "after filtering")
        return parts

    def _narrator_segments(self, order: SpeechOrder, text: str) -> list[VoicedSegment]:
        """The spoken segments of a narrated text, with their roles' voices (§4.5)."""
        narration = order.narration
        assert narration is not None
        return assign_voices(split_narration(prepare_narration(text)), narration.mode, narration.text_not_inside,
                             order.character.voice, narration.narrator.voice,
                             self.settings.config.api_def.api_length_stripping)

    async def _spoken(self, order: SpeechOrder, text: str) -> tuple[str, str] | None:
        """A segment's text after filtering and its language; None when nothing of it is spoken
        (empty after filtering, or a language that cannot be detected: left out, as AllTalk)."""
        text = self._filtered(text, order.filtering)
        if not has_speech(text):
            return None
        try:
            return text, await self._language(order, text)
        except LanguageNotDetected:
            return None

    # ----- long texts, planned line by line (jobs)

    async def check(self, order: SpeechOrder) -> EngineInfo:
        """Everything about the order but its text (engine, voices, RVC), at the cost of a status
        call: for work whose text is planned later."""
        info = await self.engines.info(order.engine)
        for role in self._roles(order).values():
            self._source(info, role)
            self._check_voice(info, role.voice)
        return info

    async def lines(self, order: SpeechOrder) -> list[Line]:
        """The order's text as sentences in document order with their roles, paragraph by
        paragraph: narrator segments as `plan` splits and voices them, each segment's sentences in
        its role; filtered, language resolved once per segment, and what has nothing to speak left
        out. A heading's first line carries the chapter title. Empty when nothing is spoken."""
        lines: list[Line] = []
        for paragraph in split_paragraphs(order.text):
            first = len(lines)
            lines += await self._lines_of(order, paragraph.text)
            if paragraph.heading and len(lines) > first:
                lines[first] = dataclasses.replace(lines[first], chapter=" ".join(paragraph.text.split()))
        return lines

    async def _lines_of(self, order: SpeechOrder, text: str) -> list[Line]:
        pieces = [("character", text)] if order.narration is None else \
            [(s.role, s.text) for s in self._narrator_segments(order, text)]
        lines = []
        for role, piece in pieces:
            if (spoken := await self._spoken(order, piece)) is None:
                continue
            said, language = spoken
            lines += [Line(role, sentence, language) for sentence in split_sentences(said) if has_speech(sentence)]
        return lines

    def part(self, info: EngineInfo, order: SpeechOrder, line: Line, background: bool = False) -> Part:
        """How one line is synthesized; `background` lets an engine's interactive requests go first."""
        role = self._roles(order)[line.role]
        request = self._request(info, order, line.text, role.voice, line.language)
        return Part(self._source(info, role), dataclasses.replace(request, background=background))

    @staticmethod
    def _roles(order: SpeechOrder) -> dict[str, Role]:
        roles = {"character": order.character}
        if order.narration is not None:
            roles["narrator"] = order.narration.narrator
        return roles

    def _filtered(self, text: str, filtering: str) -> str:
        if filtering == "none":
            return text
        if filtering == "openai":
            return html_prefilter(text)
        return filter_text(text, filtering, self.settings.config.api_def.allowed_filter)

    def _source(self, info: EngineInfo, role: Role) -> AudioSource:
        conversion = self.conversion.request(role.rvc_voice, role.rvc_pitch)
        return self.conversion.source(self.engines.client(info.engine), info.engine, conversion)

    @staticmethod
    def _check_voice(info: EngineInfo, voice: str) -> None:
        reason = unsafe_reason(voice)
        if reason or voice not in info.voices:
            why = f"it {reason}" if reason else "see /api/voices"
            raise UnknownVoice(f"Voice {voice!r} is not a voice of the {info.engine} engine ({why})")

    async def _language(self, order: SpeechOrder, text: str) -> str:
        if order.language != "auto":
            return order.language
        return await asyncio.to_thread(self.detector.detect, text)

    def _request(self, info: EngineInfo, order: SpeechOrder, text: str, voice: str, language: str) -> SynthesisRequest:
        defaults = self.engines.model_settings(info).settings

        def pick(value: float | None, default: float) -> float:
            return default if value is None else value

        return SynthesisRequest(text=text, voice=voice, language=language,
                                speed=pick(order.speed, defaults.generationspeed_set),
                                temperature=pick(order.temperature, defaults.temperature_set),
                                repetition_penalty=pick(order.repetition_penalty, defaults.repetitionpenalty_set),
                                pitch=pick(order.pitch, defaults.pitch_set))

    # ----- rendering and streaming

    async def render(self, plan: SpeechPlan) -> list[PcmChunk]:
        """The whole audio of the plan; parts are synthesized concurrently (spread over the
        engine's replicas) and joined in order. NoAudio when the engine produced none."""
        engine = plan.engine.engine
        if plan.join_rate is None:
            chunks = await self.runner.collect(plan.parts[0].source, plan.parts[0].request, engine)
        else:
            results = await self.runner.collect_many([(p.source, p.request) for p in plan.parts], engine,
                                                     self.narrator_concurrency)
            chunks = [chunk for result in results for chunk in result]
            chunks = [await asyncio.to_thread(resample, chunks, plan.join_rate)] if chunks else []
        if not any(chunk.frames for chunk in chunks):
            raise NoAudio("the engine produced no audio")
        return chunks

    async def stream(self, plan: SpeechPlan) -> tuple[PcmChunk, AsyncIterator[PcmChunk]]:
        """The first chunk (errors before any audio are raised here, so the answer can still have
        their status) and the rest of the stream. A plan of one part only."""
        if plan.join_rate is not None:
            raise ValueError("narrated plans are rendered whole, not streamed")
        part = plan.parts[0]
        chunks = self.runner.stream(part.source, part.request, plan.engine.engine)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise NoAudio("the engine produced no audio") from None
        except BaseException:
            await chunks.aclose()  # type: ignore[attr-defined]
            raise
        return first, chunks
