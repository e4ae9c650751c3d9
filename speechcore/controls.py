"""Controls: the operations of AllTalk's control endpoints (§3): stop, config reload, model and
engine switches, DeepSpeed and LowVRAM. Changes to an engine run one at a time (`_exclusive`);
their answers are the contract's status dictionaries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from .cancellation import StopRegistry
from .config.alltalk import write_json_model
from .config.engine_settings import EngineEntry, EnginesFile
from .config.store import SettingsStore
from .engine_client import EngineUnavailable, ModelChangeInProgress
from .engine_directory import EngineDirectory, EngineNotLive
from .engine_types import EngineError, EngineInfo

Answer = dict[str, object]


class ChangeBusy(RuntimeError):
    """Another change of the engines is under way."""


class Controls:
    def __init__(self, engines: EngineDirectory, settings: SettingsStore, stops: StopRegistry,
                 broadcast_stop: Callable[[], Awaitable[object]] | None = None):
        self.engines = engines
        self.settings = settings
        self.stops = stops
        self.broadcast_stop = broadcast_stop
        self._change = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """One change of the engines at a time: a second one is refused (ChangeBusy), not queued."""
        if self._change.locked():
            raise ChangeBusy("the engine is being reconfigured; try again when it is done")
        async with self._change:
            yield

    async def stop_all(self) -> int:
        """Stops every generation: this process's at once, every engine replica's between chunks.
        Returns how many generations this process was running."""
        if self.broadcast_stop is not None:
            await self.broadcast_stop()
        return self.stops.stop_all()

    def reload_config(self) -> None:
        """Reads the settings files again; ConfigFileError (nothing changed) when one is invalid."""
        self.settings.reload()

    async def reload_model(self, tts_method: str | None) -> Answer:
        info = await self.engines.info()
        if tts_method is None or tts_method not in info.models:
            return {"status": "error", "message": f"Invalid TTS method {tts_method!r}: the {info.engine} engine's "
                                                  f"models are {', '.join(info.models) or 'none'}"}
        try:
            async with self._exclusive():
                await self.engines.client(info.engine).select_model(tts_method)
                await asyncio.to_thread(self._remember_model, info.engine, tts_method)
        except (ChangeBusy, ModelChangeInProgress):
            return {"status": "model-is currently changing"}
        except (EngineError, EngineUnavailable) as exc:  # UnknownModel is an EngineError
            return {"status": "model-failure", "message": str(exc)}
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

    async def reload_engine(self, engine: str | None) -> Answer:
        directory = self.engines
        if extra := directory.not_installed.get(engine or ""):
            return {"status": "error", "message": (
                f"The {engine} engine is not installed on this server: it needs the {extra} extra. Start the "
                f"server with ALLTALK_EXTRAS={extra} scripts/run-server (or install it: pip install -e '.[{extra}]')")}
        if engine is None or engine not in directory.supported:
            return {"status": "error", "message": f"Invalid TTS engine {engine!r}: available engines are "
                                                  f"{', '.join(directory.supported)}"}
        try:
            await directory.ensure_live(engine)
        except EngineNotLive as exc:
            return {"status": "error", "message": str(exc)}
        info = await directory.info(engine)
        await asyncio.to_thread(self._save_engines_file, self.settings.engines.model_copy(update={
            "engine_loaded": engine, "selected_model": info.current_model or engine}))
        return {"status": "engine-success"}

    async def set_deepspeed(self, value: bool) -> Answer:
        info = await self.engines.info()
        if not (info.capabilities.deepspeed and info.capabilities.deepspeed_available):
            return {"status": "error", "message": f"The {info.engine} engine does not support DeepSpeed, "
                                                  "or DeepSpeed is not available on its replicas"}
        if info.deepspeed_enabled == value:
            return {"status": "success", "message": f"DeepSpeed is already {'enabled' if value else 'disabled'}"}
        error = await self._roll_options(info, deepspeed=value)
        return {"status": "error", "message": error} if error else {"status": "deepspeed-success"}

    async def set_lowvram(self, value: bool) -> Answer:
        info = await self.engines.info()
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
        try:
            async with self._exclusive():
                await self.engines.client(info.engine).configure(dict(options))
        except (ChangeBusy, EngineError, EngineUnavailable, ModelChangeInProgress) as exc:
            return str(exc)
        settings = self.engines.model_settings(info)
        saved = settings.settings.model_copy(update={f"{name}_enabled": value for name, value in options.items()})
        await asyncio.to_thread(self.settings.save_model_settings, info.engine,
                                settings.model_copy(update={"settings": saved}))
        return None
