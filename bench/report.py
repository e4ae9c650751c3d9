"""Summaries and result files shared by the benchmarks: JSON for machines, markdown for people."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0..1) of `values`; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def summarize(samples_s: list[float]) -> dict[str, float]:
    return {"n": len(samples_s), "median_ms": statistics.median(samples_s) * 1000,
            "p95_ms": percentile(samples_s, 0.95) * 1000, "mean_ms": statistics.fmean(samples_s) * 1000}


def save(name: str, results: dict[str, object], table: str) -> Path:
    """Writes results/<name>.json and results/<name>.md; returns the markdown path."""
    RESULTS.mkdir(exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
            "python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    md = RESULTS / f"{name}.md"
    md.write_text(f"# {name}\n\n{meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}\n\n{table}\n")
    return md
