"""The scenarios, each run for every chosen contender that takes part in it (`Contender.scenarios`),
interleaved (A B C, A B C ...) so that drift of the shared machine hits all contenders alike.

`proxy` is `single` for ingest direct and behind nginx (buffering off, as shipped, and on),
each upload of every `--size`: its contenders are the ones that list it. `download` fetches
one stored file of every `--size` from each download contender (benchmarks/download_runs.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.clients import Client
from benchmarks.contenders import Contender
from benchmarks.download_runs import measure_download
from benchmarks.inputs import crlf_dense_body, random_input
from benchmarks.runner import Run, Upload, measure, measure_stall

ADVERSARIAL_BOUNDARY = b"benchmarkboundary7MA4YWxkTrZu0gW"


@dataclass(frozen=True)
class Plan:
    contenders: list[Contender]
    sizes: list[int]
    repetitions: int
    concurrency: int
    concurrent_size: int
    adversarial_size: int
    scenarios: list[str]
    client: Client
    workroot: Path


Report = Callable[[Run], None]


def run_plan(plan: Plan, report: Report) -> list[Run]:
    runs: list[Run] = []

    def record(run: Run) -> None:
        runs.append(run)
        report(run)

    def taking_part(scenario: str) -> list[Contender]:
        return [contender for contender in plan.contenders if scenario in contender.scenarios]

    for scenario in ("single", "proxy"):
        if scenario not in plan.scenarios:
            continue
        for size in plan.sizes:
            source = random_input(size)
            for repetition in range(plan.repetitions):
                for contender in taking_part(scenario):
                    upload = Upload.of_file(source, contender.mode)
                    record(measure(contender, [upload], scenario=scenario, repetition=repetition,
                                   client=plan.client, workroot=plan.workroot))
    if "download" in plan.scenarios:
        for size in plan.sizes:
            source = random_input(size)
            for repetition in range(plan.repetitions):
                for contender in taking_part("download"):
                    record(measure_download(contender, source, repetition=repetition, workroot=plan.workroot))
    if "concurrent" in plan.scenarios:
        source = random_input(plan.concurrent_size)
        for repetition in range(plan.repetitions):
            for contender in taking_part("concurrent"):
                uploads = [Upload.of_file(source, contender.mode)] * plan.concurrency
                record(measure(contender, uploads, scenario="concurrent", repetition=repetition,
                               client=plan.client, workroot=plan.workroot))
    if "adversarial" in plan.scenarios:
        dense, content_type = crlf_dense_body(plan.adversarial_size, ADVERSARIAL_BOUNDARY)
        # Sized to take about as long as the adversarial upload at normal speed, or longer.
        normal_source = random_input(max(plan.adversarial_size // 2, 1024 * 1024))
        body_overhead = dense.size - plan.adversarial_size
        adversarial = Upload(dense, "prebuilt", dense.sha256, dense.size - body_overhead, content_type)
        parsing = [c for c in taking_part("adversarial") if c.mode == "multipart"]
        stalling = [c for c in taking_part("adversarial-stall") if c.mode == "multipart"]
        for repetition in range(plan.repetitions):
            for contender in [*parsing, *(c for c in stalling if c not in parsing)]:
                if contender in parsing:
                    record(measure(contender, [adversarial], scenario="adversarial", repetition=repetition,
                                   client=plan.client, workroot=plan.workroot))
                if contender in stalling:
                    normal = [Upload.of_file(normal_source, "multipart")] * 2
                    record(measure_stall(contender, normal, adversarial, repetition=repetition,
                                         client=plan.client, workroot=plan.workroot))
    return runs
