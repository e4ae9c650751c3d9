"""Two ways to reach the same API, so every contract test runs against both:
- `asgi`: the FastAPI app in this process over an in-process Piper engine (no Ray; fast);
- `serve`: the real embedded server (local Ray, Serve, HTTP on 127.0.0.1), one per test session.
Both use the real bundled Piper voice and a fresh server root folder."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from embedded_proxy import proxy_from_env
from engines.base import EngineOptions
from engines.piper import PiperEngine
from engines.registry import ENGINE_CLASSES
from speechcore.api import create_app
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.service import SpeechService
from speechcore.telemetry import Telemetry
from tests.support import InProcessConverter, InProcessEngineClient, RootSnapshot, install_piper_voice

SERVE_PORT = 7871
SERVE_METRICS_PORT = 7872
SERVE_PROXY = proxy_from_env(os.environ)
"""Serve's HTTP front of the shared server, as `alltalk-serve run` chooses it (the servers tests
start with the CLI inherit the variable): HAProxy by default, `ALLTALK_SERVE_PROXY=classic` runs the
suite behind Serve's classic proxy (scripts/run-tests runs the both_fronts tests behind the other)."""
BOTH_FRONTS_ONLY = "ALLTALK_BOTH_FRONTS_ONLY"
"""Set (scripts/run-tests' second pass): only the tests marked both_fronts run, whatever else
the command line chose."""
PROJECT_DIR = Path(__file__).resolve().parent.parent
BUNDLED_VOICE = "en_US-joe-medium.onnx"
SECOND_VOICE = "narrators/en_US-joe-narrator.onnx"  # a user-installed voice under models/piper


RVC = all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers", "faiss", "pyworld"))


def make_root(tmp_path_factory, name: str) -> Path:
    """A server root with a second Piper voice and, with the rvc extra installed, RVC voices."""
    root = tmp_path_factory.mktemp(name)
    install_piper_voice(root / "models" / "piper", SECOND_VOICE)
    if RVC:
        from tests.rvc_models import install_rvc_files
        install_rvc_files(root)
    return root


@dataclass
class Server:
    kind: str
    client: httpx.Client
    root: Path

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    def write_config(self, config: dict) -> None:
        """Writes confignew.json and has the server re-read it."""
        (self.root / "confignew.json").write_text(json.dumps(config))
        assert self.client.get("/api/reload_config").status_code == 200


def build_asgi_service(tmp_path_factory, name: str, telemetry: Telemetry | None = None) -> SpeechService:
    """The service behind the `asgi` server: in-process Piper (and RVC with the extra) on a fresh root."""
    root = make_root(tmp_path_factory, name)
    paths = ServerPaths.at(root)
    engines = {"piper": InProcessEngineClient(
        create=lambda hooks: PiperEngine.create(paths, EngineOptions(threads=2, parallel_steps=2), hooks),
        parallel_steps=2)}  # as serve_config.yaml runs Piper: two threads, two steps at once
    converter = None
    if RVC:
        from rvc.pipeline import VoiceConverter
        converter = InProcessConverter(VoiceConverter(paths.rvc_voices, paths.rvc_base), engines)
    return SpeechService(SettingsStore(paths), engines, list(ENGINE_CLASSES), "piper", converter=converter,
                         telemetry=telemetry)


def _behind_a_front(item: pytest.Item) -> bool:
    """Marked both_fronts, and not the in-process variant of a test run on both servers."""
    callspec = getattr(item, "callspec", None)
    in_process = callspec is not None and callspec.params.get("server") == "asgi"
    return item.get_closest_marker("both_fronts") is not None and not in_process


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(BOTH_FRONTS_ONLY):
        config.hook.pytest_deselected(items=[item for item in items if not _behind_a_front(item)])
        items[:] = [item for item in items if _behind_a_front(item)]


@pytest.fixture(scope="session")
def asgi_server(tmp_path_factory) -> Iterator[Server]:
    service = build_asgi_service(tmp_path_factory, "asgi-root")
    with TestClient(create_app(service)) as client:
        yield Server("asgi", client, service.settings.paths.root)


def _ray_processes() -> list[psutil.Process]:
    names = ("raylet", "gcs_server", "ray::", "dashboard", "log_monitor", "haproxy")
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(n in " ".join(proc.cmdline()) for n in names):
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.fixture(scope="session")
def serve_server(tmp_path_factory) -> Iterator[Server]:
    import embedded

    # With the coqui extra installed, the VITS and XTTS applications run beside Piper.
    coqui = importlib.util.find_spec("TTS") is not None
    root = make_coqui_root(tmp_path_factory, "serve-root") if coqui else make_root(tmp_path_factory, "serve-root")
    started = embedded.start_embedded(embedded.DEFAULT_CONFIG, root, "127.0.0.1", SERVE_PORT, timeout_s=300,
                                      metrics_port=SERVE_METRICS_PORT, proxy=SERVE_PROXY)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{SERVE_PORT}", timeout=120) as client:
            yield Server("serve", client, root)
    finally:
        embedded.stop_embedded(started, drain_first=False)
        deadline = time.monotonic() + 20
        while _ray_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        leftover = _ray_processes()
        assert not leftover, f"Ray processes left behind: {[p.cmdline()[:2] for p in leftover]}"


