"""Speech generation behind `/api/tts-generate` (standard and narrator mode, §4), voice previews
(§6B.1) and the AllTalk streaming endpoints (§5)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from .audio.encode import encode_whole, resample
from .audio.formats import AUDIO_FORMATS, AudioFormat
from .audio.pcm import PcmChunk
from .audio.wav import write_wav
from .cancellation import GenerationStopped
from .contract import GenerateForm, GenerateParams, merge_defaults, text_length_problem, validate_generate
from .conversion import ConversionRequest, InvalidConversion, RvcModelMissing, RvcUnavailable, VoiceConversionError
from .engine_client import EngineTimeout, EngineUnavailable
from .engine_types import EngineError, EngineInfo, SynthesisRequest, UnknownVoice, UnsupportedLanguage
from .errors import ContractError
from .safe_paths import unsafe_reason
from .service import SpeechService
from .storage import SAFE_FILENAME
from .streaming import NoAudio, encode_stream, start_stream
from .text.filtering import filter_text, has_speech
from .text.language import LanguageNotDetected
from .text.narrator import assign_voices, prepare_narration, split_narration

NARRATOR_RATE = 44_100
ErrorShape = Callable[[int, str], ContractError]


def generate_failure(status: int, message: str) -> ContractError:
    return ContractError.generate_failure(status, message)


def invalid_value(status: int, message: str) -> ContractError:
    prefix = {400: "Invalid value: ", 404: "File not found: "}.get(status, "")
    return ContractError(status, {"error": prefix + message})


def detail(status: int, message: str) -> ContractError:
    return ContractError(status, {"detail": message})


@contextlib.contextmanager
def engine_errors(shape: ErrorShape) -> Iterator[None]:
    """Maps what synthesis can raise onto the endpoint's error shape."""
    try:
        yield
    except GenerationStopped as exc:
        raise shape(409, "Generation was stopped by /api/stop-generation") from exc
    except (UnknownVoice, UnsupportedLanguage, LanguageNotDetected, InvalidConversion) as exc:
        raise shape(400, str(exc)) from exc
    except RvcModelMissing as exc:
        raise shape(404, str(exc)) from exc
    except EngineTimeout as exc:
        raise shape(504, str(exc)) from exc
    except (EngineUnavailable, RvcUnavailable) as exc:
        error = shape(503, str(exc))
        error.headers["Retry-After"] = "2"
        raise error from exc
    except VoiceConversionError as exc:
        raise shape(500, f"RVC conversion failed: {exc}") from exc
    except (EngineError, NoAudio) as exc:
        raise shape(500, f"TTS generation failed: {exc}") from exc


def preview_text(voice: str) -> str:
    """The fixed preview sentence, naming the voice as AllTalk cleans it."""
    name = voice.replace(" ", "_").removesuffix(".wav")
    return f"Hello, this is a preview of the voice {re.sub(r'[^A-Za-z0-9]', ' ', name)}."


