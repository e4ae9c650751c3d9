"""Cold starts of an engine scaled to zero: XTTS (tiny model here, the real architecture with
`--full-size`) with `min_replicas: 0`, a request that finds it at zero against the same request
once a replica runs, whole file and streamed (time to first audio), a few cycles.

    .venv/bin/python -m bench.cold_start [--cycles 3] [--full-size]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import yaml

import embedded
from bench.coqui_scaling import TEXT, first_chunk_s, xtts_bench_root
from bench.report import save
from tests.ray_head import QUICK_AUTOSCALING
from tests.support import deployment_view

PORT = 7887


def _at_zero() -> bool:
    xtts = deployment_view(f"http://127.0.0.1:{PORT}", "tts-xtts")
    return xtts["replicas"] == {} and xtts["target_replicas"] == 0


def _wait_for_zero(timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not _at_zero():
        if time.monotonic() > deadline:
            raise RuntimeError("XTTS did not scale to zero")
        time.sleep(0.5)


def _whole_s(client: httpx.Client) -> float:
    start = time.perf_counter()
    answer = client.post("/api/tts-generate", data={"text_input": TEXT, "character_voice_gen": "reference.wav"})
    answer.raise_for_status()
    return time.perf_counter() - start


def measure(root: Path, cycles: int) -> list[dict[str, float]]:
    config = yaml.safe_load(embedded.DEFAULT_CONFIG.read_text())
    xtts = next(app for app in config["applications"] if app["name"] == "xtts")
    xtts["deployments"][0]["autoscaling_config"].update(min_replicas=0, max_replicas=1, downscale_delay_s=2,
                                                        look_back_period_s=2, metrics_interval_s=1)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    os.environ.update(QUICK_AUTOSCALING)
    server = embedded.start_embedded(Path(handle.name), root, "127.0.0.1", PORT, engines=["xtts"], rvc=False)
    rows = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=600) as client:
            for cycle in range(cycles):
                _wait_for_zero()
                cold_whole, warm_whole = _whole_s(client), _whole_s(client)
                _wait_for_zero()
                cold_first, warm_first = first_chunk_s(client), first_chunk_s(client)
                rows.append({"cycle": cycle + 1, "cold_whole_s": cold_whole, "warm_whole_s": warm_whole,
                             "cold_first_audio_s": cold_first, "warm_first_audio_s": warm_first})
                print(rows[-1], flush=True)
    finally:
        embedded.stop_embedded(server, drain_first=False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="the real XTTS v2 architecture (random weights)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kind = xtts_bench_root(Path(tmp), args.full_size)
        rows = measure(Path(tmp), args.cycles)
    lines = [f"{kind}, random weights, on the CPU; `min_replicas: 0`, each cold request after the engine is at zero.",
             "", "| cycle | whole file, cold s | whole file, warm s | first audio (stream), cold s | "
                 "first audio, warm s |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['cycle']} | {r['cold_whole_s']:.2f} | {r['warm_whole_s']:.2f} | {r['cold_first_audio_s']:.2f} | "
              f"{r['warm_first_audio_s']:.2f} |" for r in rows]
    added = [r["cold_whole_s"] - r["warm_whole_s"] for r in rows]
    lines.append(f"\nA cold start adds {statistics.median(added):.1f} s (median) to a whole-file request here.")
    table = "\n".join(lines)
    path = save("cold_start" + ("_full" if args.full_size else ""), {"kind": kind, "rows": rows}, table)
    print(table)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
