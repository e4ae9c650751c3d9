"""SpeechService: the parts of the server behind the API, built once per ingress: the engines
directory, the RVC policy, synthesis (runner and stops), the controls and the output folder.
No HTTP and no Ray here: engines are reached through EngineClient."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from .cancellation import StopRegistry
from .config.store import SettingsStore
from .controls import Controls
from .engine_client import EngineClient
from .engine_directory import EngineDirectory
from .rvc_requests import ConversionClient
from .storage import OutputStore
from .synthesis import SynthesisRunner
from .telemetry import Telemetry
from .text.language import LanguageDetectorService
from .voice_conversion import VoiceConversion


class SpeechService:
    """Args:
        settings: the loaded settings files of the server root.
        engines: live engines by name (the ones deployed next to this ingress).
        engines_supported: every engine this install can run (`engines_available`).
        default_engine: used when `tts_engines.json` names an engine that is not live.
        narrator_concurrency: how many narrator segments of one request are synthesized at once.
        broadcast_stop: tells every engine replica, wherever it runs, to stop what it is doing.
        deploy_engine: starts a supported engine that is not live and returns its client.
        converter: the RVC voice converter, when one runs beside the engines.
        telemetry: where finished requests and syntheses are reported (metrics); none by default.
        engines_not_installed: engines the project knows but this install cannot run, with the
            extra of the project that would add them.
    """

    def __init__(self, settings: SettingsStore, engines: Mapping[str, EngineClient],
                 engines_supported: Sequence[str], default_engine: str, narrator_concurrency: int = 4,
                 detector: LanguageDetectorService | None = None,
                 broadcast_stop: Callable[[], Awaitable[object]] | None = None,
                 deploy_engine: Callable[[str], Awaitable[EngineClient]] | None = None,
                 converter: ConversionClient | None = None, telemetry: Telemetry | None = None,
                 engines_not_installed: Mapping[str, str] | None = None):
        self.settings = settings
        self.engines = EngineDirectory(settings, engines, engines_supported, default_engine, engines_not_installed,
                                       deploy_engine)
        self.narrator_concurrency = narrator_concurrency
        self.detector = detector or LanguageDetectorService()
        self.telemetry = telemetry or Telemetry()
        self.stops = StopRegistry()
        self.runner = SynthesisRunner(self.stops, self.telemetry)
        self.rvc = VoiceConversion(settings, converter)
        self.controls = Controls(self.engines, settings, self.stops, broadcast_stop)

    def outputs(self) -> OutputStore:
        """The output folder as confignew.json names it now."""
        return OutputStore(self.settings.paths.outputs(self.settings.config.output_folder))
