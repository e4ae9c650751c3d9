"""Soak: does the server's memory stay flat under sustained load?

The embedded server (Piper, shipped serve_config.yaml) on 127.0.0.1 takes `--requests` mixed
requests (10,000 by default, and never more than `--minutes`) from `--clients` clients. Each client
goes round: generate + fetch the file (the AllTalk flow, two requests), a GET stream, an OpenAI mp3.
Texts are 3 to 20 words drawn at random (seeded), so the engine keeps seeing new input lengths.
Every few seconds the resident memory and open descriptors of each of the server's processes are
recorded. The result: per process, memory at the start, the middle and the end, and the growth over
the second half (a plateau is under 1%), in bench/results/soak.{json,md,png}.

    .venv/bin/python -m bench.soak                       # about 15 minutes on 2 cores
    .venv/bin/python -m bench.soak --requests 2000       # a shorter look
    .venv/bin/python -m bench.soak --requests 20000 --minutes 55 --name soak_20k
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psutil

from bench.harness import SENTENCES, VOICE, embedded_server
from bench.report import RESULTS, save

PORT = 7895
PLATEAU = 0.01
"""Growth over the second half of the run below which a process's memory counts as flat."""
PROCESSES = {
    "piper replica": "ServeReplica:piper",
    "ingress": "ServeReplica:alltalk",
    "proxy": "ProxyActor",
    "controller": "ServeController",
    "raylet": "raylet",
    "gcs_server": "gcs_server",
}
"""What the soak watches, by a piece of each process's command line."""
WORDS = " ".join(SENTENCES).replace(",", "").replace(".", "").split()


@dataclass
class Sample:
    at_s: float
    requests: int
    rss_mib: dict[str, float]
    fds: dict[str, int]


@dataclass
class Load:
    done: int = 0
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, n: int = 1) -> None:
        with self.lock:
            self.done += n


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) + "."


def _round(client: httpx.Client, rng: random.Random, load: Load) -> None:
    """One client's round: four requests."""
    generated = client.post("/api/tts-generate", data={"text_input": _text(rng), "character_voice_gen": VOICE})
    generated.raise_for_status()
    client.get(generated.json()["output_file_url"]).raise_for_status()
    load.count(2)
    with client.stream("GET", "/api/tts-generate-streaming", params={
            "text": _text(rng), "voice": VOICE, "language": "en", "output_file": "soak"}) as stream:
        stream.raise_for_status()
        for _ in stream.iter_raw():
            pass
    load.count()
    speech = client.post("/v1/audio/speech", json={"model": "tts-1", "input": _text(rng), "voice": VOICE,
                                                   "response_format": "mp3"})
    speech.raise_for_status()
    load.count()


def _server_processes() -> dict[str, psutil.Process]:
    found: dict[str, psutil.Process] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        for name, marker in PROCESSES.items():
            if marker in line and name not in found:
                found[name] = proc
    return found


def _sample(processes: dict[str, psutil.Process], started: float, requests: int) -> Sample:
    rss, fds = {}, {}
    for name, proc in processes.items():
        try:
            rss[name] = proc.memory_info().rss / 2**20
            fds[name] = proc.num_fds()
        except psutil.Error:
            pass
    return Sample(time.monotonic() - started, requests, rss, fds)


def soak(client: httpx.Client, clients: int, requests: int, minutes: float, every_s: float,
         progress: Callable[[str], None] = print) -> tuple[list[Sample], Load]:
    load = Load()
    stop = threading.Event()
    deadline = time.monotonic() + minutes * 60

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set() and load.done < requests and time.monotonic() < deadline:
            try:
                _round(client, rng, load)
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                load.failed.append(repr(exc))
                load.count()

    processes = _server_processes()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    samples = [_sample(processes, started, 0)]
    try:
        while any(thread.is_alive() for thread in threads):
            time.sleep(every_s)
            samples.append(_sample(processes, started, load.done))
            if len(samples) % 12 == 0:
                progress(f"[{samples[-1].at_s:5.0f} s] {load.done} requests, {len(load.failed)} failed; MiB: "
                         + ", ".join(f"{n} {v:.0f}" for n, v in samples[-1].rss_mib.items()))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    samples.append(_sample(processes, started, load.done))
    return samples, load


def _at(samples: list[Sample], requests: float) -> Sample:
    """The first sample at or after `requests` requests."""
    return next(s for s in samples if s.requests >= requests)


def _trend_mib_per_request(samples: list[Sample], name: str) -> float:
    """The least-squares slope of a process's memory over the requests served: a trend that one
    sample's ups and downs (a garbage collection, an allocator's arena) do not move."""
    points = [(s.requests, s.rss_mib[name]) for s in samples if name in s.rss_mib]
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


