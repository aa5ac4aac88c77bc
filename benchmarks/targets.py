"""The benchmark issue's targets, judged against one run's medians: met, missed or not measured.

Every figure comes from the run's valid runs (`Row.median`); a target whose rows the run
lacks (a scenario or contender not chosen, or only failed runs) is "not measured", never
guessed. Speed targets compare contenders within the run, as the machine is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from benchmarks.rows import MiB, Row, size_text

INGEST = "ingest-multipart"  # ingest with its defaults: SHA-256 and fsync on
PROXY_DIRECT = INGEST
PROXY_UNBUFFERED = "ingest-multipart-nginx"
Status = Literal["met", "missed", "not measured"]


@dataclass(frozen=True)
class Verdict:
    target: str
    where: str  # scenario and size the figures come from
    status: Status
    figures: str


@dataclass(frozen=True)
class _Ratio:
    """median MB/s of `subject` >= `minimum` x that of `reference`, in one scenario and size."""

    subject: str
    reference: str
    minimum: float
    scenario: str = "single"

    @property
    def text(self) -> str:
        if self.scenario == "proxy":
            return f"`{self.subject}` >= {self.minimum:.0%} of `{self.reference}` (direct)"
        return f"`{self.subject}` >= {self.minimum:.1f}x `{self.reference}`"

    def shown(self, ratio: float) -> str:
        return f"{ratio:.0%}" if self.scenario == "proxy" else f"{ratio:.2f}x"


@dataclass(frozen=True)
class _Limit:
    """A median metric of `INGEST` within a bound, in one scenario."""

    text: str
    scenario: str
    key: str
    check: Callable[[float], bool]
    shown: Callable[[float], str]


RATIOS = (
    _Ratio(INGEST, "starlette-form", 4.0),
    _Ratio(INGEST, "aiohttp-multipart", 0.8),
    _Ratio("ingest-multipart-nohash", "aiohttp-multipart", 1.0),
    _Ratio(INGEST, "starlette-stream-tuned", 0.9),
    _Ratio("ingest-put", "nginx-dav", 1.0),
)
PROXY_RATIO = _Ratio(PROXY_UNBUFFERED, PROXY_DIRECT, 0.85, scenario="proxy")
DISK_TOLERANCE = 0.01  # write_bytes also counts the catalog's few pages
NOT_STALLED = 0.75  # normal uploads beside an adversarial one keep this share of their speed alone


def _limits() -> list[_Limit]:
    limits = []
    for scenario in ("single", "concurrent"):
        limits += [
            _Limit(f"`{INGEST}` writes 1.0 byte per byte stored (within {DISK_TOLERANCE})", scenario,
                   "write_bytes_per_byte", lambda value: abs(value - 1.0) <= DISK_TOLERANCE,
                   lambda value: f"{value:.3f} B/B"),
            _Limit(f"`{INGEST}` CPU <= 1.2 s/GiB", scenario, "cpu_s_per_gib", lambda value: value <= 1.2,
                   lambda value: f"{value:.2f} CPU-s/GiB"),
        ]
    for scenario, bound in (("single", 64), ("concurrent", 128)):
        limits.append(_Limit(f"`{INGEST}` peak RSS <= {bound} MiB", scenario, "peak_rss_bytes",
                             _at_most(bound * MiB), lambda value: f"{value / MiB:.0f} MiB"))
    return limits


def _at_most(bound: float) -> Callable[[float], bool]:
    return lambda value: value <= bound


def evaluate(rows: list[Row]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for target in RATIOS:
        verdicts += _ratio_verdicts(rows, target)
    for limit in _limits():
        verdicts += _limit_verdicts(rows, limit)
    verdicts.append(_concurrent_vs_single(rows))
    verdicts += _ratio_verdicts(rows, PROXY_RATIO)
    verdicts.append(_not_stalled(rows))
    return verdicts


def _places(rows: list[Row], scenario: str) -> list[tuple[int, int]]:
    """(size, uploads) of the scenario's groups in this run, in run order."""
    return list(dict.fromkeys((row.size, row.uploads) for row in rows if row.scenario == scenario))


def _where(scenario: str, size: int, uploads: int) -> str:
    return f"{scenario} {uploads} x {size_text(size)}" if uploads > 1 else f"{scenario} {size_text(size)}"


def _row(rows: list[Row], scenario: str, size: int, uploads: int, contender: str) -> Row | None:
    for row in rows:
        if (row.scenario, row.size, row.uploads, row.contender) == (scenario, size, uploads, contender):
            return row
    return None


