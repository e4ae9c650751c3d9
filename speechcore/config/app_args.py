"""The `args` of each Serve application in serve_config.yaml, validated before anything starts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..engine_types import DeviceSetting, EngineOptions
from .access import AccessArgs


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobArgs(_Args):
    """Long texts as jobs (`/api/jobs`): how big, how many, and how much of the engines they use."""

    max_job_characters: int = Field(1_000_000, ge=1, description="Longest text one job takes.")
    max_jobs_per_client: int = Field(4, ge=1, description=(
        "Unfinished jobs (queued or running) one client (API key, or address without keys) may have; more get 429."))
    max_queued_jobs: int = Field(100, ge=1, description="Unfinished jobs of all clients together; more get 429.")
    jobs_at_once: int = Field(1, ge=1, le=64, description="Jobs one ingress replica runs at once; the rest wait.")
    lines_at_once: int = Field(1, ge=1, le=256, description=(
        "Sentences of a running job synthesized at once: the share of the engine's capacity (replicas x "
        "parallel_steps) a job may use. Engine replicas start no job sentence while a live request runs or "
        "waits, so live users wait at most for the job sentences already running; keep this below the "
        "engine's capacity so that one is free for them (1 on the embedded server; more on a cluster)."))
    line_retries: int = Field(3, ge=0, le=20, description=(
        "Times a sentence is tried again after its replica failed or was lost, before the job fails."))
    lease_s: float = Field(30.0, ge=2, description=(
        "A running job is claimed by one ingress replica, which renews the claim while it works; a claim not "
        "renewed for this long (its replica or server is gone) lets another replica resume the job."))


class ClipArgs(_Args):
    """How an uploaded XTTS reference clip is prepared and which clips are taken."""

    min_s: float = Field(3.0, gt=0, description="Shortest clip taken, in seconds of sound after trimming silence.")
    max_s: float = Field(30.0, gt=0, description="Longest clip taken, in seconds of sound after trimming silence.")
    max_input_s: float = Field(300.0, gt=0, description="Audio read from one uploaded file before it is refused.")
    silence_db: float = Field(-40.0, lt=0, description=(
        "Frames this many dB below the loudest frame are silence (trimmed at both ends)."))
    loudness_lufs: float = Field(-20.0, lt=0, description="Integrated loudness every clip is brought to (BS.1770).")
    peak: float = Field(0.95, gt=0, le=1, description="Highest sample after normalising (the gain is lowered to fit).")


class VoiceLibraryArgs(_Args):
    """Voices uploaded over the API (`/api/voices/{xtts,piper,rvc}`). The size of a whole upload is
    `access.max_voice_upload_bytes`."""

    max_file_bytes: int = Field(256 << 20, ge=1024, description="Largest single uploaded file (413 beyond).")
    max_voices_per_client: int = Field(50, ge=1, description=(
        "Voices one client (API key, or address without keys) may store; removing one frees its place."))
    clips: ClipArgs = Field(default_factory=ClipArgs)


class IngressArgs(_Args):
    """Args of the `alltalk` application (the HTTP ingress)."""

    root: str = Field(description="Server root: confignew.json, models/, voices/, outputs/, system/ "
                                  "(an AllTalk install works). Absolute on a cluster.")
    engines: dict[str, str] = Field(description="Live engines: engine name -> Serve application name.")
    default_engine: str = Field("piper", description="Current engine when tts_engines.json names none that is live.")
    engines_supported: list[str] = Field(default_factory=list, description=(
        "Engines this install can run (`engines_available`): the live ones, and those whose extra is installed; "
        "filled in by the builder."))
    engines_not_installed: dict[str, str] = Field(default_factory=dict, description=(
        "Engines the project knows whose extra is not installed here, with the extra's name; filled in by the "
        "builder. Asking for one is answered at once with the install command."))
    engine_import_path: str = Field("", description="Builder of engine applications, for engines deployed on "
                                                    "demand by /api/enginereload; filled in by the builder.")
    engine_apps: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "The Serve application entry of each engine (serve_config.yaml's own, with the server root), by engine "
        "name: how /api/enginereload deploys an engine that is not running. Filled in by the embedded launcher; "
        "an engine without an entry is deployed with its builder's defaults."))
    describe_timeout_s: float = Field(2.0, gt=0, description="How long status calls wait for an engine replica.")
    narrator_concurrency: int = Field(4, ge=1, le=64, description=(
        "Narrator segments of one request synthesized at once (spread over replicas). Best at what the "
        "engine's replicas run at once (replicas x parallel_steps): more bind segments to busy replicas "
        "early, fewer leave a replica idle."))
    rvc_app: str | None = Field(None, description="Serve application of the RVC converter; None: no RVC here.")
    describe_max_age_s: float = Field(1.0, ge=0, description=(
        "How long an engine's voice and model list is reused; past half of it the list is renewed in the "
        "background while requests use the last one (a change made through this server is waited for). "
        "0: every request asks."))
    engine_chunk_timeout_s: float = Field(300.0, gt=0, description=(
        "Longest wait for the next piece of audio from an engine before the request fails with 504 (a hung or "
        "unreachable replica); one sentence on the slowest engine must fit in it."))
    cold_start_timeout_s: float = Field(120.0, gt=0, description=(
        "For an engine scaled to zero (its autoscaling_config's min_replicas: 0): how long a request waits for "
        "a replica to start, load its model and send its first audio before it is answered 503 with "
        "Retry-After."))
    access: AccessArgs = Field(default_factory=AccessArgs, description="API keys, CORS and request limits.")
    retention_check_s: float = Field(600.0, gt=0, description="How often outputs older than `delete_output_wavs` "
                                                              "are removed.")
    jobs: JobArgs = Field(default_factory=JobArgs, description="Long texts as jobs (`/api/jobs`).")
    voices: VoiceLibraryArgs = Field(default_factory=VoiceLibraryArgs, description="The voice library (uploads).")

    @model_validator(mode="after")
    def _default_is_live(self) -> "IngressArgs":
        if self.default_engine not in self.engines:
            raise ValueError(f"default_engine {self.default_engine!r} is not in engines {sorted(self.engines)}")
        return self


class EngineArgs(_Args):
    """Args of an engine application (`piper`, later `vits`, `xtts`)."""

    engine: str = Field(description="Engine name from the registry, e.g. 'piper'.")
    root: str = Field(description="Server root (models/ and voices/ are read on the replica's node).")
    threads: int = Field(EngineOptions.threads, ge=1, le=64, description="CPU threads one synthesis may use.")
    device: DeviceSetting = Field("auto",
                        description=("auto = cuda when the replica was given a GPU share and sees a CUDA device, "
                                     "else cpu (a share it cannot use is a warning in its log and in "
                                     "`alltalk-serve status`)."))
    parallel_steps: int = Field(EngineOptions.parallel_steps, ge=1, le=64, description=(
        "Synthesis steps (a sentence or a chunk) a replica computes at once. Requests beyond it take turns "
        "step by step (fair to short requests) instead of oversubscribing the replica's threads."))
    max_batch: int = Field(EngineOptions.max_batch, ge=1, le=256, description=(
        "For an engine that batches (XTTS): requests on a replica that share each decoding step; more wait "
        "for a row to free. The deployment's max_ongoing_requests must be at least this."))
    max_phonemes_per_step: int = Field(EngineOptions.max_phonemes_per_step, ge=20, le=5000, description=(
        "Piper: the most phonemes one model run takes (200 is about 9 seconds of speech). A longer sentence is "
        "spoken in pieces cut at a comma, semicolon or colon, else between words. A run's memory grows with its "
        "length (about 1 MiB per phoneme) and onnxruntime keeps the most it ever needed, so this bounds a "
        "replica's memory whatever text a client sends."))
    voice_affinity: bool = Field(True, description=(
        "Route a voice's requests to replicas that already have it loaded (Serve model multiplexing). Worth it "
        "where loading a voice is slow next to synthesis; where it is cheap (Piper) it leaves a second replica "
        "idle until the first is full, so turn it off and let requests go to the least busy replica."))
    step_timeout_s: float = Field(600.0, gt=0, description=(
        "A synthesis step running longer than this fails the replica's health check, and Serve replaces it."))


class EngineUserConfig(_Args):
    """`user_config` of an engine deployment: what a rolling update may change."""

    model: str | None = Field(None, description="Model to serve; None keeps the engine's default.")
    deepspeed: bool = Field(False, description="XTTS with DeepSpeed (only where it imports and CUDA is present).")
    lowvram: bool = Field(False, description="Keep the model in RAM and move it to the GPU per request (CUDA only).")


class RvcArgs(_Args):
    """Args of the `rvc` application (voice conversion)."""

    root: str = Field(description="Server root (models/rvc_voices and models/rvc_base are read on the replica's node).")
    threads: int = Field(1, ge=1, le=64, description="CPU threads one conversion may use.")
    device: DeviceSetting = Field("auto",
                        description=("auto = cuda when the replica was given a GPU share and sees a CUDA device, "
                                     "else cpu (a share it cannot use is a warning in its log)."))
