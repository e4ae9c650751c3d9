"""What the server reports about its work: a record per HTTP request (for the request log line
and request metrics) and the hooks a metrics backend implements. The core stays free of any
metrics library: the Serve ingress passes a Telemetry that exports to Ray's Prometheus metrics,
everything else uses the base class, which records nothing."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

CURRENT_REQUEST: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("speech_request", default=None)
"""The record of the HTTP request being served, set by the request log middleware. A context
variable because synthesis runs several calls below the route handler (and in tasks it starts),
where passing the record by hand would thread it through every generation path."""


@dataclass
class RequestRecord:
    """One HTTP request as the log line and the request metrics see it."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    endpoint: str = "unmatched"
    """The route template (`/audio/{filename}`), never the raw path: a bounded metric label."""
    status: int = 0
    engine: str = ""
    voices: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    """The languages the engine was asked to speak (what `language=auto` resolved to)."""
    characters: int = 0
    audio_s: float = 0.0
    first_audio_s: float | None = None
    """Seconds until the first byte of an audio body was sent (responses with an audio body)."""
    latency_s: float = 0.0
    outcome: str = "ok"
    """ok, stopped (a stop request), disconnected (the client went away), or error."""
    texts: list[str] = field(default_factory=list)

    def add_synthesis(self, engine: str, voice: str, text: str, language: str) -> None:
        self.engine = self.engine or engine
        if voice not in self.voices:
            self.voices.append(voice)
        if language not in self.languages:
            self.languages.append(language)
        self.characters += len(text)
        self.texts.append(text)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class Telemetry:
    """Hooks called as requests and syntheses finish. Every method is cheap and must not raise."""

    def request_finished(self, record: RequestRecord) -> None:
        """After the last byte of a response (or when the client went away)."""

    def synthesis_finished(self, engine: str, characters: int, audio_s: float, wall_s: float) -> None:
        """One engine call that delivered all its audio."""

    def synthesis_cancelled(self, engine: str, reason: str) -> None:
        """One engine call ended early: `stop` (a stop request) or `disconnect` (its consumer went away)."""

    def jobs_counted(self, queued: int, running: int) -> None:
        """The unfinished jobs in the jobs folder, as one ingress replica last counted them."""

    def job_line_finished(self, engine: str) -> None:
        """One line (sentence) of a job synthesized and stored."""

    def job_finished(self, outcome: str, seconds: float) -> None:
        """A job ended: `done`, `failed` or `cancelled`, `seconds` after it was submitted."""
