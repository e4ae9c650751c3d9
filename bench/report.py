"""Summaries and result files shared by the benchmarks: JSON for machines, markdown for people."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def summarize(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(ordered), "median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000,
            "mean_ms": statistics.fmean(ordered) * 1000}


def save(name: str, results: dict[str, object], table: str) -> Path:
    """Writes results/<name>.json and results/<name>.md; returns the markdown path."""
    RESULTS.mkdir(exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
            "python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    md = RESULTS / f"{name}.md"
    md.write_text(f"# {name}\n\n{meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}\n\n{table}\n")
    return md
