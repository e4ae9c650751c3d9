"""The GPU check: what one replica's share of a CUDA GPU does with the engines alone (no Ray, no
server), in one run of a few minutes.

- XTTS v2 (full-size architecture, random weights, sentences bounded to 40 audio tokens, two per
  request) at 1, 8 and 32 concurrent streams, continuous batching on and off: aggregate real-time
  factor (audio seconds per wall second), time to first audio p50 and p95, and peak GPU memory with
  the process capped at the replica's share (`torch.cuda.set_per_process_memory_fraction(0.5)`);
  from those the memory one more row costs, and the `max_batch` that fits the share.
- DeepSpeed on and off, where `deepspeed` imports: the GPT-2 stack's steps per second for one row,
  coqui's own streaming path and this project's batcher.
- VITS (coqui's default architecture) and RVC (v2 40 kHz, HuBERT base, rmvpe) real-time factors.
Writes <out>/gpu.md, gpu.json and gpu.png.

On the device machine (Python 3.12, torch for CUDA, no package index), with the wheels that
`scripts/gpu-wheels` gathers into .whl/ (about 58 MB):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    DS_BUILD_OPS=0 python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site \
        .whl/deepspeed-*.tar.gz  # optional: DeepSpeed compiles its kernels at first use
    PYTHONPATH=/tmp/site:. python3 -m bench.gpu_check --out $OUT

Here, a check of the script itself: `.venv/bin/python -m bench.gpu_check --device cpu --quick`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bench.report import percentile
from engines.base import EngineOptions
from engines.coqui_common import ModelFolders
from engines.vits import WEIGHT_FILES, VitsEngine
from engines.xtts import BatchOptions, LoadedXtts, load_xtts
from engines.xtts_batcher import Voice, XttsStream
from engines.xtts_sampling import Sampling
from speechcore.engine_types import SynthesisRequest
from tests.coqui_models import build_tiny_vits, build_tiny_xtts

SHARE = 0.5
SENTENCES = ["The lighthouse keeper climbed the stairs.", "He lit the lamp before the storm arrived."]
MAX_AUDIO_TOKENS = 40
PARAGRAPH = ("The lighthouse keeper climbed the narrow stairs every evening. He trimmed the wick and polished the "
             "great lens until it shone. Ships far out at sea counted on that light to find their way home.")


@dataclass
class XttsRow:
    batching: str
    streams: int
    rtf_total: float
    first_audio_p50_s: float
    first_audio_p95_s: float
    peak_memory_gib: float


def peak_memory_reset(device: torch.device) -> Callable[[], float]:
    """Starts a peak-memory window; the returned function reads it in GiB (0 on the CPU)."""
    if device.type != "cuda":
        return lambda: 0.0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return lambda: torch.cuda.max_memory_allocated() / 2**30


def run_streams(loaded: LoadedXtts, voice: Voice, count: int) -> tuple[float, list[float]]:
    """(audio seconds per wall second, first-audio seconds per stream) for `count` at once."""
    tokenizer = loaded.model.tokenizer
    sentences = [torch.tensor(tokenizer.encode(s.lower(), lang="en"), device=loaded.model.device).unsqueeze(0)
                 for s in SENTENCES]
    firsts, audio, lock = [], [0.0], threading.Lock()

    def one() -> None:
        start, first, seconds = time.perf_counter(), None, 0.0
        for chunk in loaded.batcher.submit(XttsStream(list(sentences), voice, Sampling(), 1.0, 24_000)):
            first = first if first is not None else time.perf_counter() - start
            seconds += chunk.duration_s
        with lock:
            firsts.append(first)
            audio[0] += seconds

    start = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return audio[0] / (time.perf_counter() - start), firsts


def measure_xtts(folder: Path, device: torch.device, levels: list[int], log: Callable[[str], None]) -> list[XttsRow]:
    """Batching on at every level and one more (where throughput stops growing says how far
    `max_batch` pays), off at every level. Each batched level is run once unmeasured first: a new
    batch size meets new kernel choices and allocator sizes (unwarmed, 8 streams measured 11x real
    time on an H200 against 19x warmed)."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    for batching, max_batch, counts in (("on", 2 * max(levels), [*levels, 2 * max(levels)]), ("off", 1, levels)):
        loaded = load_xtts("gpu-check", folder, device, False, BatchOptions(max_batch=max_batch))
        voice = Voice((torch.randn(1, 32, loaded.model.gpt.model_dim, generator=generator) * 0.5).to(device),
                      (torch.randn(1, 512, 1, generator=generator) * 0.1).to(device))
        run_streams(loaded, voice, 1)  # warm up (kernels, allocator)
        for level in counts:
            if batching == "on":
                run_streams(loaded, voice, level)
            peak = peak_memory_reset(device)
            rtf, firsts = run_streams(loaded, voice, level)
            row = XttsRow(batching, level, rtf, statistics.median(firsts), percentile(firsts, 0.95), peak())
            log(f"XTTS batching {batching}, {level} streams: {rtf:.1f}x real time, first audio p50 "
                f"{row.first_audio_p50_s:.2f} s p95 {row.first_audio_p95_s:.2f} s, peak {row.peak_memory_gib:.2f} GiB")
            rows.append(row)
        del loaded
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def decoder_steps_per_second(blocks: Callable[[torch.Tensor, bool], torch.Tensor], dim: int,
                             device: torch.device, dtype: torch.dtype) -> float:
    """GPT decoding steps per second of one row: two sentences of an 80-position prefix and 40
    steps each, through `blocks(hidden, new_sentence)` (the GPT-2 stack alone, random inputs)."""
    def sentence() -> int:
        blocks(torch.randn(1, 80, dim, device=device, dtype=dtype), True)
        for _ in range(MAX_AUDIO_TOKENS):
            blocks(torch.randn(1, 1, dim, device=device, dtype=dtype), False)
        return MAX_AUDIO_TOKENS

    sentence()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    steps = sentence() + sentence()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def hf_blocks(loaded: LoadedXtts) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """The GPT-2 stack as the batcher drives it: Hugging Face's forward with a growing cache."""
    from transformers import DynamicCache

    state: dict[str, object] = {}

    @torch.inference_mode()
    def run(hidden: torch.Tensor, new_sentence: bool) -> torch.Tensor:
        if new_sentence:
            state["cache"] = DynamicCache()
        return loaded.model.gpt.gpt(inputs_embeds=hidden, past_key_values=state["cache"], use_cache=True)[0]

    return run


