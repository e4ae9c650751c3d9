"""EngineDirectory: the engines this server speaks with, which one is current, and what each
says about itself (its description and its model settings)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from .config.alltalk import ConfigFileError
from .config.engine_settings import ModelSettings
from .config.store import SettingsStore
from .engine_client import EngineClient, EngineUnavailable
from .engine_types import EngineInfo
from .voices.library import library_version


class EngineNotLive(LookupError):
    """The request names an engine that does not run here (400)."""


class SettingsUnreadable(RuntimeError):
    """A settings file of the server root cannot be read (500)."""


class EngineDirectory:
    """Args:
        settings: the loaded settings files of the server root (tts_engines.json names the current engine).
        engines: live engines by name (the ones deployed next to this ingress).
        supported: every engine this install can run (`engines_available`).
        not_installed: engines the project knows but this install cannot run, with the extra of
            the project that would add them.
        default_engine: current when `tts_engines.json` names an engine that is not live.
        deploy: starts a supported engine that is not live and returns its client.
    """

    def __init__(self, settings: SettingsStore, engines: Mapping[str, EngineClient], supported: Sequence[str],
                 default_engine: str, not_installed: Mapping[str, str] | None = None,
                 deploy: Callable[[str], Awaitable[EngineClient]] | None = None):
        if default_engine not in engines:
            raise ValueError(f"default engine {default_engine!r} is not among the live engines {sorted(engines)}")
        self.settings = settings
        self.live = dict(engines)
        self.supported = list(supported)
        self.not_installed = dict(not_installed or {})
        self.default_engine = default_engine
        self.deploy = deploy
        self._voices_version = library_version(settings.paths)

    @property
    def current(self) -> str:
        loaded = self.settings.engines.engine_loaded
        return loaded if loaded in self.live else self.default_engine

    def client(self, engine: str | None = None) -> EngineClient:
        """The named engine's client (the current engine's when None); EngineNotLive otherwise."""
        name = engine or self.current
        client = self.live.get(name)
        if client is None:
            raise EngineNotLive(f"Engine {name!r} is not running here; live engines: {', '.join(sorted(self.live))}")
        return client

    async def info(self, engine: str | None = None) -> EngineInfo:
        """The engine's description; EngineUnavailable while no replica answers. A description kept
        for reuse is dropped when the voice library changed (an upload on any ingress replica).
        The library's version is a stat of a file on the shared root, off the event loop: on a
        network file system one can take long."""
        version = await asyncio.to_thread(library_version, self.settings.paths)
        if version != self._voices_version:
            self._voices_version = version
            for client in self.live.values():
                client.forget_description()
        return await self.client(engine).describe()

    def model_settings(self, info: EngineInfo) -> ModelSettings:
        try:
            return self.settings.model_settings(info)
        except (ConfigFileError, ValueError) as exc:
            raise SettingsUnreadable(str(exc)) from exc

    async def ensure_live(self, engine: str) -> None:
        """Makes a supported `engine` live: kept when a replica serves it, deployed otherwise;
        EngineNotLive (with the reason) when it cannot be started here."""
        live = self.live.get(engine)
        if live is not None and await live.is_serving():
            return
        if self.deploy is None:
            raise EngineNotLive(f"The {engine} engine is not deployed on this server")
        try:
            self.live[engine] = await self.deploy(engine)
        except Exception as exc:  # the deployment's own error, reported to the caller
            raise EngineNotLive(f"Could not start the {engine} engine: {exc}") from exc

    async def ready(self) -> bool:
        try:
            return await self.client().is_serving()
        except EngineUnavailable:
            return False
