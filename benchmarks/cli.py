"""`python -m benchmarks`: run the scenarios, write results/<timestamp>.json, .md and plots."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.contenders import REGISTRY, baseline, missing_tools
from benchmarks.inputs import CACHE_DIR
from benchmarks.machine import describe, load_average
from benchmarks.runner import Run
from benchmarks.scenarios import Plan, run_plan
from ingest.config import parse_size

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = ("single", "concurrent", "adversarial", "proxy", "download")
QUICK_SCENARIOS = "single,proxy,download"
QUICK_CONTENDERS = ("ingest-multipart,starlette-form,aiohttp-multipart,ingest-multipart-nohash,"
                    "ingest-multipart-nginx,ingest-multipart-nginx-buffered,sfd-naive-sha256,ingest-put,ingest-tus,"
                    "receive-only,sha256-alone,write-behind-alone,ingest-download,ingest-download-nginx,"
                    "nginx-sendfile,starlette-fileresponse")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", default="1GiB",
                        help="file size(s) of 'single', 'proxy' and 'download', comma-separated (default 1GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each run (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="uploads at once in 'concurrent' (default 8)")
    parser.add_argument("--concurrent-size", default="512MiB", help="size of each concurrent upload")
    parser.add_argument("--adversarial-size", default="256MiB", help="size of the CRLF-dense file part")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--contenders", default="all", help="comma-separated names, or 'all' (see --list)")
    parser.add_argument("--client", choices=("curl", "httpx"), default="curl")
    parser.add_argument("--work-dir", type=Path, default=CACHE_DIR / "work",
                        help="where servers store files during a run (its filesystem is the one measured)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--drop-inputs", action="store_true", help="delete the cached input files afterwards")
    parser.add_argument("--quick", action="store_true",
                        help=f"64MiB, one repetition, scenarios {QUICK_SCENARIOS}, contenders {QUICK_CONTENDERS} "
                             "(unless given): checks the harness, not speed")
    parser.add_argument("--baseline", metavar="REV",
                        help="also run ingest as of git revision REV beside each ingest contender "
                             "(named <contender>@<rev>): a before/after in one interleaved run")
    parser.add_argument("--list", action="store_true", help="list the contenders and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for contender in REGISTRY.values():
            missing = missing_tools(contender)
            note = f"  [missing: {', '.join(missing)}]" if missing else ""
            print(f"{contender.name:32} {contender.description} ({contender.settings}){note}")
        return 0
    if args.quick:
        args.size, args.repeat = "64MiB", 1
        if args.scenarios == ",".join(SCENARIOS):
            args.scenarios = QUICK_SCENARIOS
        if args.contenders == "all":
            args.contenders = QUICK_CONTENDERS
    names = list(REGISTRY) if args.contenders == "all" else [n.strip() for n in args.contenders.split(",")]
    unknown = [name for name in names if name not in REGISTRY]
    if args.baseline and not unknown:
        names = baseline.twins(names, args.baseline, CACHE_DIR)
    scenarios = [s.strip() for s in args.scenarios.split(",")]
    if unknown or not set(scenarios) <= set(SCENARIOS):
        print(f"unknown contenders {unknown} or scenarios {scenarios}; see --list", file=sys.stderr)
        return 2
    skipped = {name: f"missing {', '.join(missing_tools(REGISTRY[name]))}" for name in names
               if missing_tools(REGISTRY[name])}
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    plan = Plan(
        contenders=[REGISTRY[name] for name in names if name not in skipped],
        sizes=[parse_size(size) for size in args.size.split(",")], repetitions=args.repeat,
        concurrency=args.concurrency, concurrent_size=parse_size(args.concurrent_size),
        adversarial_size=parse_size(args.adversarial_size), scenarios=scenarios, client=args.client,
        workroot=args.work_dir)
    started_at = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    args.work_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "started_at": started_at,
        "command": "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "client": args.client,
        "machine": describe(args.work_dir),
        "skipped": skipped,
    }
    runs = run_plan(plan, _print_run)
    result["load_average_at_end"] = load_average()
    result["runs"] = [run.as_json() for run in runs]
    written = report.write(result, args.results_dir, started_at, plots=not args.no_plots)
    if args.drop_inputs:
        shutil.rmtree(CACHE_DIR, ignore_errors=True)
    print("\n".join(str(path) for path in written))
    return 0 if all(run.ok for run in runs) else 1


def _print_run(run: Run) -> None:
    if run.ok:
        rss = (run.peak_rss_bytes or 0) / 1024**2
        print(f"{run.scenario:18} {run.contender:32} {report.size_text(run.size):>8} x{run.uploads} "
              f"{run.throughput_mb_s:8.0f} MB/s {run.cpu_s_per_gib:6.2f} CPU-s/GiB {rss:6.0f} MiB RSS "
              f"{run.write_bytes_per_byte:5.2f} disk B/B  load {run.load_average[0]}", flush=True)
    else:
        print(f"{run.scenario:18} {run.contender:32} FAILED: {run.error}", flush=True)
