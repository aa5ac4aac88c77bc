"""PNG plots with matplotlib: throughput by contender (single, concurrent, proxy, download); peak RSS by file size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from benchmarks.rows import MiB, rows_of, size_text


def plot_all(result: dict[str, Any], directory: Path, stem: str) -> list[Path]:
    scenarios = ("single", "concurrent", "proxy", "download")
    rows = [row for row in rows_of(result["runs"]) if row.scenario in scenarios]
    written = []
    for scenario in scenarios:
        for size in sorted({row.size for row in rows if row.scenario == scenario}):
            group = [row for row in rows if row.scenario == scenario and row.size == size and row.ok_runs]
            if group:
                name = f"{stem}-{scenario}-{size_text(size).replace(' ', '')}.png"
                written.append(_throughput(group, directory / name))
    single = [row for row in rows if row.scenario == "single" and row.ok_runs]
    if single:
        written.append(_rss_by_size(single, directory / f"{stem}-rss.png"))
    return written


def _throughput(group: list[Any], path: Path) -> Path:
    group = sorted(group, key=lambda row: row.median("throughput_mb_s") or 0.0)
    names = [row.contender for row in group]
    medians = [row.median("throughput_mb_s") for row in group]
    spreads = [row.spread("throughput_mb_s") for row in group]
    lower = [median - low for median, (low, _high) in zip(medians, spreads, strict=True)]
    upper = [high - median for median, (_low, high) in zip(medians, spreads, strict=True)]
    colours = ["tab:green" if name.startswith("ingest") else "tab:grey" for name in names]
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    axes.barh(names, medians, xerr=[lower, upper], color=colours, capsize=3)
    first = group[0]
    what = "download" if first.scenario == "download" else "upload"
    axes.set_title(f"{first.scenario}: {first.uploads} x {size_text(first.size)} {what}, median MB/s (min-max)")
    axes.set_xlabel("MB/s (client wall time)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _rss_by_size(rows: list[Any], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name in dict.fromkeys(row.contender for row in rows):
        points = sorted((row.size, row.median("peak_rss_bytes") / MiB) for row in rows if row.contender == name)
        sizes = [size / 1024**3 for size, _ in points]
        axes.plot(sizes, [rss for _, rss in points], marker="o", label=name,
                  linewidth=2.5 if name.startswith("ingest") else 1.2)
    axes.set_xlabel("file size (GiB)")
    axes.set_ylabel("server peak RSS (MiB)")
    axes.set_title("Peak RSS of the server by file size (single upload)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