@pytest.fixture(scope="session")
def uvicorn_url(tmp_path_factory) -> Iterator[str]:
    """The `asgi` server's app on real HTTP (uvicorn on 127.0.0.1, its own root): for clients that
    need a socket (WebSockets, TCP fronts)."""
    from tests.support import serve_over_http

    with serve_over_http(create_app(build_asgi_service(tmp_path_factory, "http-root"))) as url:
        yield url


@pytest.fixture(params=["asgi", pytest.param("serve", marks=pytest.mark.serve)])
def api_url(request) -> str:
    """The API's base URL over real HTTP: in process (uvicorn) and behind real Serve."""
    if request.param == "asgi":
        return request.getfixturevalue("uvicorn_url")
    return str(request.getfixturevalue("serve_server").client.base_url).rstrip("/")


@pytest.fixture(params=["asgi", pytest.param("serve", marks=pytest.mark.serve)])
def server(request) -> Iterator[Server]:
    """The API under test (see shared_roots_restored)."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(autouse=True)
def shared_roots_restored(request) -> Iterator[None]:
    """Each test leaves the server roots that tests share as it found them: settings files put
    back, models and voices it added removed, and a server whose settings changed re-reads them.
    Tests may then run in any order (the suite runs shuffled)."""
    names = {name for name in ("asgi_server", "serve_server") if name in request.fixturenames}
    if "server" in request.fixturenames:
        names.add(f"{request.node.callspec.params['server']}_server")
    shared = [request.getfixturevalue(name) for name in sorted(names)]
    snapshots = [(srv, RootSnapshot(srv.root)) for srv in shared]
    yield
    for srv, snapshot in snapshots:
        if any(not path.startswith(("models", "voices")) for path in snapshot.restore()):
            srv.client.get("/api/reload_config")


@pytest.fixture(scope="session")
def coqui_root(tmp_path_factory) -> Path:
    pytest.importorskip("TTS", reason="the coqui extra is not installed")
    return make_coqui_root(tmp_path_factory, "coqui-root")


def make_coqui_root(tmp_path_factory, name: str) -> Path:
    """A server root with tiny Coqui models (two VITS, one XTTS) and XTTS reference voices of
    real speech (spoken by the bundled Piper voice)."""
    from tests.coqui_models import build_tiny_vits, build_tiny_xtts

    root = make_root(tmp_path_factory, name)
    build_tiny_vits(root / "models" / "vits" / "tiny-vctk")
    build_tiny_vits(root / "models" / "vits" / "tiny-vctk-22k", sample_rate=22050)  # same speakers, other rate
    build_tiny_vits(root / "models" / "vits" / "tiny-single", speakers=None, sample_rate=22050)
    build_tiny_xtts(root / "models" / "xtts" / "tiny-xtts")
    voices = root / "voices"
    speak_reference(voices / "female_01.wav", "This is a reference recording for voice cloning.")
    speak_reference(voices / "male_01.wav", "Another speaker reads a short sentence.")
    speak_reference(voices / "xtts_multi_voice_sets" / "narrators" / "one.wav", "The first narrator.")
    speak_reference(voices / "xtts_multi_voice_sets" / "narrators" / "two.wav", "The second narrator.")
    (voices / "xtts_latents").mkdir()
    (voices / "xtts_latents" / "saved.json").write_text(json.dumps({
        "gpt_cond_latent": [[[0.01 * ((i + j) % 7) for j in range(64)] for i in range(8)]],
        "speaker_embedding": [[[0.001 * (i % 11)] for i in range(512)]]}))
    return root


def speak_reference(path: Path, text: str) -> None:
    import wave

    from engines.piper import BUNDLED_VOICE
    from speechcore.engine_types import SynthesisRequest

    path.parent.mkdir(parents=True, exist_ok=True)
    engine = PiperEngine(Path("/nonexistent"), EngineOptions(threads=1))
    chunks = list(engine.synthesize(engine.load_voice(BUNDLED_VOICE), SynthesisRequest(text=text, voice=BUNDLED_VOICE)))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(chunks[0].sample_rate)
        wav.writeframes(b"".join(c.pcm for c in chunks))
