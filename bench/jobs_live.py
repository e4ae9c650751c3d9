"""Live users while a long job runs: the latency of single-sentence `/api/tts-generate` requests
(one user at a time, a short pause between requests) with no job, while a 50,000-character job
runs on the same embedded server, and with no job again; the job's progress meanwhile.

    .venv/bin/python -m bench.jobs_live [--requests 40] [--characters 50000] [--lines-at-once N]

The goal: p95 with the job running at most twice the p95 without one."""

from __future__ import annotations

import argparse
import time

import httpx

from bench.harness import SENTENCES, VOICE, embedded_server, tuned_config
from bench.report import save, summarize

PORT = 7886
LIVE_TEXT = "A live user asks for one sentence while a long job runs."


def live_latencies(client: httpx.Client, requests: int, pause_s: float) -> list[float]:
    latencies = []
    for _ in range(requests):
        start = time.perf_counter()
        client.post("/api/tts-generate", data={"text_input": LIVE_TEXT, "character_voice_gen": VOICE,
                                                "language": "en"}).raise_for_status()
        latencies.append(time.perf_counter() - start)
        time.sleep(pause_s)
    return latencies


def long_text(characters: int) -> str:
    text, i = [], 0
    while sum(len(s) + 1 for s in text) < characters:
        text.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(text)[:characters]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--characters", type=int, default=50_000)
    parser.add_argument("--pause", type=float, default=0.3)
    parser.add_argument("--lines-at-once", type=int, default=None,
                        help="the job's sentences at once (default: serve_config.yaml's)")
    args = parser.parse_args()
    config = tuned_config(job_lines_at_once=args.lines_at_once) if args.lines_at_once else None
    with embedded_server(PORT, config) as client:
        live_latencies(client, 5, 0.1)  # warm up
        alone = live_latencies(client, args.requests, args.pause)
        job = client.post("/api/jobs", json={"text": long_text(args.characters), "character_voice_gen": VOICE,
                                             "language": "en", "response_format": "mp3"})
        job.raise_for_status()
        job_id = job.json()["id"]
        while client.get(f"/api/jobs/{job_id}").json()["segments_done"] < 2:
            time.sleep(0.2)
        before = client.get(f"/api/jobs/{job_id}").json()
        started = time.perf_counter()
        with_job = live_latencies(client, args.requests, args.pause)
        after = client.get(f"/api/jobs/{job_id}").json()
        job_wall = time.perf_counter() - started
        client.delete(f"/api/jobs/{job_id}").raise_for_status()
        time.sleep(1)
        alone_again = live_latencies(client, args.requests, args.pause)

    phases = {"no job": summarize(alone), "job running": summarize(with_job), "no job, after": summarize(alone_again)}
    segments_per_s = (after["segments_done"] - before["segments_done"]) / job_wall
    # Against the better of the two runs without a job: the stricter reading.
    ratio = phases["job running"]["p95_ms"] / min(phases["no job"]["p95_ms"], phases["no job, after"]["p95_ms"])
    lines = ["| phase | requests | median ms | p95 ms |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {s['n']} | {s['median_ms']:.0f} | {s['p95_ms']:.0f} |" for name, s in phases.items()]
    lines += ["", f"p95 with the job / the lower p95 without: **{ratio:.2f}** (goal: at most 2).",
              f"The job's sentences at once (`jobs.lines_at_once`): {args.lines_at_once or 'as configured'}.",
              f"The job ({args.characters:,} characters, {after['segments_total']} sentences) meanwhile: "
              f"{segments_per_s:.1f} sentences/s, {after['characters_per_second']} characters/s "
              f"({after['segments_done']} of {after['segments_total']} done when the live requests ended; "
              "then cancelled)."]
    table = "\n".join(lines)
    name = "jobs_live" if args.lines_at_once is None else f"jobs_live_lines{args.lines_at_once}"
    save(name, {"phases": phases, "p95_ratio": ratio, "job_segments_per_s": segments_per_s,
                "lines_at_once": args.lines_at_once,
                "job": {"characters": args.characters, "segments_total": after["segments_total"],
                        "characters_per_second": after["characters_per_second"]}}, table)
    print(table)


if __name__ == "__main__":
    main()
