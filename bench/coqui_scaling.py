"""XTTS through the server with 1 and 2 replicas under concurrent load: aggregate audio-seconds
per second (8 concurrent clients, non-streamed) and the first-chunk latency of streaming.
On a GPU machine the replicas take 0.5 GPU each (serve_config.yaml); on the CPU the tiny model
stands in. Random weights: the audio is noise but its amount and timing are real.

    .venv/bin/python -m bench.coqui_scaling [--full-size] [--requests 4]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

import embedded
from bench.report import save
from tests.conftest import speak_reference
from tests.coqui_models import build_tiny_xtts

PORT = 7883
TEXT = "The lighthouse keeper climbed the stairs. He lit the lamp before the storm arrived."
CLIENTS = 8


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


def one_request(client: httpx.Client) -> float:
    response = client.post("/api/tts-generate", data={"text_input": TEXT, "character_voice_gen": "reference.wav"})
    response.raise_for_status()
    return wav_seconds(client.get(response.json()["output_file_url"]).content)


def first_chunk_s(client: httpx.Client) -> float:
    params = {"text": TEXT, "voice": "reference.wav", "language": "en", "output_file": "x"}
    start = time.perf_counter()
    received = 0
    with client.stream("GET", "/api/tts-generate-streaming", params=params) as response:
        for data in response.iter_raw():
            received += len(data)
            if received > 44:
                first = time.perf_counter() - start
                break
    return first


def measure(root: Path, replicas: int, requests_per_client: int) -> dict[str, float]:
    config = yaml.safe_load(embedded.DEFAULT_CONFIG.read_text())
    for app in config["applications"]:
        if app["name"] == "xtts":
            deployment = app["deployments"][0]
            deployment.pop("autoscaling_config", None)  # a fixed count: Serve refuses both
            deployment.update(num_replicas=replicas, max_ongoing_requests=CLIENTS)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    server = embedded.start_embedded(Path(handle.name), root, "127.0.0.1", PORT, engines=["xtts"])
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=600) as client:
            for _ in range(replicas * 2):
                one_request(client)  # warm every replica (latents, first run)
            start = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                audio = sum(pool.map(lambda _: one_request(client), range(CLIENTS * requests_per_client)))
            wall = time.perf_counter() - start
            firsts = [first_chunk_s(client) for _ in range(5)]
    finally:
        embedded.stop_embedded(server, drain_first=False)
    return {"replicas": replicas, "requests": CLIENTS * requests_per_client, "audio_s": audio, "wall_s": wall,
            "audio_s_per_s": audio / wall, "first_chunk_ms_median": statistics.median(firsts) * 1000}


def xtts_bench_root(root: Path, full_size: bool) -> str:
    """A server root with the benchmark's XTTS model (random weights) and reference voice; what
    model it is, in words."""
    build_tiny_xtts(root / "models" / "xtts" / "bench", max_audio_tokens=120 if full_size else 48, full_size=full_size)
    speak_reference(root / "voices" / "reference.wav", "A short reference recording for the benchmark.")
    return "full-size XTTS v2 architecture" if full_size else "tiny XTTS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full-size", action="store_true", help="the real XTTS v2 architecture (random weights)")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kind = xtts_bench_root(Path(tmp), args.full_size)
        rows = [measure(Path(tmp), replicas, args.requests) for replicas in (1, 2)]
    lines = [
        f"{kind}, random weights, {CLIENTS} concurrent clients, {rows[0]['requests']} requests per run.",
        "",
        "| replicas | audio seconds | wall seconds | audio-seconds per second | streaming first chunk, median ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['replicas']} | {r['audio_s']:.1f} | {r['wall_s']:.1f} | {r['audio_s_per_s']:.2f} | "
        f"{r['first_chunk_ms_median']:.0f} |"
        for r in rows
    ]
    lines.append(f"\n2 replicas / 1 replica throughput: {rows[1]['audio_s_per_s'] / rows[0]['audio_s_per_s']:.2f}")
    table = "\n".join(lines)
    path = save("coqui_scaling" + ("_full" if args.full_size else ""), {"kind": kind, "rows": rows}, table)
    print(table)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