def injected_blocks(loaded: LoadedXtts) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """The blocks DeepSpeed injected, called one by one: each keeps its own keys and values and
    starts a new sequence when handed more than one position."""
    stack = loaded.model.gpt.gpt

    @torch.inference_mode()
    def run(hidden: torch.Tensor, new_sentence: bool) -> torch.Tensor:
        for block in stack.h:
            hidden = block(hidden, use_cache=True)
            while isinstance(hidden, tuple):
                hidden = hidden[0]
        return stack.ln_f(hidden)

    return run


def deepspeed_paths(loaded: LoadedXtts, injected: bool, device: torch.device) -> dict[str, Callable[[], object]]:
    dim = loaded.model.gpt.model_dim
    cond = torch.randn(1, 32, dim, device=device) * 0.5
    speaker = torch.randn(1, 512, 1, device=device) * 0.1
    blocks = injected_blocks(loaded) if injected else hf_blocks(loaded)

    def coqui_stream() -> float:
        times = []
        for _ in range(3):
            start, audio = time.perf_counter(), 0
            for sentence in SENTENCES:
                stream = loaded.model.inference_stream(sentence, "en", cond, speaker, enable_text_splitting=False)
                audio += sum(chunk.shape[-1] for chunk in stream)
            times.append((audio / 24_000) / (time.perf_counter() - start))
        return round(statistics.median(times[1:]), 2)

    def batcher(streams: int) -> dict[str, float]:
        run_streams(loaded, Voice(cond, speaker), streams)
        rtf, firsts = run_streams(loaded, Voice(cond, speaker), streams)
        return {"x_real_time": round(rtf, 2), "first_audio_p50_s": round(statistics.median(firsts), 3)}

    return {
        "gpt_steps_per_s": lambda: round(decoder_steps_per_second(blocks, dim, device, torch.float32), 1),
        "coqui_stream_x_real_time": coqui_stream,
        "batcher_1": lambda: batcher(1),
        "batcher_8": lambda: batcher(8),
    }