class GenerationService:
    def __init__(self, hub: SpeechService, max_narrator_segments: int = 200):
        self.hub = hub
        self.max_narrator_segments = max_narrator_segments

    # ----- shared steps

    def _check_voice(self, info: EngineInfo, voice: str, shape: ErrorShape) -> None:
        reason = unsafe_reason(voice)
        if reason or voice not in info.voices:
            why = f"it {reason}" if reason else "see /api/voices"
            raise shape(400, f"Voice {voice!r} is not a voice of the {info.engine} engine ({why})")

    async def _language(self, language: str, text: str) -> str:
        if language != "auto":
            return language
        return await asyncio.to_thread(self.hub.detector.detect, text)

    def _transcode_format(self) -> AudioFormat | None:
        name = self.hub.settings.config.transcode_audio_format.lower()
        return None if name in ("disabled", "wav") else AUDIO_FORMATS[name]

    def _write(self, chunks: list[PcmChunk], fmt: AudioFormat | None, base: str, timestamp: bool,
               suffix: str = "") -> Path:
        if not chunks or not any(chunk.frames for chunk in chunks):
            raise generate_failure(500, "TTS generation failed: the engine produced no audio")
        if fmt is None:
            rate = chunks[0].sample_rate
            return self.hub.outputs().write_new(base, "wav", timestamp, lambda out: write_wav(out, rate, chunks), suffix)
        data = encode_whole(fmt, chunks)
        return self.hub.outputs().write_new(base, fmt.extension, timestamp, lambda out: out.write(data), suffix)

    def _urls(self, name: str) -> dict[str, str]:
        api = self.hub.settings.config.api_def
        prefix = f"http://{api.api_legacy_ip_address}:{api.api_port_number}" if api.api_use_legacy_api else ""
        return {"output_file_url": f"{prefix}/audio/{name}", "output_cache_url": f"{prefix}/audiocache/{name}"}

    @staticmethod
    def _request(text: str, voice: str, language: str, params: GenerateParams) -> SynthesisRequest:
        return SynthesisRequest(text=text, voice=voice, language=language, speed=params.speed,
                                temperature=params.temperature, repetition_penalty=params.repetition_penalty,
                                pitch=params.pitch)

    # ----- /api/tts-generate

    async def _prepare(self, form: GenerateForm) -> tuple[EngineInfo, GenerateParams]:
        """Defaults merged and every field validated (all failures reported together)."""
        info = await self.hub.info(form.engine)
        config = self.hub.settings.config
        params = merge_defaults(form, config.api_def, config.rvc_settings, self.hub.model_settings(info).settings)
        problems = validate_generate(params, config.api_def.api_max_characters)
        if problems:
            raise ContractError(400, {"error": "\n".join(problems)})
        return info, params

    async def generate(self, form: GenerateForm) -> dict[str, object]:
        info, params = await self._prepare(form)
        with engine_errors(generate_failure):
            if params.narrator_enabled == "false":
                chunks, suffix = await self._standard(info, params), ""
            else:
                chunks, suffix = await self._narrated(info, params), "_combined"
        path = await asyncio.to_thread(self._write, chunks, self._transcode_format(), params.output_file_name,
                                       params.output_file_timestamp, suffix)
        return {"status": "generate-success", "output_file_path": str(path), **self._urls(path.name)}

    async def generate_stream(self, form: GenerateForm) -> AsyncIterator[bytes]:
        """`streaming=true`: the standard-mode request (filtering, speed, ...) answered as the
        streaming endpoint's WAV stream instead of a file. Narrator mode is not streamed."""
        info, params = await self._prepare(form)
        if params.narrator_enabled != "false":
            raise generate_failure(400, "streaming=true works in standard mode only; send narrator_enabled=false "
                                        "or leave streaming out")
        with engine_errors(generate_failure):
            source = self.hub.source(info.engine, self._character_conversion(params))
            request = await self._standard_request(info, params)
            first, rest = await start_stream(self.hub.runner.stream(source, request, info.engine))
        return encode_stream(first, rest, AUDIO_FORMATS["wav"])

    async def _standard_request(self, info: EngineInfo, params: GenerateParams) -> SynthesisRequest:
        """Standard mode: the whole filtered text in the character voice."""
        text = filter_text(params.text_input, params.text_filtering, self.hub.settings.config.api_def.allowed_filter)
        if not has_speech(text):
            raise generate_failure(400, "text_input has nothing left to speak after text filtering")
        self._check_voice(info, params.character_voice_gen, generate_failure)
        language = await self._language(params.language, text)
        return self._request(text, params.character_voice_gen, language, params)

    def _character_conversion(self, params: GenerateParams) -> ConversionRequest | None:
        return self.hub.conversion(params.rvccharacter_voice_gen, params.rvccharacter_pitch)

    async def _standard(self, info: EngineInfo, params: GenerateParams) -> list[PcmChunk]:
        source = self.hub.source(info.engine, self._character_conversion(params))
        return await self.hub.runner.collect(source, await self._standard_request(info, params), info.engine)

    async def _narrated(self, info: EngineInfo, params: GenerateParams) -> list[PcmChunk]:
        """Segments synthesized concurrently (spread over replicas), each converted with its
        role's RVC voice, joined in document order at 44.1 kHz with no gap."""
        sources = {"character": self.hub.source(info.engine, self._character_conversion(params)),
                   "narrator": self.hub.source(info.engine, self.hub.conversion(params.rvcnarrator_voice_gen,
                                                                                params.rvcnarrator_pitch))}
        api = self.hub.settings.config.api_def
        segments = assign_voices(split_narration(prepare_narration(params.text_input)), params.narrator_enabled,
                                 params.text_not_inside, params.character_voice_gen, params.narrator_voice_gen,
                                 api.api_length_stripping)
        if len(segments) > self.max_narrator_segments:
            raise ContractError(400, {"error": f"text_input splits into {len(segments)} narrator segments; at most "
                                               f"{self.max_narrator_segments} are allowed per request"})
        jobs = []
        for segment in segments:
            text = filter_text(segment.text, params.text_filtering, api.allowed_filter)
            if not has_speech(text):
                continue
            try:
                language = await self._language(params.language, text)
            except LanguageNotDetected:
                continue  # as AllTalk: a segment whose language cannot be detected is skipped
            self._check_voice(info, segment.voice, generate_failure)
            jobs.append((sources[segment.role], self._request(text, segment.voice, language, params)))
        if not jobs:
            raise generate_failure(400, "Narrator mode found nothing to speak: every segment was silent, "
                                        f"at most {api.api_length_stripping} characters long, or empty after filtering")
        results = await self.hub.runner.collect_many(jobs, info.engine, self.hub.narrator_concurrency)
        joined = await asyncio.to_thread(resample, [chunk for result in results for chunk in result], NARRATOR_RATE)
        return [joined]

    # ----- /api/previewvoice/

    async def preview(self, voice: str, rvc_voice: str, rvc_pitch: float) -> dict[str, object]:
        info = await self.hub.info()
        self._check_voice(info, voice, invalid_value)
        request = self._default_request(info, preview_text(voice), voice, "en")
        with engine_errors(invalid_value):
            source = self.hub.source(info.engine, self.hub.conversion(rvc_voice, rvc_pitch))
            chunks = await self.hub.runner.collect(source, request, info.engine)
        path = await asyncio.to_thread(self._write, chunks, None, "api_preview_voice", False)
        return {"status": "generate-success", "output_file_path": str(path), "output_file_url": f"/audio/{path.name}"}

    # ----- /api/tts-generate-streaming

    async def _streaming_request(self, info: EngineInfo, text: str, voice: str, language: str,
                                 shape: ErrorShape) -> SynthesisRequest:
        """Engine defaults for temperature and repetition penalty, speed 1.0 (§5.1)."""
        self._check_voice(info, voice, shape)
        if not has_speech(text):
            raise shape(400, "text has nothing to speak")
        if problem := text_length_problem(text, self.hub.settings.config.api_def.api_max_characters):
            raise shape(400, f"text {problem}")
        with engine_errors(shape):
            language = await self._language(language, text)
        return self._default_request(info, text, voice, language)

    def _default_request(self, info: EngineInfo, text: str, voice: str, language: str) -> SynthesisRequest:
        """The engine's default temperature and repetition penalty, speed 1.0, pitch 0."""
        defaults = self.hub.model_settings(info).settings
        return SynthesisRequest(text=text, voice=voice, language=language, speed=1.0,
                                temperature=defaults.temperature_set,
                                repetition_penalty=defaults.repetitionpenalty_set, pitch=0.0)

    async def open_stream(self, text: str, voice: str, language: str) -> AsyncIterator[bytes]:
        """A WAV stream of unknown length; errors before the first audio are raised here."""
        info = await self.hub.info()
        if not info.capabilities.streaming:
            raise invalid_value(400, "Streaming not supported by current TTS engine")
        request = await self._streaming_request(info, text, voice, language, invalid_value)
        with engine_errors(invalid_value):
            chunks = self.hub.runner.stream(self.hub.client(info.engine), request, info.engine)
            first, rest = await start_stream(chunks)
        return encode_stream(first, rest, AUDIO_FORMATS["wav"])

    async def generate_named(self, text: str, voice: str, language: str, output_file: str) -> dict[str, object]:
        """POST /api/tts-generate-streaming: not a stream; writes `<output_file>.wav` and echoes the name."""
        if not SAFE_FILENAME.fullmatch(output_file):
            raise detail(400, "output_file must be a plain file name (letters, digits, '_', '-', '.'), "
                              "without folders")
        info = await self.hub.info()
        request = await self._streaming_request(info, text, voice, language, detail)
        with engine_errors(detail):
            chunks = await self.hub.runner.collect(self.hub.client(info.engine), request, info.engine)
        if not chunks:
            raise detail(500, "TTS generation failed: the engine produced no audio")
        rate = chunks[0].sample_rate
        await asyncio.to_thread(self.hub.outputs().write_named, f"{output_file}.wav",
                                lambda out: write_wav(out, rate, chunks))
        return {"output_file_path": output_file}
