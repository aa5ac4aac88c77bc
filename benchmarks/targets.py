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
    """median MB/s of `subject` >= `minimum` x that of `reference`, in one scenario, at each
    size (or at `size` only)."""

    subject: str
    reference: str
    minimum: float
    scenario: str = "single"
    size: int | None = None
    label: str | None = None  # what the target is called, when not the ratio itself

    @property
    def text(self) -> str:
        if self.label is not None:
            return self.label
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
GiB = 1024 * MiB
# The fast-path targets: ingest's defaults against the unguarded recipe and itself without
# fsync at 1 GiB; tus against raw PUT; downloads against nginx's sendfile.
FAST_PATH_RATIOS = (
    _Ratio(INGEST, "sfd-naive-sha256", 1.0, size=GiB),
    _Ratio(INGEST, "starlette-form", 2.0, size=GiB),
    _Ratio(INGEST, "ingest-multipart-nofsync", 0.95, size=GiB,
           label=f"fsync on within 5 % of fsync off: `{INGEST}` >= 0.95x `ingest-multipart-nofsync`"),
    _Ratio("ingest-tus", "ingest-put", 0.9),
    _Ratio("ingest-download", "nginx-sendfile", 0.5, scenario="download", size=GiB),
    _Ratio("ingest-download-nginx", "nginx-sendfile", 0.9, scenario="download", size=GiB),
)
PROXY_RATIO = _Ratio(PROXY_UNBUFFERED, PROXY_DIRECT, 0.85, scenario="proxy")
# ingest's own CPU: its CPU-s/GiB minus each of these bounds measured in the same run.
OVERHEAD_BOUNDS = ("receive-only", "sha256-alone", "write-behind-alone")
OVERHEAD_LIMIT = 0.3  # CPU-s/GiB
PAGE_CACHE_LIMIT = 64 * MiB  # left behind by one upload of 4 GiB (or more)
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
    for target in FAST_PATH_RATIOS:
        verdicts += _ratio_verdicts(rows, target)
    verdicts += _overhead_verdicts(rows)
    verdicts += _page_cache_verdicts(rows)
    verdicts.append(_not_stalled(rows))  # last, as the report has always listed it
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
    places = [(size, uploads) for size, uploads in _places(rows, target.scenario)
              if target.size is None or size == target.size]
    if not places:
        wanted = f"{target.scenario} {size_text(target.size)}" if target.size else target.scenario
        return [Verdict(target.text, wanted, "not measured", f"no {wanted} runs")]
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


def _overhead_verdicts(rows: list[Row]) -> list[Verdict]:
    """ingest's CPU-s/GiB minus the receive-only bound, SHA-256 alone and a write-behind write
    alone, each a median of the same run and size: what ingest itself adds."""
    text = f"`{INGEST}` own CPU (minus {', '.join(f'`{b}`' for b in OVERHEAD_BOUNDS)}) <= {OVERHEAD_LIMIT} s/GiB"
    places = [(size, uploads) for size, uploads in _places(rows, "single") if uploads == 1]
    if not places:
        return [Verdict(text, "single", "not measured", "no single runs")]
    verdicts = []
    for size, uploads in places:
        names = [INGEST, *OVERHEAD_BOUNDS]
        values = [_median(rows, "single", size, uploads, name, "cpu_s_per_gib") for name in names]
        where = _where("single", size, uploads)
        missing = [name for name, value in zip(names, values, strict=True) if value is None]
        if missing:
            verdicts.append(Verdict(text, where, "not measured", _absent(rows, "single", size, uploads, missing)))
            continue
        ingest, *bounds = [value for value in values if value is not None]
        own = ingest - sum(bounds)
        figures = f"{ingest:.2f} - " + " - ".join(f"{bound:.2f}" for bound in bounds) + f" = {own:.2f} CPU-s/GiB"
        verdicts.append(Verdict(text, where, "met" if own <= OVERHEAD_LIMIT else "missed", figures))
    return verdicts


def _page_cache_verdicts(rows: list[Row]) -> list[Verdict]:
    text = f"one upload of 4 GiB leaves <= {PAGE_CACHE_LIMIT // MiB} MiB of `{INGEST}`'s file in the page cache"
    places = [(size, uploads) for size, uploads in _places(rows, "single") if size >= 4 * GiB]
    if not places:
        return [Verdict(text, "single 4 GiB", "not measured", "no single runs of 4 GiB or more")]
    verdicts = []
    for size, uploads in places:
        row = _row(rows, "single", size, uploads, INGEST)
        cached = row.median_extra("page_cache_bytes") if row is not None else None
        where = _where("single", size, uploads)
        if row is None or not row.ok_runs:
            verdicts.append(Verdict(text, where, "not measured", _absent(rows, "single", size, uploads, [INGEST])))
        elif cached is None:
            verdicts.append(Verdict(text, where, "not measured", "no fincore figures (util-linux missing?)"))
        else:
            verdicts.append(Verdict(text, where, "met" if cached <= PAGE_CACHE_LIMIT else "missed",
                                    f"{cached / MiB:,.1f} MiB of {size_text(size)}"))
    return verdicts
