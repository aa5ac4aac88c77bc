"""The runs of one contender in one scenario and size, grouped and summarised (medians of valid runs)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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

    def median_extra(self, key: str) -> float | None:
        """Median of a scenario's own figure (`Run.extra`) over the valid runs."""
        values = [run["extra"][key] for run in self.ok_runs if run["extra"].get(key) is not None]
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
