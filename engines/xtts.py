"""XttsEngine: Coqui XTTS v2 (coqui-tts). Models are folders of `models/xtts/` with config.json,
model.pth and vocab.json; voices are reference WAVs in `voices/`, voice sets
(`voiceset:<folder>` under `voices/xtts_multi_voice_sets/`) and saved latents
(`latent:<file>.json` under `voices/xtts_latents/`). Conditioning latents are computed once per
voice and model. Speech streams in sub-sentence chunks; concurrent requests share each decoding
step of the model's batcher (xtts_batcher: continuous batching, up to `max_batch` rows)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from TTS.tts.configs.xtts_config import XttsConfig
from TTS.tts.models.xtts import Xtts

from speechcore.config.paths import ServerPaths
from speechcore.engine_types import (
    EngineCapabilities,
    EngineError,
    EngineInfo,
    SynthesisRequest,
    UnknownVoice,
    UnsupportedLanguage,
)
from speechcore.safe_paths import UnsafeName, resolve_inside
from speechcore.text.sentences import split_sentences
from speechcore.voices.layout import XTTS_LATENTS, XTTS_SET_CLIPS, XTTS_VOICE_SETS, file_versions

from .base import NO_HOOKS, EngineOptions, StepHooks, StepTimer, TTSEngine
from .coqui_common import ModelFolders, ModelSlot, load_reference_audio, torch_device
from .xtts_batcher import Voice, XttsBatcher, XttsStream
from .xtts_sampling import Sampling

_LOGGER = logging.getLogger(__name__)
REQUIRED_FILES = ("config.json", "model.pth", "vocab.json")
OUTPUT_RATE = 24_000
STREAM_CHUNK_TOKENS = 20
FIRST_CHUNK_TOKENS = 6
"""A request's first chunk is shorter (about 0.25 s of audio) so that audio starts sooner."""
LATENT_CACHE_SIZE = 32


@dataclass(frozen=True)
class LoadedXtts:
    name: str
    model: Xtts
    config: XttsConfig
    batcher: XttsBatcher


@dataclass(frozen=True)
class XttsVoice:
    """Conditioning latents of one voice for one loaded model."""

    model_name: str
    gpt_cond_latent: torch.Tensor
    speaker_embedding: torch.Tensor


@dataclass(frozen=True)
class BatchOptions:
    """How a loaded model's batcher runs, and whom it tells about its steps."""

    max_batch: int = 1
    chunk_tokens: int = STREAM_CHUNK_TOKENS
    first_chunk_tokens: int = FIRST_CHUNK_TOKENS
    time_step: StepTimer = contextlib.nullcontext
    on_step: Callable[[int], None] = lambda rows: None
    on_row_left: Callable[[], None] = lambda: None


def load_xtts(name: str, folder: Path, device: torch.device, use_deepspeed: bool,
              batching: BatchOptions = BatchOptions()) -> LoadedXtts:
    config = XttsConfig()
    config.load_json(str(folder / "config.json"))
    model = Xtts(config)
    # load_checkpoint reads model.pth with torch.load(weights_only=True) and vocab.json beside it.
    model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True, use_deepspeed=use_deepspeed)
    model.to(device)
    batcher = XttsBatcher(model, batching.max_batch, batching.chunk_tokens, batching.first_chunk_tokens,
                          time_step=batching.time_step, on_step=batching.on_step, on_row_left=batching.on_row_left)
    return LoadedXtts(name, model, config, batcher)


def deepspeed_available() -> bool:
    """False: no decoding path of this engine runs on DeepSpeed's kernels yet, so the switch is
    reported unavailable rather than offered and broken. Measured on an H200 with deepspeed 0.19.8
    (bench/results/gpu.md): it builds, and its injected GPT-2 blocks decode one row at 125 steps/s
    against 61 for Hugging Face's forward; but coqui's DeepSpeed loading halves the GPT and swaps in
    blocks that keep their own key/value cache, and both coqui's streaming and this engine's batcher
    then fail on transformers 5's cache objects ("'DynamicCache' object has no attribute 'dtype'").
    Those blocks cannot hold rows that join and leave, so the path that would use them is a
    one-row decoder beside the batcher."""
    return False