def measure_deepspeed(folder: Path, device: torch.device, log: Callable[[str], None]) -> dict[str, object]:
    """DeepSpeed off and on (where it imports): coqui's own streaming of one request (the path
    DeepSpeed's injected kernels were written for), this project's batcher on a model loaded with
    DeepSpeed, and the GPT-2 stack's decoding steps per second alone (Hugging Face's forward off,
    the injected blocks on): what DeepSpeed could give one row, whatever the paths around it."""
    if device.type != "cuda" or importlib.util.find_spec("deepspeed") is None:
        return {"status": "skipped: needs CUDA and the deepspeed package"}
    result: dict[str, object] = {}

    def attempt(key: str, what: Callable[[], object]) -> None:
        try:
            result[key] = what()
            log(f"DeepSpeed {key}: {result[key]}")
        except Exception as exc:  # noqa: BLE001 - a DeepSpeed path that fails is a result to report
            result[key] = f"failed: {type(exc).__name__}: {exc}"[:400]
            log(f"DeepSpeed {key} failed: {exc}")

    for enabled in (False, True):
        state = "on" if enabled else "off"
        started = time.perf_counter()
        try:
            loaded = load_xtts("gpu-check", folder, device, enabled, BatchOptions(max_batch=8))
        except Exception as exc:  # noqa: BLE001
            result[f"load_{state}"] = f"failed: {type(exc).__name__}: {exc}"[:400]
            log(f"DeepSpeed {state}: load failed: {exc}")
            continue
        result[f"load_s_{state}"] = round(time.perf_counter() - started, 1)
        for key, what in deepspeed_paths(loaded, enabled, device).items():
            attempt(f"{key}_{state}", what)
        del loaded
        torch.cuda.empty_cache()
    return result


def measure_vits(root: Path, device: torch.device, full_size: bool, log: Callable[[str], None]) -> float:
    build_tiny_vits(root / "vits" / "bench", speakers=None, sample_rate=22050, full_size=full_size)
    folders = ModelFolders(root / "vits", "vits", ("config.json",), WEIGHT_FILES)
    engine = VitsEngine(folders, EngineOptions(threads=4, device=device.type))
    voice = engine.load_voice("default")
    request = SynthesisRequest(text=PARAGRAPH, voice="default")
    list(engine.synthesize(voice, request))  # warm up
    start = time.perf_counter()
    audio = sum(c.duration_s for c in engine.synthesize(voice, request))
    speed = audio / (time.perf_counter() - start)
    log(f"VITS: {speed:.1f}x real time")
    return speed


def measure_rvc(root: Path, device: torch.device, full_size: bool, log: Callable[[str], None]) -> float:
    from rvc.pipeline import VoiceConverter
    from speechcore.rvc_requests import ConversionRequest
    from tests.rvc_models import build_tiny_embedder, build_tiny_rmvpe, build_tiny_voice

    voices, base = root / "rvc" / "voices", root / "rvc" / "base"
    build_tiny_voice(voices / "bench.pth", "v2", True, 40000, full_size=full_size)
    build_tiny_embedder(base, "hubert_base", full_size=full_size)
    build_tiny_rmvpe(base / "rmvpe.pt", full_size=full_size)
    converter = VoiceConverter(voices, base, device=device.type)
    voice = converter.load_voice("bench.pth")
    rate = 16_000
    t = np.arange(10 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * (140 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t)).astype(
        np.float32
    )  # a gliding tone
    request = ConversionRequest(model="bench.pth", f0_method="rmvpe")
    converter.convert(voice, audio[: 2 * rate], rate, request)  # warm up
    start = time.perf_counter()
    converter.convert(voice, audio, rate, request)
    speed = 10.0 / (time.perf_counter() - start)
    log(f"RVC (rmvpe): {speed:.1f}x real time")
    return speed


def memory_per_row(rows: list[XttsRow]) -> tuple[float, int] | None:
    """(GiB one more batched row costs, the max_batch that fits the share), from the peaks."""
    on = sorted((r for r in rows if r.batching == "on"), key=lambda r: r.streams)
    if len(on) < 2 or on[-1].peak_memory_gib <= 0 or not torch.cuda.is_available():
        return None
    per_row = max((on[-1].peak_memory_gib - on[0].peak_memory_gib) / (on[-1].streams - on[0].streams), 1e-6)
    share = SHARE * torch.cuda.get_device_properties(0).total_memory / 2**30
    fits = math.floor((share - on[0].peak_memory_gib) / per_row * 0.8) + 1  # 20% headroom
    return per_row, fits


