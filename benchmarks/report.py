"""results/<timestamp>.json, the Markdown report beside it, and the plots."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from benchmarks import targets
from benchmarks.contenders import REGISTRY
from benchmarks.rows import MiB, Row, rows_of, size_text

__all__ = ["MiB", "Row", "markdown", "rows_of", "size_text", "write"]

UPLOADFILE_BASELINE = "fastapi-def"
RAW_BOUND = "starlette-stream-tuned"
NOHASH = "ingest-multipart-nohash"
# (column, contender whose median MB/s it divides by)
RATIOS = (("x UploadFile", UPLOADFILE_BASELINE), ("x raw bound", RAW_BOUND))
PROXY_RATIOS = (("x direct", targets.PROXY_DIRECT),)
DOWNLOAD_REFERENCE = "nginx-sendfile"
DOWNLOAD_RATIOS = (("x nginx sendfile", DOWNLOAD_REFERENCE),)


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
        f"`{RAW_BOUND}` (the Python raw-stream bound), within this run only; in the proxy scenario, "
        f"against `{targets.PROXY_DIRECT}` reached directly; in the download scenario (one whole GET of a "
        f"stored file, served from the page cache), against `{DOWNLOAD_REFERENCE}`. Page cache = bytes of the "
        "stored file(s) resident right after the upload (fincore). The `-alone` rows and `receive-only` are "
        "the bounds of the CPU decomposition: their CPU is that of their own loop.",
    ]
    rows = rows_of(result["runs"])
    lines += ["", "## Targets", "", *_targets(rows)]
    for scenario in dict.fromkeys(row.scenario for row in rows):
        for size, uploads in dict.fromkeys((row.size, row.uploads) for row in rows if row.scenario == scenario):
            group = [row for row in rows if row.scenario == scenario and row.size == size and row.uploads == uploads]
            title = f"{uploads} x {size_text(size)}"
            if scenario == "adversarial-stall":
                dense = group[0].runs[0]["extra"].get("adversarial_size")
                title += (" normal uploads, alone, then beside one CRLF-dense upload"
                          + (f" of {size_text(dense)}" if dense else ""))
            lines += ["", f"## {scenario}: {title}", ""]
            ratios = {"proxy": PROXY_RATIOS, "download": DOWNLOAD_RATIOS}.get(scenario, RATIOS)
            lines += _table(group, stall=scenario == "adversarial-stall", ratios=ratios)
    lines += ["", "## Contenders", ""]
    for name in dict.fromkeys(row.contender for row in rows):
        contender = REGISTRY.get(name)
        if contender is not None:
            lines.append(f"- `{name}`: {contender.description} ({contender.settings}).")
    if any(row.contender == NOHASH for row in rows):
        lines += ["", f"`{NOHASH}` exists only to measure what hashing costs: ingest always stores a "
                  "sha256 and has no setting to skip it. Its catalog holds a placeholder digest; its stored "
                  "bytes are checked, as every contender's, by reading them back and hashing them here."]
    failures = [run for run in result["runs"] if not run["ok"]]
    if failures:
        lines += ["", "## Failed runs (not timed)", ""]
        lines += [f"- `{run['contender']}` {run['scenario']} #{run['repetition']}: {run['error']}" for run in failures]
    return "\n".join(lines) + "\n"


def _targets(rows: list[Row]) -> list[str]:
    verdicts = targets.evaluate(rows)
    lines = [
        f"The issue's targets for `{targets.INGEST}` (ingest's defaults: SHA-256 and fsync on; the Python "
        "baselines neither hash nor fsync), judged on this run's medians. \"not measured\": this run has no "
        "valid figures for it (scenario or contender not chosen, or failed).",
        "",
        "| target | where | figures | verdict |",
        "|---|---|---|---|",
    ]
    for verdict in verdicts:
        shown = f"**{verdict.status}**" if verdict.status != "not measured" else verdict.status
        lines.append(f"| {verdict.target} | {verdict.where} | {verdict.figures} | {shown} |")
    counts = {status: sum(v.status == status for v in verdicts) for status in ("met", "missed", "not measured")}
    lines += ["", ", ".join(f"{count} {status}" for status, count in counts.items()) + "."]
    return lines


def _table(group: list[Row], *, stall: bool, ratios: tuple[tuple[str, str], ...]) -> list[str]:
    by_name = {row.contender: row.median("throughput_mb_s") for row in group}
    if stall:
        header = ["contender", "normal MB/s alone", "normal MB/s beside adversarial", "adversarial upload",
                  "ok"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in group:
            extras = [run["extra"] for run in row.ok_runs]
            median_of = row.median_extra
            refused = sum(e.get("adversarial_outcome") == "refused" for e in extras)
            fate = (f"refused (4xx) after {_number(median_of('adversarial_seconds'), 2)} s" if refused == len(extras)
                    else f"stored at {_number(median_of('adversarial_mb_s'))} MB/s" if not refused
                    else f"refused in {refused} of {len(extras)} runs")
            lines.append(f"| `{row.contender}` | {_number(median_of('normal_alone_mb_s'))} | "
                         f"{_number(median_of('normal_with_adversarial_mb_s'))} | "
                         f"{fate if extras else '-'} | {len(row.ok_runs)}/{len(row.runs)} |")
        return lines
    header = ["contender", "MB/s", "min-max", *(label for label, _ in ratios), "CPU-s/GiB", "peak RSS MiB",
              "disk B/B", "sha256 ok", "page cache MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in group:
        throughput = row.median("throughput_mb_s")
        spread = row.spread("throughput_mb_s")
        rss = row.median("peak_rss_bytes")
        cells = [
            f"`{row.contender}`", _number(throughput),
            f"{spread[0]:,.0f}-{spread[1]:,.0f}" if spread else "-",
            *(_ratio(throughput, by_name.get(reference)) for _, reference in ratios),
            _number(row.median("cpu_s_per_gib"), 2), _number(rss / MiB if rss else None),
            _number(row.median("write_bytes_per_byte"), 2), f"{len(row.ok_runs)}/{len(row.runs)}",
            _number(cached / MiB if (cached := row.median_extra("page_cache_bytes")) is not None else None, 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(value: float | None, reference: float | None) -> str:
    return _number(value / reference, 2) if value and reference else "-"


def write(result: dict[str, Any], directory: Path, stem: str, *, plots: bool = True) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stem}.json"
    # The verdicts as well, for tools; recomputed from "runs" by `markdown` in any case.
    verdicts = [dataclasses.asdict(verdict) for verdict in targets.evaluate(rows_of(result["runs"]))]
    json_path.write_text(json.dumps({**result, "targets": verdicts}, indent=2) + "\n")
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
