"""The server's metrics, with Ray Serve's metrics API. Ray exports them on every node's Prometheus
endpoint as `ray_<name>` (counters with `_total`), each tagged by Serve with application,
deployment and replica on top of the tags below. Serve's own metrics (HTTP requests per route,
queue lengths, replica counts, autoscaling) sit beside them. One class per process kind: the
ingress, an engine replica, the ingress's rollouts."""

from __future__ import annotations

import threading

from ray.serve import metrics

from speechcore.telemetry import RequestRecord, Telemetry

LATENCY_BUCKETS_S = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0]
RTF_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0]
LOAD_BUCKETS_S = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]
JOB_BUCKETS_S = [10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600, 48 * 3600]
REJECTED_STATUSES = {413: "too_large", 429: "rate_limited", 503: "unavailable"}
"""Statuses that mean "not now" (body limit, per-client limit, a full queue or no replica)."""


class IngressMetrics(Telemetry):
    """Requests by endpoint, engine and status; characters and audio seconds synthesized; latency,
    time to first audio and real-time factor; cancellations and rejections."""

    def __init__(self) -> None:
        self.requests = metrics.Counter(
            "alltalk_requests", description="HTTP requests answered, by route template, engine and status",
            tag_keys=("endpoint", "engine", "status"))
        self.latency = metrics.Histogram(
            "alltalk_request_seconds", description="Time from request to last byte of the response",
            boundaries=LATENCY_BUCKETS_S, tag_keys=("endpoint", "engine"))
        self.first_audio = metrics.Histogram(
            "alltalk_time_to_first_audio_seconds",
            description="Time from request to the first byte of an audio body (streamed responses: first chunk)",
            boundaries=LATENCY_BUCKETS_S, tag_keys=("endpoint", "engine"))
        self.rejections = metrics.Counter(
            "alltalk_rejections", description="Requests refused for load or limits (413, 429, 503)",
            tag_keys=("endpoint", "reason"))
        self.characters = metrics.Counter(
            "alltalk_characters", description="Characters of text sent to an engine", tag_keys=("engine",))
        self.audio = metrics.Counter(
            "alltalk_audio_seconds", description="Seconds of audio synthesized", tag_keys=("engine",))
        self.rtf = metrics.Histogram(
            "alltalk_realtime_factor", description="Synthesis wall time / audio duration, per engine call",
            boundaries=RTF_BUCKETS, tag_keys=("engine",))
        self.cancellations = metrics.Counter(
            "alltalk_cancellations", description="Engine calls ended early: stop request or client gone",
            tag_keys=("engine", "reason"))
        self.jobs = metrics.Gauge(
            "alltalk_jobs", description="Unfinished long-text jobs by state, as an ingress replica last counted them "
                                        "(every replica counts the same shared folder: take the max)",
            tag_keys=("state",))
        self.job_lines = metrics.Counter(
            "alltalk_job_lines", description="Lines (sentences) of jobs synthesized and stored", tag_keys=("engine",))
        self.cold_starts = metrics.Histogram(
            "alltalk_cold_start_seconds",
            description="Time from a request that found its engine scaled to zero to its first audio (a replica's "
                        "start, model load and first sentence)",
            boundaries=LOAD_BUCKETS_S, tag_keys=("engine",))
        self.jobs_finished = metrics.Histogram(
            "alltalk_job_seconds", description="Time from a job's submission to its end, by outcome",
            boundaries=JOB_BUCKETS_S, tag_keys=("outcome",))

    def request_finished(self, record: RequestRecord) -> None:
        engine = record.engine or "none"
        self.requests.inc(tags={"endpoint": record.endpoint, "engine": engine, "status": str(record.status)})
        self.latency.observe(record.latency_s, tags={"endpoint": record.endpoint, "engine": engine})
        if record.first_audio_s is not None:
            self.first_audio.observe(record.first_audio_s, tags={"endpoint": record.endpoint, "engine": engine})
        if reason := REJECTED_STATUSES.get(record.status):
            self.rejections.inc(tags={"endpoint": record.endpoint, "reason": reason})

    def synthesis_finished(self, engine: str, characters: int, audio_s: float, wall_s: float) -> None:
        self.characters.inc(characters, tags={"engine": engine})
        self.audio.inc(audio_s, tags={"engine": engine})
        if audio_s > 0:
            self.rtf.observe(wall_s / audio_s, tags={"engine": engine})

    def synthesis_cancelled(self, engine: str, reason: str) -> None:
        self.cancellations.inc(tags={"engine": engine, "reason": reason})

    def cold_started(self, engine: str, seconds: float) -> None:
        self.cold_starts.observe(seconds, tags={"engine": engine})

    def jobs_counted(self, queued: int, running: int) -> None:
        self.jobs.set(queued, tags={"state": "queued"})
        self.jobs.set(running, tags={"state": "running"})

    def job_line_finished(self, engine: str) -> None:
        self.job_lines.inc(tags={"engine": engine})

    def job_finished(self, outcome: str, seconds: float) -> None:
        self.jobs_finished.observe(seconds, tags={"outcome": outcome})