def _median(rows: list[Row], scenario: str, size: int, uploads: int, contender: str, key: str) -> float | None:
    row = _row(rows, scenario, size, uploads, contender)
    return row.median(key) if row is not None else None


def _absent(rows: list[Row], scenario: str, size: int, uploads: int, names: list[str]) -> str:
    """Why a figure is missing: the contender was not run here, or none of its runs was valid."""
    return "; ".join(f"`{name}` not run" if _row(rows, scenario, size, uploads, name) is None
                     else f"no valid run of `{name}`" for name in names)


def _ratio_verdicts(rows: list[Row], target: _Ratio) -> list[Verdict]:
    places = _places(rows, target.scenario)
    if not places:
        return [Verdict(target.text, target.scenario, "not measured", f"no {target.scenario} runs")]
    verdicts = []
    for size, uploads in places:
        subject = _median(rows, target.scenario, size, uploads, target.subject, "throughput_mb_s")
        reference = _median(rows, target.scenario, size, uploads, target.reference, "throughput_mb_s")
        where = _where(target.scenario, size, uploads)
        if not subject or not reference:
            missing = [name for name, value in ((target.subject, subject), (target.reference, reference))
                       if not value]
            verdicts.append(Verdict(target.text, where, "not measured",
                                    _absent(rows, target.scenario, size, uploads, missing)))
            continue
        ratio = subject / reference
        verdicts.append(Verdict(target.text, where, "met" if ratio >= target.minimum else "missed",
                                f"{subject:,.0f} / {reference:,.0f} MB/s = {target.shown(ratio)}"))
    return verdicts


def _limit_verdicts(rows: list[Row], limit: _Limit) -> list[Verdict]:
    places = _places(rows, limit.scenario)
    if not places:
        return [Verdict(limit.text, limit.scenario, "not measured", f"no {limit.scenario} runs")]
    verdicts = []
    for size, uploads in places:
        value = _median(rows, limit.scenario, size, uploads, INGEST, limit.key)
        where = _where(limit.scenario, size, uploads)
        if value is None:
            verdicts.append(Verdict(limit.text, where, "not measured",
                                    _absent(rows, limit.scenario, size, uploads, [INGEST])))
        else:
            verdicts.append(Verdict(limit.text, where, "met" if limit.check(value) else "missed", limit.shown(value)))
    return verdicts


def _concurrent_vs_single(rows: list[Row]) -> Verdict:
    """Aggregate MB/s of the concurrent uploads against one upload of the largest single size."""
    text = f"`{INGEST}` concurrent aggregate >= single"
    concurrent = _places(rows, "concurrent")
    single = [size for size, _ in _places(rows, "single")]
    if not concurrent or not single:
        return Verdict(text, "concurrent, single", "not measured", "needs both scenarios")
    (size, uploads), largest = concurrent[0], max(single)
    aggregate = _median(rows, "concurrent", size, uploads, INGEST, "throughput_mb_s")
    alone = _median(rows, "single", largest, 1, INGEST, "throughput_mb_s")
    where = f"{_where('concurrent', size, uploads)} vs {_where('single', largest, 1)}"
    if not aggregate or not alone:
        return Verdict(text, where, "not measured", f"`{INGEST}` not run or no valid run in both")
    return Verdict(text, where, "met" if aggregate >= alone else "missed",
                   f"{aggregate:,.0f} vs {alone:,.0f} MB/s = {aggregate / alone:.2f}x")


def _not_stalled(rows: list[Row]) -> Verdict:
    """Normal uploads beside one CRLF-dense upload keep most of their speed alone (same server)."""
    text = (f"one CRLF-dense upload does not stall others: `{INGEST}` normal uploads beside it "
            f">= {NOT_STALLED:.0%} of alone")
    for size, uploads in _places(rows, "adversarial-stall"):
        row = _row(rows, "adversarial-stall", size, uploads, INGEST)
        where = _where("adversarial-stall", size, uploads)
        if row is None or not row.ok_runs:
            return Verdict(text, where, "not measured", _absent(rows, "adversarial-stall", size, uploads, [INGEST]))
        alone = row.median_extra("normal_alone_mb_s")
        beside = row.median_extra("normal_with_adversarial_mb_s")
        if not alone or beside is None:
            return Verdict(text, where, "not measured", "no figures in the valid runs")
        return Verdict(text, where, "met" if beside >= NOT_STALLED * alone else "missed",
                       f"{beside:,.0f} beside / {alone:,.0f} alone MB/s = {beside / alone:.0%}")
    return Verdict(text, "adversarial-stall", "not measured", "no adversarial-stall runs")