class XttsEngine(TTSEngine):
    name = "xtts"
    batches = True

    def __init__(self, models: ModelFolders, voices_dir: Path, options: EngineOptions, use_deepspeed: bool = False,
                 stream_chunk_tokens: int = STREAM_CHUNK_TOKENS, hooks: StepHooks = NO_HOOKS):
        """`hooks`: the batch steps of every model this engine loads are timed by `time_step` and
        their row counts told to `on_batch` (a host's health check and occupancy metric)."""
        self.batching = BatchOptions(max_batch=options.max_batch, chunk_tokens=stream_chunk_tokens,
                                     first_chunk_tokens=min(FIRST_CHUNK_TOKENS, stream_chunk_tokens),
                                     time_step=hooks.time_step, on_step=hooks.on_batch,
                                     on_row_left=hooks.on_row_left)
        self.voices_dir = voices_dir
        self.device = torch_device(options)
        self.use_deepspeed = use_deepspeed and deepspeed_available()
        self.slot = ModelSlot(models, lambda name, folder, device: load_xtts(name, folder, device, self.use_deepspeed,
                                                                             self.batching),
                              "XTTS", move=lambda loaded, device: loaded.model.to(device), device=self.device)
        self._latents: OrderedDict[tuple[str, str, float], XttsVoice] = OrderedDict()
        self._latents_lock = threading.Lock()
        self.latents_computed = 0

    @classmethod
    def create(cls, paths: ServerPaths, options: EngineOptions, hooks: StepHooks = NO_HOOKS) -> "XttsEngine":
        return cls(ModelFolders(paths.engine_models("xtts"), "xtts", REQUIRED_FILES), paths.voices, options,
                   hooks=hooks)

    def select_model(self, model: str | None) -> None:
        self.slot.select(model)

    def configure(self, deepspeed: bool, lowvram: bool) -> None:
        """DeepSpeed changes how the model loads, so the current model is loaded again."""
        wanted = deepspeed and deepspeed_available()
        if wanted != self.use_deepspeed:
            self.use_deepspeed = wanted
            if self.slot.current_or_none() is not None:
                self.slot.reload()
        self.slot.set_lowvram(lowvram and self.device.type == "cuda")

    def check_model(self, model: str) -> None:
        self.slot.check(model)

    # ----- voices

    def voices(self) -> list[str]:
        """Plain WAVs, then voice sets, then saved latents, each sorted (case-sensitive)."""
        if not self.voices_dir.is_dir():
            return []
        wavs = sorted(p.name for p in self.voices_dir.glob("*.wav") if p.is_file())
        sets_dir = self.voices_dir / XTTS_VOICE_SETS
        sets = sorted(f"voiceset:{d.name}" for d in sets_dir.iterdir() if d.is_dir() and any(d.glob("*.wav"))) \
            if sets_dir.is_dir() else []
        latents_dir = self.voices_dir / XTTS_LATENTS
        latents = sorted(f"latent:{p.name}" for p in latents_dir.glob("*.json")) if latents_dir.is_dir() else []
        return wavs + sets + latents

    def voice_version(self, voice: str) -> object:
        return file_versions(self._voice_files(voice))

    def _voice_files(self, voice: str) -> list[Path]:
        try:
            if voice.startswith("voiceset:"):
                folder = resolve_inside(self.voices_dir / XTTS_VOICE_SETS, voice.removeprefix("voiceset:"))
                files = sorted(folder.glob("*.wav"))[:XTTS_SET_CLIPS] if folder.is_dir() else []
            elif voice.startswith("latent:"):
                files = [resolve_inside(self.voices_dir / XTTS_LATENTS, voice.removeprefix("latent:"))]
            else:
                files = [resolve_inside(self.voices_dir, voice)]
        except UnsafeName as exc:
            raise UnknownVoice(f"Voice {voice!r} is not an XTTS voice: {exc}") from exc
        if not files or not all(f.is_file() for f in files) or voice not in self.voices():
            raise UnknownVoice(f"Voice {voice!r} is not an XTTS voice (see /api/voices)")
        return files

    def load_voice(self, voice: str) -> XttsVoice:
        """Conditioning latents for `voice`, computed once per voice, model and file version."""
        files = self._voice_files(voice)
        loaded = self.slot.current()
        key = (loaded.name, voice, max(f.stat().st_mtime for f in files))
        with self._latents_lock:
            if key in self._latents:
                self._latents.move_to_end(key)
                return self._latents[key]
        computed = self._compute_latents(loaded, voice, files)
        with self._latents_lock:
            self._latents[key] = computed
            self.latents_computed += 1
            while len(self._latents) > LATENT_CACHE_SIZE:
                self._latents.popitem(last=False)
        return computed

    def _compute_latents(self, loaded: LoadedXtts, voice: str, files: list[Path]) -> XttsVoice:
        model, config = loaded.model, loaded.config
        if voice.startswith("latent:"):
            data = json.loads(files[0].read_text(encoding="utf-8"))
            try:
                gpt = torch.tensor(data["gpt_cond_latent"], dtype=torch.float32)
                speaker = torch.tensor(data["speaker_embedding"], dtype=torch.float32)
            except (KeyError, TypeError, ValueError) as exc:
                raise UnknownVoice(f"{voice}: not a latent file (needs gpt_cond_latent and speaker_embedding)") from exc
            gpt = gpt.reshape(1, -1, gpt.shape[-1])
            speaker = speaker.reshape(1, -1, 1)
            return XttsVoice(loaded.name, gpt.to(self.device), speaker.to(self.device))
        rate = config.model_args.input_sample_rate
        with torch.inference_mode():
            audios = [load_reference_audio(f, rate)[:, : rate * config.max_ref_len].to(self.device) for f in files]
            speaker = torch.stack([model.get_speaker_embedding(a, rate) for a in audios]).mean(dim=0)
            gpt = model.get_gpt_cond_latents(torch.cat(audios, dim=-1), rate, length=config.gpt_cond_len,
                                             chunk_length=config.gpt_cond_chunk_len)
        return XttsVoice(loaded.name, gpt, speaker)

    # ----- speech

    def _language(self, loaded: LoadedXtts, language: str) -> str:
        code = "zh-cn" if language == "zh" else language
        if code not in loaded.config.languages:
            raise UnsupportedLanguage(f"{loaded.name} does not speak {language!r} "
                                      f"(it speaks {', '.join(loaded.config.languages)})")
        return code

    def synthesize(self, voice: XttsVoice, request: SynthesisRequest) -> XttsStream:
        """Sub-sentence chunks as the batch produces them. Returns at once; iterating blocks until
        the next chunk, and closing the stream stops it between two decoding steps."""
        uses = contextlib.ExitStack()
        loaded = uses.enter_context(self.slot.use())
        try:
            if voice.model_name != loaded.name:  # the model changed since the voice was cached
                voice = self.load_voice(request.voice)
            sentences = self._text_tokens(loaded, request)
        except BaseException:
            uses.close()
            raise
        stream = XttsStream(
            sentences,
            Voice(voice.gpt_cond_latent, voice.speaker_embedding),
            Sampling(
                temperature=max(request.temperature, 0.01),
                repetition_penalty=request.repetition_penalty,
                top_k=request.top_k,
                top_p=request.top_p,
            ),
            speed=request.speed,
            sample_rate=OUTPUT_RATE,
            on_retire=uses.close,
        )
        return loaded.batcher.submit(stream)

    def _text_tokens(self, loaded: LoadedXtts, request: SynthesisRequest) -> list[torch.Tensor]:
        """Each sentence's text tokens, as coqui's streaming path encodes them (sentences are split
        here: coqui's own splitting of long text needs spaCy)."""
        language = self._language(loaded, request.language)
        limit = loaded.config.model_args.gpt_max_text_tokens
        sentences = []
        for sentence in split_sentences(request.text):
            try:
                tokens = loaded.model.tokenizer.encode(sentence.strip().lower(), lang=language.split("-")[0])
            except ImportError as exc:  # coqui's text front ends for zh, ja, ko need optional packages
                raise UnsupportedLanguage(f"{loaded.name} cannot speak {language!r} on this server: {exc}") from exc
            if len(tokens) >= limit:
                raise EngineError(f"a sentence of {len(tokens)} text tokens is longer than XTTS reads ({limit - 1})")
            sentences.append(torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(0))
        return sentences

    def info(self) -> EngineInfo:
        loaded = self.slot.current_or_none()
        voices = self.voices()
        return EngineInfo(
            engine=self.name,
            manufacturer_name="Coqui",
            audio_format="wav",
            models=self.slot.folders.names(),
            current_model=loaded.name if loaded else None,
            voices=voices,
            default_voice=voices[0] if voices else "female_01.wav",
            capabilities=EngineCapabilities(
                streaming=True,
                languages=True,
                generationspeed=True,
                temperature=True,
                repetitionpenalty=True,
                lowvram=True,
                deepspeed=True,
                deepspeed_available=deepspeed_available(),
                cuda=self.device.type == "cuda",
            ),
            deepspeed_enabled=self.use_deepspeed,
            lowvram_enabled=self.slot.lowvram,
        )