def report(device: str, kind: str, rows: list[XttsRow], deepspeed: dict[str, object], vits: float, rvc: float) -> str:
    lines = [
        f"{kind} on {device}, one replica's share ({SHARE:.0%} of the GPU's memory), engines without Ray.",
        "",
        "| XTTS batching | streams | x real time (total) | first audio p50 s | p95 s | peak memory GiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.batching} | {r.streams} | {r.rtf_total:.1f} | {r.first_audio_p50_s:.2f} | "
        f"{r.first_audio_p95_s:.2f} | {r.peak_memory_gib:.2f} |"
        for r in rows
    ]
    sizing = memory_per_row(rows)
    if sizing:
        lines.append(
            f"\nMemory per batched row: {sizing[0] * 1024:.0f} MiB; max_batch that fits the share with 20% "
            f"headroom: {sizing[1]}."
        )
    lines += [
        "",
        "DeepSpeed off and on (coqui's streaming path, one request; this project's batcher at 1 and 8 streams): "
        f"{json.dumps(deepspeed)}",
        "",
        "| engine | x real time |",
        "|---|---:|",
        f"| VITS | {vits:.1f} |",
        f"| RVC (rmvpe) | {rvc:.1f} |",
    ]
    return "\n".join(lines)


def plot(path: Path, rows: list[XttsRow]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, first) = plt.subplots(1, 2, figsize=(10, 4))
    for batching in ("on", "off"):
        mine = [r for r in rows if r.batching == batching]
        speed.plot([r.streams for r in mine], [r.rtf_total for r in mine], marker="o", label=f"batching {batching}")
        first.plot(
            [r.streams for r in mine], [r.first_audio_p50_s for r in mine], marker="o", label=f"batching {batching}"
        )
    speed.set(xlabel="concurrent streams", ylabel="x real time (total)", title="XTTS throughput")
    first.set(xlabel="concurrent streams", ylabel="first audio p50 (s)", title="XTTS time to first audio")
    for ax in (speed, first):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny models and few streams: checks the script itself")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here; use --device cpu --quick to check the script")
        torch.cuda.set_per_process_memory_fraction(SHARE)
    device = torch.device(args.device)
    torch.set_num_threads(4)
    levels = [1, 2] if args.quick else [1, 8, 32]
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {line}", flush=True)

    name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({platform.machine()})"
    kind = "tiny models (--quick)" if args.quick else "full-size XTTS v2, VITS and RVC architectures, random weights"
    stem = "gpu" if args.device == "cuda" else "gpu_check_cpu"
    args.out.mkdir(parents=True, exist_ok=True)

    def write(rows: list[XttsRow], deepspeed: dict[str, object], vits: float, rvc: float) -> str:
        """Saves what is measured so far: DeepSpeed goes last (it may compile its kernels for
        minutes), so a run cut short by its time limit still leaves the rest."""
        table = report(name, kind, rows, deepspeed, vits, rvc)
        (args.out / f"{stem}.md").write_text(
            f"# GPU check\n\n{time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f} s\n\n{table}\n")
        numbers = {"device": name, "kind": kind, "xtts": [asdict(r) for r in rows], "deepspeed": deepspeed,
                   "vits_x_real_time": vits, "rvc_x_real_time": rvc}
        (args.out / f"{stem}.json").write_text(json.dumps(numbers, indent=2) + "\n")
        plot(args.out / f"{stem}.png", rows)
        return table

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = build_tiny_xtts(root / "xtts", max_audio_tokens=MAX_AUDIO_TOKENS, full_size=not args.quick)
        log("models built")
        rows = measure_xtts(folder, device, levels, log)
        vits = measure_vits(root, device, not args.quick, log)
        rvc = measure_rvc(root, device, not args.quick, log)
        write(rows, {"status": "not measured yet"}, vits, rvc)
        deepspeed = measure_deepspeed(folder, device, log)
    print(write(rows, deepspeed, vits, rvc))


if __name__ == "__main__":
    main()
