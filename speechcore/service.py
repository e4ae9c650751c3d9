"""SpeechService: the server's state behind the API (engines, settings, outputs, stops) and the
status and control operations. Generation lives in generation.py and openai_speech.py, on top of
this. No HTTP and no Ray here: engines are reached through EngineClient."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from .cancellation import StopRegistry
from .config.alltalk import ConfigFileError, write_json_model
from .config.engine_settings import EngineEntry, EnginesFile, ModelSettings
from .config.store import SettingsStore
from .contract import rvc_voice_off
from .conversion import ConversionClient, ConversionRequest, ConvertedSource, InvalidConversion, RvcUnavailable
from .engine_client import EngineClient, EngineUnavailable, ModelChangeInProgress
from .engine_types import EngineError, EngineInfo
from .errors import ContractError
from .safe_paths import unsafe_reason
from .storage import OutputStore
from .synthesis import AudioSource, SynthesisRunner
from .telemetry import Telemetry
from .text.language import LanguageDetectorService


class SpeechService:
    """The server's behaviour behind the AllTalk API.

    Args:
        settings: the loaded settings files of the server root.
        engines: live engines by name (the ones deployed next to this ingress).
        engines_supported: every engine this install can run (`engines_available`).
        engines_not_installed: engines the project knows but this install cannot run, with the
            extra of the project that would add them.
        default_engine: used when `tts_engines.json` names an engine that is not live.
        narrator_concurrency: how many narrator segments of one request are synthesized at once.
        broadcast_stop: tells every engine replica, wherever it runs, to stop what it is doing.
        deploy_engine: starts a supported engine that is not live and returns its client.
        converter: the RVC voice converter, when one runs beside the engines.
        telemetry: where finished requests and syntheses are reported (metrics); none by default.
    """

    def __init__(self, settings: SettingsStore, engines: Mapping[str, EngineClient],
                 engines_supported: Sequence[str], default_engine: str, narrator_concurrency: int = 4,
                 detector: LanguageDetectorService | None = None,
                 broadcast_stop: Callable[[], Awaitable[object]] | None = None,
                 deploy_engine: Callable[[str], Awaitable[EngineClient]] | None = None,
                 converter: ConversionClient | None = None, telemetry: Telemetry | None = None,
                 engines_not_installed: Mapping[str, str] | None = None):
        if default_engine not in engines:
            raise ValueError(f"default engine {default_engine!r} is not among the live engines {sorted(engines)}")
        self.settings = settings
        self.engines = dict(engines)
        self.engines_supported = list(engines_supported)
        self.engines_not_installed = dict(engines_not_installed or {})
        self.default_engine = default_engine
        self.narrator_concurrency = narrator_concurrency
        self.detector = detector or LanguageDetectorService()
        self.stops = StopRegistry()
        self.broadcast_stop = broadcast_stop
        self.deploy_engine = deploy_engine
        self.converter = converter
        self.telemetry = telemetry or Telemetry()
        self.runner = SynthesisRunner(self.stops, self.telemetry)
        self._model_change = asyncio.Lock()

    # ----- engines and their descriptions

    @property
    def current_engine(self) -> str:
        loaded = self.settings.engines.engine_loaded
        return loaded if loaded in self.engines else self.default_engine

    def client(self, engine: str | None) -> EngineClient:
        name = engine or self.current_engine
        client = self.engines.get(name)
        if client is None:
            raise ContractError(400, {"status": "error", "message": f"Engine {name!r} is not running here; "
                                      f"live engines: {', '.join(sorted(self.engines))}"})
        return client

    def conversion(self, rvc_voice: str, pitch: float, f0_method: str | None = None) -> ConversionRequest | None:
        """What to convert with, or None when RVC is off globally or for this voice. Raises
        InvalidConversion for unusable settings, RvcUnavailable when no converter runs here."""
        rvc = self.settings.config.rvc_settings
        if rvc_voice_off(rvc_voice):
            return None
        if reason := unsafe_reason(rvc_voice):  # refused even while RVC is off: never a silent pass
            raise InvalidConversion(f"RVC voice {rvc_voice!r} {reason}")
        if not rvc.rvc_enabled:
            return None
        request = ConversionRequest.from_settings(rvc, rvc_voice, pitch, f0_method)
        problems = request.problems()
        if problems:
            raise InvalidConversion("; ".join(problems))
        if self.converter is None:
            raise RvcUnavailable("RVC is enabled but no RVC converter runs on this server (install the rvc extra "
                                 "and put a voice in models/rvc_voices, or deploy the rvc application)")
        return request

    def source(self, engine: str, conversion: ConversionRequest | None) -> AudioSource:
        """The engine, or the engine followed by the converter."""
        client = self.client(engine)
        if conversion is None:
            return client
        assert self.converter is not None
        return ConvertedSource(self.converter, engine, conversion)

    async def info(self, engine: str | None = None) -> EngineInfo:
        try:
            return await self.client(engine).describe()
        except EngineUnavailable as exc:
            raise ContractError(503, {"status": "error", "message": str(exc)}, {"Retry-After": "5"}) from exc

    def model_settings(self, info: EngineInfo) -> ModelSettings:
        try:
            return self.settings.model_settings(info)
        except (ConfigFileError, ValueError) as exc:
            raise ContractError(500, {"status": "error", "message": str(exc)}) from exc

    async def ready(self) -> bool:
        try:
            return await self.client(None).is_serving()
        except EngineUnavailable:
            return False

    # ----- status

    async def voices(self) -> dict[str, object]:
        info = await self.info()
        if not info.capabilities.multivoice:
            return {"status": "error", "message": f"The {info.engine} engine does not support multiple voices."}
        return {"status": "success", "voices": info.voices or ["No Voices Found"]}

    def rvc_voices(self) -> list[str]:
        """`Disabled`, then every `.pth` under models/rvc_voices (relative, sorted) when RVC is on."""
        folder = self.settings.paths.rvc_voices
        if not self.settings.config.rvc_settings.rvc_enabled or not folder.is_dir():
            return ["Disabled"]
        found = []
        for dirpath, _dirs, files in os.walk(folder):  # does not follow symlinked folders
            for name in files:
                if name.endswith(".pth"):
                    found.append((Path(dirpath) / name).relative_to(folder).as_posix())
        return ["Disabled", *sorted(found)]

    async def current_settings(self) -> dict[str, object]:
        info = await self.info()
        ms = self.model_settings(info)
        caps, s = info.capabilities, ms.settings
        return {
            "engines_available": self.engines_supported,
            "current_engine_loaded": info.engine,
            "models_available": [{"name": m} for m in info.models],
            "current_model_loaded": info.current_model,
            "manufacturer_name": ms.model_details.manufacturer_name or info.manufacturer_name,
            "audio_format": info.audio_format,
            "deepspeed_capable": caps.deepspeed,
            "deepspeed_available": caps.deepspeed_available,
            "deepspeed_enabled": info.deepspeed_enabled,
            "generationspeed_capable": caps.generationspeed,
            "generationspeed_set": s.generationspeed_set,
            "lowvram_capable": caps.lowvram,
            "lowvram_enabled": info.lowvram_enabled,  # what the replicas run with: always off without CUDA
            "pitch_capable": caps.pitch,
            "pitch_set": s.pitch_set,
            "repetitionpenalty_capable": caps.repetitionpenalty,
            "repetitionpenalty_set": s.repetitionpenalty_set,
            "streaming_capable": caps.streaming,
            "temperature_capable": caps.temperature,
            "temperature_set": s.temperature_set,
            "ttsengines_installed": s.engine_installed,
            "languages_capable": caps.languages,
            "multivoice_capable": caps.multivoice,
            "multimodel_capable": caps.multimodel,
        }

    # ----- output files

    def outputs(self) -> OutputStore:
        return OutputStore(self.settings.paths.outputs(self.settings.config.output_folder))

    def find_output(self, name: str) -> Path | None:
        return self.outputs().find(name)

    # ----- control

    async def stop_all(self) -> int:
        """Stops every generation: this process's at once, every engine replica's between chunks.
        Returns how many generations this process was running."""
        if self.broadcast_stop is not None:
            await self.broadcast_stop()
        return self.stops.stop_all()

    def reload_config(self) -> None:
        try:
            self.settings.reload()
        except ConfigFileError as exc:
            raise ContractError(400, {"status": "error", "message": str(exc)}) from exc

    async def reload_model(self, tts_method: str | None) -> dict[str, object]:
        info = await self.info()
        if tts_method is None or tts_method not in info.models:
            return {"status": "error", "message": f"Invalid TTS method {tts_method!r}: the {info.engine} engine's "
                                                  f"models are {', '.join(info.models) or 'none'}"}
        if self._model_change.locked():
            return {"status": "model-is currently changing"}
        async with self._model_change:
            try:
                await self.client(info.engine).select_model(tts_method)
            except ModelChangeInProgress:
                return {"status": "model-is currently changing"}
            except (EngineError, EngineUnavailable) as exc:  # UnknownModel is an EngineError
                return {"status": "model-failure", "message": str(exc)}
            await asyncio.to_thread(self._remember_model, info.engine, tts_method)
        return {"status": "model-success"}

    def _remember_model(self, engine: str, model: str) -> None:
        """The chosen model survives a restart: tts_engines.json records it."""
        current = self.settings.engines
        entries = [e.model_copy(update={"selected_model": model}) if e.name == engine else e
                   for e in current.engines_available]
        if not any(e.name == engine for e in entries):
            entries.append(EngineEntry(name=engine, selected_model=model))
        update: dict[str, object] = {"engines_available": entries}
        if current.engine_loaded == engine:
            update["selected_model"] = model
        self._save_engines_file(current.model_copy(update=update))

    def _save_engines_file(self, engines_file: EnginesFile) -> None:
        write_json_model(self.settings.paths.engines_file, engines_file)
        self.settings.engines = engines_file

    async def reload_engine(self, engine: str | None) -> dict[str, object]:
        if extra := self.engines_not_installed.get(engine or ""):
            return {"status": "error", "message": (
                f"The {engine} engine is not installed on this server: it needs the {extra} extra. Start the "
                f"server with ALLTALK_EXTRAS={extra} scripts/run-server (or install it: pip install -e '.[{extra}]')")}
        if engine is None or engine not in self.engines_supported:
            return {"status": "error", "message": f"Invalid TTS engine {engine!r}: available engines are "
                                                  f"{', '.join(self.engines_supported)}"}
        live = self.engines.get(engine)
        if live is None or not await live.is_serving():
            if self.deploy_engine is None:
                return {"status": "error", "message": f"The {engine} engine is not deployed on this server"}
            try:
                self.engines[engine] = await self.deploy_engine(engine)
            except Exception as exc:  # the deployment's own error, reported to the caller
                return {"status": "error", "message": f"Could not start the {engine} engine: {exc}"}
        info = await self.info(engine)
        await asyncio.to_thread(self._save_engines_file, self.settings.engines.model_copy(update={
            "engine_loaded": engine, "selected_model": info.current_model or engine}))
        return {"status": "engine-success"}

    async def set_deepspeed(self, value: bool) -> dict[str, object]:
        info = await self.info()
        if not (info.capabilities.deepspeed and info.capabilities.deepspeed_available):
            return {"status": "error", "message": f"The {info.engine} engine does not support DeepSpeed, "
                                                  "or DeepSpeed is not available on its replicas"}
        if info.deepspeed_enabled == value:
            return {"status": "success", "message": f"DeepSpeed is already {'enabled' if value else 'disabled'}"}
        error = await self._roll_options(info, deepspeed=value)
        return {"status": "error", "message": error} if error else {"status": "deepspeed-success"}

    async def set_lowvram(self, value: bool) -> dict[str, object]:
        info = await self.info()
        if not info.capabilities.lowvram:
            return {"status": "error", "message": f"The {info.engine} engine does not support LowVRAM"}
        if info.lowvram_enabled == value:
            return {"status": "success", "message": f"LowVRAM is already {'enabled' if value else 'disabled'}"}
        if not info.capabilities.cuda:
            # As AllTalk: without CUDA the switch is accepted and LowVRAM stays off.
            return {"status": "lowvram-success", "message": ""}
        error = await self._roll_options(info, lowvram=value)
        return {"status": "error", "message": error} if error else {"status": "lowvram-success", "message": ""}

    async def _roll_options(self, info: EngineInfo, **options: bool) -> str | None:
        """Rolls DeepSpeed/LowVRAM out to every replica of the engine (replicas reload as
        needed) and saves the choice in its model_settings.json; returns an error message."""
        if self._model_change.locked():
            return "the engine is being reconfigured; try again when it is done"
        async with self._model_change:
            try:
                await self.client(info.engine).configure(dict(options))
            except (EngineError, EngineUnavailable, ModelChangeInProgress) as exc:
                return str(exc)
        settings = self.model_settings(info)
        saved = settings.settings.model_copy(update={f"{name}_enabled": value for name, value in options.items()})
        await asyncio.to_thread(self.settings.save_model_settings, info.engine,
                                settings.model_copy(update={"settings": saved}))
        return None
