"""XTTS continuous batching over real HTTP on the embedded server: concurrent streamed requests
(`GET /api/tts-generate-streaming`, two sentences each) on one replica, with batching on
(`max_batch` 16) and off (`max_batch` 1: requests take turns), at 1, 8 and 16 at once. Reports the
aggregate audio-seconds per second and the time to first audio (p50, p95), a markdown table and a
plot in bench/results/xtts_batching.*. The full-size model is XTTS v2's real architecture with
random weights, each sentence bounded to 40 audio tokens: the audio is noise, its amount and
timing are real.

    .venv/bin/python -m bench.xtts_batching [--tiny] [--levels 1 8 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

import embedded
from bench.harness import bar_chart
from bench.report import percentile, save
from tests.conftest import speak_reference
from tests.coqui_models import build_tiny_xtts

PORT = 7884
TEXT = "The lighthouse keeper climbed the stairs. He lit the lamp before the storm arrived."
WAV_HEADER = 44
SAMPLE_RATE, SAMPLE_WIDTH = 24_000, 2
MAX_AUDIO_TOKENS = 40
ALONE_RUNS = 3


def streamed_request(client: httpx.Client) -> tuple[float, float]:
    """(seconds to the first audio bytes, audio seconds received)."""
    params = {"text": TEXT, "voice": "reference.wav", "language": "en", "output_file": "bench"}
    start, first, received = time.perf_counter(), None, 0
    with client.stream("GET", "/api/tts-generate-streaming", params=params) as response:
        response.raise_for_status()
        for data in response.iter_raw():
            received += len(data)
            if first is None and received > WAV_HEADER:
                first = time.perf_counter() - start
    assert first is not None, "no audio arrived"
    return first, (received - WAV_HEADER) / SAMPLE_WIDTH / SAMPLE_RATE


def run_at_once(client: httpx.Client, level: int) -> tuple[float, list[tuple[float, float]]]:
    """(wall seconds, each request's result) for `level` streamed requests sent at once."""
    start = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        results = list(pool.map(lambda _: streamed_request(client), range(level)))
    return time.perf_counter() - start, results


def config_with(max_batch: int, concurrency: int) -> Path:
    config = yaml.safe_load(embedded.DEFAULT_CONFIG.read_text())
    for app in config["applications"]:
        if app["name"] == "xtts":
            app["args"]["max_batch"] = max_batch
            deployment = app["deployments"][0]
            deployment.pop("autoscaling_config", None)  # one replica: what batching does on its own
            deployment.update(num_replicas=1, max_ongoing_requests=max(concurrency, max_batch))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    return Path(handle.name)


def measure(root: Path, max_batch: int, levels: list[int]) -> list[dict[str, float]]:
    server = embedded.start_embedded(config_with(max_batch, max(levels)), root, "127.0.0.1", PORT, engines=["xtts"])
    rows = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=900) as client:
            streamed_request(client)  # warm: latents, first run
            for level in levels:
                # A lone request is the baseline of every ratio: its median of ALONE_RUNS runs.
                runs = [run_at_once(client, level) for _ in range(ALONE_RUNS if level == 1 else 1)]
                wall = statistics.median(r[0] for r in runs)
                results = [result for r in runs for result in r[1]]
                firsts = [r[0] for r in results]
                audio_s = sum(r[1] for r in results) / len(runs)
                row = {"max_batch": max_batch, "concurrent": level, "wall_s": wall, "audio_s": audio_s,
                       "audio_s_per_s": statistics.median(sum(x[1] for x in r[1]) / r[0] for r in runs),
                       "first_audio_p50_s": statistics.median(firsts), "first_audio_p95_s": percentile(firsts, 0.95)}
                print(f"max_batch {max_batch:2d}, {level:2d} at once: {row['audio_s_per_s']:.2f} audio-s/s, "
                      f"first audio p50 {row['first_audio_p50_s']:.2f} s", flush=True)
                rows.append(row)
    finally:
        embedded.stop_embedded(server, drain_first=False)
    return rows


def report(kind: str, rows: list[dict[str, float]]) -> str:
    alone = {r["max_batch"]: r for r in rows if r["concurrent"] == 1}
    lines = [f"{kind}, random weights, sentences bounded to {MAX_AUDIO_TOKENS} audio tokens; two sentences per "
             "request, streamed over HTTP, one replica (2 threads); a lone request is the median of 3 runs.", "",
             "| max_batch | at once | audio-seconds per second | x alone | first audio p50 s | x alone | p95 s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = alone[r["max_batch"]]
        lines.append(f"| {r['max_batch']} | {r['concurrent']} | {r['audio_s_per_s']:.2f} | "
                     f"{r['audio_s_per_s'] / base['audio_s_per_s']:.2f} | {r['first_audio_p50_s']:.2f} | "
                     f"{r['first_audio_p50_s'] / base['first_audio_p50_s']:.2f} | {r['first_audio_p95_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model (a quick check of the script)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 16], help="requests at once")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 1], help="max_batch values to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_tiny_xtts(root / "models" / "xtts" / "bench", max_audio_tokens=MAX_AUDIO_TOKENS, full_size=not args.tiny)
        speak_reference(root / "voices" / "reference.wav", "A short reference recording for the benchmark.")
        rows = [row for max_batch in args.batches for row in measure(root, max_batch, sorted(set([1, *args.levels])))]
    kind = "tiny XTTS" if args.tiny else "full-size XTTS v2 architecture"
    table = report(kind, rows)
    name = "xtts_batching" + ("_tiny" if args.tiny else "")
    path = save(name, {"kind": kind, "rows": rows}, table)
    levels = sorted({r["concurrent"] for r in rows})
    bar_chart(name, f"XTTS on one replica ({kind}): aggregate audio-seconds per second",
              [f"{n} at once" for n in levels],
              {f"max_batch {b}": [next(r["audio_s_per_s"] for r in rows if r["max_batch"] == b and r["concurrent"] == n)
                                  for n in levels] for b in args.batches}, "audio-seconds per second")
    print(table)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
