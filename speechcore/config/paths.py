"""Where the server's folders are, in AllTalk's layout under one root folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerPaths:
    """Absolute folders of one server root (an AllTalk install works as a root)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "ServerPaths":
        return cls(Path(root).expanduser().resolve())

    @property
    def config_file(self) -> Path:
        return self.root / "confignew.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def voices(self) -> Path:
        return self.root / "voices"

    @property
    def rvc_voices(self) -> Path:
        return self.models / "rvc_voices"

    @property
    def rvc_base(self) -> Path:
        return self.models / "rvc_base"

    @property
    def voice_library(self) -> Path:
        """The voice library's own files: who stored which voice, its version, uploads in progress."""
        return self.root / "system" / "voice_library"

    @property
    def engines_dir(self) -> Path:
        return self.root / "system" / "tts_engines"

    @property
    def engines_file(self) -> Path:
        return self.engines_dir / "tts_engines.json"

    def model_settings_file(self, engine: str) -> Path:
        return self.engines_dir / engine / "model_settings.json"

    def engine_models(self, engine: str) -> Path:
        return self.models / engine

    def outputs(self, output_folder: str) -> Path:
        """The output folder setting, relative to the root unless absolute."""
        return (self.root / output_folder).resolve()
