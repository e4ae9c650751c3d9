"""RVC conversion speed on this machine: real-time factor (seconds of compute per second of audio)
for 10 s of speech, per f0 method, through the same VoiceConverter the rvc deployment runs.
The voice and HuBERT have the full community shapes (v2, 40 kHz, HuBERT base) with random
weights (rmvpe too): the audio is noise, the compute is real.

    .venv/bin/python -m bench.rvc_rtf [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.report import save
from engines.base import EngineOptions
from engines.piper import BUNDLED_VOICE, PiperEngine
from rvc.pipeline import VoiceConverter
from speechcore.engine_types import SynthesisRequest
from speechcore.rvc_requests import ConversionRequest
from tests.rvc_models import build_tiny_embedder, build_tiny_rmvpe, build_tiny_voice

METHODS = ["pm", "harvest", "dio", "crepe-tiny", "crepe", "fcpe", "rmvpe"]
TEXT = ("The lighthouse keeper climbed the narrow stairs every evening. He trimmed the wick and polished the "
        "great lens until it shone. Ships far out at sea counted on that light to find their way home.")


def ten_seconds_of_speech() -> tuple[np.ndarray, int]:
    engine = PiperEngine(Path("/nonexistent"), EngineOptions(threads=2))
    chunks = list(engine.synthesize(engine.load_voice(BUNDLED_VOICE), SynthesisRequest(text=TEXT, voice=BUNDLED_VOICE)))
    rate = chunks[0].sample_rate
    audio = np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2").astype(np.float32) / 32768
    return np.resize(audio, 10 * rate), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    audio, rate = ten_seconds_of_speech()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        voices, base = Path(tmp) / "voices", Path(tmp) / "base"
        build_tiny_voice(voices / "full.pth", "v2", True, 40000, full_size=True)
        build_tiny_embedder(base, "hubert_base", full_size=True)
        build_tiny_rmvpe(base / "rmvpe.pt", full_size=True)
        converter = VoiceConverter(voices, base)
        voice = converter.load_voice("full.pth")
        for method in METHODS:
            request = ConversionRequest(model="full.pth", f0_method=method)
            converter.convert(voice, audio[: 2 * rate], rate, request)  # warm up (models load, caches fill)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                converter.convert(voice, audio, rate, request)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            results[method] = {"median_s": seconds, "rtf": seconds / 10.0}
            print(f"{method:>10}: {seconds:6.2f} s for 10 s of audio (RTF {seconds / 10:.3f})", flush=True)
    rows = "\n".join(
        f"| {m} | {r['median_s']:.2f} | {r['rtf']:.3f} | {1 / r['rtf']:.1f}x |" for m, r in results.items()
    )
    table = (
        "RVC v2 40 kHz (full-size shapes, random weights) + HuBERT base, "
        f"{args.threads} torch threads, 10 s of Piper speech, median of {args.runs} runs.\n\n"
        "| f0 method | seconds | real-time factor | speed (x real time) |\n|---|---:|---:|---:|\n" + rows
    )
    print(save("rvc_rtf", {"threads": args.threads, "runs": args.runs, "methods": results}, table))


if __name__ == "__main__":
    main()
