"""VitsEngine: Coqui VITS models (coqui-tts). Models are folders of `models/vits/` with a
`config.json` and weights; voices are the model's speakers (`speaker_ids.json` beside it), or
`default` for a single-speaker model. Synthesis goes sentence by sentence, so it streams."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from TTS.tts.configs.vits_config import VitsConfig
from TTS.tts.models.vits import Vits

from speechcore.audio.pcm import PcmChunk
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import EngineCapabilities, EngineInfo, SynthesisRequest, UnknownVoice
from speechcore.text.sentences import split_sentences

from .base import NO_HOOKS, EngineOptions, SpeechStream, StepHooks, TTSEngine
from .coqui_common import ModelFolders, ModelSlot, torch_device

_LOGGER = logging.getLogger(__name__)
WEIGHT_FILES = ("model_file.pth", "model.pth", "model_file.pth.tar")
SINGLE_SPEAKER = "default"


@dataclass(frozen=True)
class LoadedVits:
    name: str
    model: Vits
    sample_rate: int
    speakers: list[str]
    """Speaker names in file order; empty for a single-speaker model."""


def load_vits(name: str, folder: Path, device: torch.device) -> LoadedVits:
    """Loads a VITS folder through coqui-tts. The speakers file is always the one in the folder
    (configs saved by training point at wherever training ran)."""
    config = VitsConfig()
    config.load_json(str(folder / "config.json"))
    speakers_file = folder / "speaker_ids.json"
    speakers: list[str] = []
    if speakers_file.is_file():
        config.model_args.speakers_file = str(speakers_file)
        config.model_args.use_speaker_embedding = True
        speakers = list(json.loads(speakers_file.read_text(encoding="utf-8")))
    weights = next(folder / w for w in WEIGHT_FILES if (folder / w).is_file())
    model = Vits(config)
    model.load_checkpoint(config, checkpoint_path=str(weights), eval=True)  # torch.load(weights_only=True)
    model.to(device)
    return LoadedVits(name, model, config.audio.sample_rate, speakers)


class VitsEngine(TTSEngine):
    name = "vits"

    def __init__(self, models: ModelFolders, options: EngineOptions):
        self.device = torch_device(options)
        self.slot = ModelSlot(models, load_vits, "VITS",
                              move=lambda loaded, device: loaded.model.to(device), device=self.device)

    @classmethod
    def create(cls, paths: ServerPaths, options: EngineOptions, hooks: StepHooks = NO_HOOKS) -> "VitsEngine":
        return cls(ModelFolders(paths.engine_models("vits"), "vits", ("config.json",), WEIGHT_FILES), options)

    def select_model(self, model: str | None) -> None:
        self.slot.select(model)

    def configure(self, deepspeed: bool, lowvram: bool) -> None:
        self.slot.set_lowvram(lowvram and self.device.type == "cuda")

    def check_model(self, model: str) -> None:
        self.slot.check(model)

    def info(self) -> EngineInfo:
        loaded = self.slot.current_or_none()
        voices = (loaded.speakers or [SINGLE_SPEAKER]) if loaded else []
        return EngineInfo(
            engine=self.name, manufacturer_name="Coqui", audio_format="wav", models=self.slot.folders.names(),
            current_model=loaded.name if loaded else None, voices=voices,
            default_voice=voices[0] if voices else SINGLE_SPEAKER,
            capabilities=EngineCapabilities(streaming=True, lowvram=True, cuda=self.device.type == "cuda"),
            lowvram_enabled=self.slot.lowvram)

    def load_voice(self, voice: str) -> str:
        loaded = self.slot.current()
        known = loaded.speakers or [SINGLE_SPEAKER]
        if voice not in known:
            raise UnknownVoice(f"Voice {voice!r} is not a speaker of {loaded.name} (speakers: {', '.join(known[:10])}"
                               f"{', ...' if len(known) > 10 else ''})")
        return voice

    @staticmethod
    def _language(loaded: LoadedVits, language: str) -> str | None:
        """Multi-language models get the request's language when they have it, else their
        first; other models ignore the language."""
        manager = getattr(loaded.model, "language_manager", None)
        names = list(manager.name_to_id) if manager is not None and manager.num_languages > 1 else []
        if not names:
            return None
        return language if language in names else names[0]

    def synthesize(self, voice: str, request: SynthesisRequest) -> SpeechStream:
        with self.slot.use() as loaded:
            speaker = voice if loaded.speakers else None
            if speaker is not None and speaker not in loaded.speakers:
                raise UnknownVoice(f"Voice {voice!r} is not a speaker of {loaded.name}")
            language = self._language(loaded, request.language)
            for sentence in split_sentences(request.text):
                with torch.inference_mode():
                    wav = loaded.model.synthesize(sentence, speaker=speaker, language=language)["wav"]
                yield PcmChunk.from_float(wav.reshape(-1), loaded.sample_rate)