def summarize(samples: list[Sample]) -> list[dict[str, float | str | bool]]:
    """Per process: memory at the start, the middle and the end; the growth over the second half,
    as measured (end - middle) and as its trend (the slope over the second half's samples)."""
    total = samples[-1].requests
    middle, end = _at(samples, total / 2), samples[-1]
    second_half = [s for s in samples if s.requests >= middle.requests]
    first = _at(samples, 1)
    rows = []
    for name in PROCESSES:
        if name not in end.rss_mib:
            continue
        growth = (end.rss_mib[name] - middle.rss_mib[name]) / middle.rss_mib[name]
        trend = _trend_mib_per_request(second_half, name)
        trend_growth = trend * (end.requests - middle.requests) / middle.rss_mib[name]
        rows.append({"process": name, "start_mib": first.rss_mib[name], "middle_mib": middle.rss_mib[name],
                     "end_mib": end.rss_mib[name], "second_half_growth": growth,
                     "second_half_trend_growth": trend_growth, "trend_mib_per_1000_requests": 1000 * trend,
                     "fds_middle": middle.fds[name], "fds_end": end.fds[name], "flat": growth < PLATEAU})
    return rows


def plot(results_name: str, samples: list[Sample]) -> None:
    """Left: each process's resident memory. Right: the same relative to the middle of the run,
    where a flat second half is a line that stays within 1%."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    middle = _at(samples, samples[-1].requests / 2)
    fig, (absolute, relative) = plt.subplots(1, 2, figsize=(13, 5))
    for name in PROCESSES:
        points = [(s.requests, s.rss_mib[name]) for s in samples if name in s.rss_mib]
        if points and name in middle.rss_mib:
            absolute.plot([p[0] for p in points], [p[1] for p in points], label=name)
            relative.plot([p[0] for p in points], [100 * (p[1] / middle.rss_mib[name] - 1) for p in points],
                          label=name)
    for ax in (absolute, relative):
        ax.axvline(middle.requests, color="grey", linestyle=":")
        ax.set_xlabel("requests served")
    absolute.set_yscale("log")
    absolute.set_ylabel("resident memory (MiB)")
    absolute.set_title("Resident memory per server process")
    relative.axhspan(-100 * PLATEAU, 100 * PLATEAU, color="green", alpha=0.1, label="±1% of the middle")
    relative.set_ylim(-6, 6)
    relative.set_ylabel("% of its memory at the middle of the run")
    relative.set_title("Second half: growth against the middle")
    relative.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / f"{results_name}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests in all (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=45, help="stop after this long (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--every", type=float, default=5, help="seconds between samples (default: %(default)s)")
    parser.add_argument("--name", default="soak", help="results/<name>.{json,md,png} (default: %(default)s)")
    parser.add_argument("--report", action="store_true",
                        help="only rebuild <name>.md and <name>.png from the samples in <name>.json")
    args = parser.parse_args()
    if args.report:
        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        samples = [Sample(**s) for s in saved["samples"]]
        load = Load(done=saved["requests"], failed=saved["failed"])
        args.clients = saved["clients"]
    else:
        with embedded_server(PORT) as client:
            samples, load = soak(client, args.clients, args.requests, args.minutes, args.every)
    rows = summarize(samples)
    plot(args.name, samples)
    wall = samples[-1].at_s
    table = "\n".join([
        f"{load.done} requests ({len(load.failed)} failed) from {args.clients} clients in {wall / 60:.1f} min "
        f"({load.done / wall:.1f} requests/s): generate + fetch, GET stream, OpenAI mp3 in turn; texts of 3-20 "
        "words. Growth is over the second half of the run, measured (end - middle) and as the trend of its "
        "samples; flat is a measured growth under 1%.", "",
        "| process | start MiB | middle MiB | end MiB | second-half growth | trend | trend MiB / 1000 requests "
        "| fds middle → end | flat |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *(f"| {r['process']} | {r['start_mib']:.0f} | {r['middle_mib']:.0f} | {r['end_mib']:.0f} | "
          f"{100 * r['second_half_growth']:+.2f}% | {100 * r['second_half_trend_growth']:+.2f}% | "
          f"{r['trend_mib_per_1000_requests']:+.2f} | {r['fds_middle']} → {r['fds_end']} | "
          f"{'yes' if r['flat'] else 'NO'} |" for r in rows),
        "", f"![resident memory per process]({args.name}.png)"])
    print(table)
    save(args.name, {"requests": load.done, "failed": load.failed[:20], "clients": args.clients, "rows": rows,
                  "samples": [s.__dict__ for s in samples]}, table)


if __name__ == "__main__":
    main()
