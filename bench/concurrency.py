"""Many users at once: requests per second and p50/p95 latency at 1, 2, 4 and 8 concurrent
clients with 1 and 2 Piper replicas; then a model swap under load (two tiny VITS models), with
the longest gap between completed requests and the number of failed requests.

    .venv/bin/python -m bench.concurrency [--requests 24]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

import embedded
from bench.report import save, summarize

PORT = 7884
TEXT = "Many users speak at once. The server keeps up with them."


def piper_config(replicas: int) -> Path:
    config = yaml.safe_load(embedded.DEFAULT_CONFIG.read_text())
    for app in config["applications"]:
        if app["name"] == "piper":
            deployment = app["deployments"][0]
            deployment.pop("autoscaling_config", None)
            deployment.update(num_replicas=replicas, max_ongoing_requests=8)
            app["args"]["threads"] = 1 if replicas > 1 else 2
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    return Path(handle.name)


def timed_post(client: httpx.Client) -> float:
    start = time.perf_counter()
    client.post("/api/tts-generate", data={"text_input": TEXT}).raise_for_status()
    return time.perf_counter() - start


def load_levels(replicas: int, requests: int) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as root:
        server = embedded.start_embedded(piper_config(replicas), Path(root), "127.0.0.1", PORT, engines=["piper"])
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=120,
                              limits=httpx.Limits(max_connections=16)) as client:
                for _ in range(4):
                    timed_post(client)
                for clients in (1, 2, 4, 8):
                    start = time.perf_counter()
                    with ThreadPoolExecutor(clients) as pool:
                        latencies = list(pool.map(lambda _: timed_post(client), range(requests)))
                    wall = time.perf_counter() - start
                    rows.append(
                        {"replicas": replicas, "clients": clients, "rps": requests / wall, **summarize(latencies)}
                    )
        finally:
            embedded.stop_embedded(server, drain_first=False)
    return rows


def swap_under_load() -> dict[str, float]:
    from tests.coqui_models import build_tiny_vits

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_tiny_vits(root / "models" / "vits" / "a")
        build_tiny_vits(root / "models" / "vits" / "b", sample_rate=22050)
        server = embedded.start_embedded(embedded.DEFAULT_CONFIG, root, "127.0.0.1", PORT, engines=["piper", "vits"])
        done, failed, stop = [], [], threading.Event()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=120) as client:
                client.post("/api/enginereload", params={"engine": "vits"})
                client.post("/api/reload", params={"tts_method": "vits - a"})

                def loop() -> None:
                    while not stop.is_set():
                        response = client.post(
                            "/api/tts-generate", data={"text_input": TEXT, "character_voice_gen": "p225"}
                        )
                        (done if response.status_code == 200 else failed).append(time.perf_counter())

                workers = [threading.Thread(target=loop) for _ in range(4)]
                for worker in workers:
                    worker.start()
                time.sleep(2)
                swap_start = time.perf_counter()
                status = client.post("/api/reload", params={"tts_method": "vits - b"}).json()["status"]
                swap_s = time.perf_counter() - swap_start
                time.sleep(2)
                stop.set()
                for worker in workers:
                    worker.join()
        finally:
            embedded.stop_embedded(server, drain_first=False)
    window = sorted(t for t in done if swap_start - 1 <= t <= swap_start + swap_s + 1)
    gaps = [b - a for a, b in zip(window, window[1:])]
    return {
        "status": status,
        "swap_s": swap_s,
        "requests_completed": len(done),
        "requests_failed": len(failed),
        "longest_gap_ms": max(gaps) * 1000 if gaps else float("nan"),
        "median_gap_ms": sorted(gaps)[len(gaps) // 2] * 1000 if gaps else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=24, help="requests per concurrency level")
    args = parser.parse_args()
    rows = load_levels(1, args.requests) + load_levels(2, args.requests)
    swap = swap_under_load()
    lines = [
        f"Piper, {args.requests} requests per level ({len(TEXT)} characters each).",
        "",
        "| replicas | clients | requests/s | p50 ms | p95 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['replicas']} | {r['clients']} | {r['rps']:.2f} | {r['median_ms']:.0f} | {r['p95_ms']:.0f} |"
        for r in rows
    ]
    lines += [
        "",
        "Model swap under load (4 clients, tiny VITS a -> b):",
        "",
        f"- answer: {swap['status']} after {swap['swap_s']:.2f} s",
        f"- requests completed: {swap['requests_completed']}, failed: {swap['requests_failed']}",
        f"- longest gap between completions around the swap: {swap['longest_gap_ms']:.0f} ms "
        f"(median gap {swap['median_gap_ms']:.0f} ms)",
    ]
    table = "\n".join(lines)
    path = save("concurrency", {"levels": rows, "swap": swap}, table)
    print(table)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