class BatchTally:
    """A batching engine replica's steps since it started, counted as they happen (the metrics
    export them in rounds): steps, rows over all steps, rows that left before their sentence
    ended. Batch threads count (two at once while a model swap lets the old one finish)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"steps": 0, "rows": 0, "rows_left": 0}

    def count(self, **increments: int) -> None:
        with self._lock:
            for name, increment in increments.items():
                self._counts[name] += increment

    def read(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class EngineMetrics:
    """Inside an engine replica: how long requests wait for their first synthesis step, how many
    requests share each step of a batching engine, and how long models take to load."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.tally = BatchTally()
        self.queue_wait = metrics.Histogram(
            "alltalk_queue_wait_seconds",
            description="Time a request waits in an engine replica before its first synthesis step",
            boundaries=LATENCY_BUCKETS_S, tag_keys=("engine",))
        self.model_load = metrics.Histogram(
            "alltalk_model_load_seconds", description="Time to load a model (replica start, model swap, option change)",
            boundaries=LOAD_BUCKETS_S, tag_keys=("engine", "model"))
        self.batch_rows = metrics.Histogram(
            "alltalk_batch_rows", description="Requests sharing one decoding step of a batching engine (occupancy)",
            boundaries=BATCH_BUCKETS, tag_keys=("engine",))
        self.rows_left = metrics.Counter(
            "alltalk_batch_rows_left", description="Rows that left a batching engine's steps before their sentence "
                                                   "ended (the request went away or was stopped)", tag_keys=("engine",))

    def batch_ran(self, rows: int) -> None:
        """Called from the engine's batch thread once per step."""
        self.tally.count(steps=1, rows=rows)
        self.batch_rows.observe(rows, tags={"engine": self.engine})

    def row_left(self) -> None:
        """Called from the engine's batch thread."""
        self.tally.count(rows_left=1)
        self.rows_left.inc(tags={"engine": self.engine})

    def waited(self, seconds: float) -> None:
        self.queue_wait.observe(seconds, tags={"engine": self.engine})

    def model_loaded(self, model: str, seconds: float) -> None:
        self.model_load.observe(seconds, tags={"engine": self.engine, "model": model})


class RolloutMetrics:
    """Rolling redeploys started by the API (model swaps, DeepSpeed/LowVRAM, engines deployed on demand)."""

    def __init__(self) -> None:
        self.rollouts = metrics.Counter(
            "alltalk_rollouts", description="Rollouts by application and outcome (done, failed, busy)",
            tag_keys=("app", "outcome"))
        self.duration = metrics.Histogram(
            "alltalk_rollout_seconds", description="Time from a rollout's start until every replica runs it",
            boundaries=LOAD_BUCKETS_S, tag_keys=("app",))

    def finished(self, app: str, outcome: str, seconds: float) -> None:
        self.rollouts.inc(tags={"app": app, "outcome": outcome})
        if outcome == "done":
            self.duration.observe(seconds, tags={"app": app})
