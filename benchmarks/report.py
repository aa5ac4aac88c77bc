"""results/<timestamp>.json, the Markdown report beside it, and the plots."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.contenders import REGISTRY

UPLOADFILE_BASELINE = "fastapi-def"
RAW_BOUND = "starlette-stream-tuned"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    """The runs of one contender in one scenario and size, summarised."""

    scenario: str
    size: int
    uploads: int
    contender: str
    runs: list[dict[str, Any]]

    @property
    def ok_runs(self) -> list[dict[str, Any]]:
        return [run for run in self.runs if run["ok"]]

    def median(self, key: str) -> float | None:
        values = [run[key] for run in self.ok_runs if run[key] is not None]
        return statistics.median(values) if values else None

    def spread(self, key: str) -> tuple[float, float] | None:
        values = [run[key] for run in self.ok_runs if run[key] is not None]
        return (min(values), max(values)) if values else None


def rows_of(runs: Iterable[dict[str, Any]]) -> list[Row]:
    grouped: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        key = (run["scenario"], run["size"], run["uploads"], run["contender"])
        grouped.setdefault(key, []).append(run)
    return [Row(*key, runs) for key, runs in grouped.items()]


def size_text(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"# Benchmark {result['started_at']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['memory_bytes'] / 1024**3:.1f} GiB RAM, "
        f"Linux {machine['kernel']}, Python {machine['python']}; data on {machine['data_filesystem']['type']} "
        f"({machine['data_filesystem']['mount_point']}); client {result['client']}; load average "
        f"{machine['load_average_at_start']} at start, {result['load_average_at_end']} at end.",
        "",
        "MB/s = 10^6 bytes per second of client wall time, median of the valid runs (min-max). "
        "CPU = user+sys seconds of all server processes per GiB stored. RSS = peak resident memory "
        "(VmHWM) of the server processes. Disk = write_bytes of the server per byte stored. "
        f"Ratios are of median MB/s, against `{UPLOADFILE_BASELINE}` (the UploadFile baseline) and "
        f"`{RAW_BOUND}` (the Python raw-stream bound), within this run only.",
    ]
    rows = rows_of(result["runs"])
    for scenario in dict.fromkeys(row.scenario for row in rows):
        for size, uploads in dict.fromkeys((row.size, row.uploads) for row in rows if row.scenario == scenario):
            group = [row for row in rows if row.scenario == scenario and row.size == size and row.uploads == uploads]
            title = f"{uploads} x {size_text(size)}"
            if scenario == "adversarial-stall":
                dense = group[0].runs[0]["extra"].get("adversarial_size")
                title += (" normal uploads, alone, then beside one CRLF-dense upload"
                          + (f" of {size_text(dense)}" if dense else ""))
            lines += ["", f"## {scenario}: {title}", ""]
            lines += _table(group, stall=scenario == "adversarial-stall")
    lines += ["", "## Contenders", ""]
    for name in dict.fromkeys(row.contender for row in rows):
        contender = REGISTRY.get(name)
        if contender is not None:
            lines.append(f"- `{name}`: {contender.description} ({contender.settings}).")
    failures = [run for run in result["runs"] if not run["ok"]]
    if failures:
        lines += ["", "## Failed runs (not timed)", ""]
        lines += [f"- `{run['contender']}` {run['scenario']} #{run['repetition']}: {run['error']}" for run in failures]
    return "\n".join(lines) + "\n"


def _table(group: list[Row], *, stall: bool) -> list[str]:
    by_name = {row.contender: row.median("throughput_mb_s") for row in group}
    baseline, bound = by_name.get(UPLOADFILE_BASELINE), by_name.get(RAW_BOUND)
    if stall:
        header = ["contender", "normal MB/s alone", "normal MB/s beside adversarial", "adversarial MB/s", "ok"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in group:
            extras = [run["extra"] for run in row.ok_runs]
            def median_of(key: str, extras: list[dict[str, Any]] = extras) -> float | None:
                return statistics.median(e[key] for e in extras) if extras else None
            lines.append(f"| `{row.contender}` | {_number(median_of('normal_alone_mb_s'))} | "
                         f"{_number(median_of('normal_with_adversarial_mb_s'))} | "
                         f"{_number(median_of('adversarial_mb_s'))} | {len(row.ok_runs)}/{len(row.runs)} |")
        return lines
    header = ["contender", "MB/s", "min-max", "x UploadFile", "x raw bound", "CPU-s/GiB", "peak RSS MiB",
              "disk B/B", "sha256 ok"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in group:
        throughput = row.median("throughput_mb_s")
        spread = row.spread("throughput_mb_s")
        rss = row.median("peak_rss_bytes")
        cells = [
            f"`{row.contender}`", _number(throughput),
            f"{spread[0]:,.0f}-{spread[1]:,.0f}" if spread else "-",
            _number(throughput / baseline, 2) if throughput and baseline else "-",
            _number(throughput / bound, 2) if throughput and bound else "-",
            _number(row.median("cpu_s_per_gib"), 2), _number(rss / MiB if rss else None),
            _number(row.median("write_bytes_per_byte"), 2), f"{len(row.ok_runs)}/{len(row.runs)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write(result: dict[str, Any], directory: Path, stem: str, *, plots: bool = True) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    markdown_path = directory / f"{stem}.md"
    written = [json_path, markdown_path]
    if plots:
        from benchmarks.plots import plot_all

        pictures = plot_all(result, directory, stem)
        written += pictures
        picture_lines = "\n".join(f"![{path.stem}]({path.name})" for path in pictures)
        markdown_path.write_text(markdown(result) + "\n" + picture_lines + "\n")
    else:
        markdown_path.write_text(markdown(result))
    return written
