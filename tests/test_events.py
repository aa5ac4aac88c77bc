"""The event hub and Python-callable hooks, through the app in process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import httpx
import pytest

from ingest.app import create_app
from ingest.config import Settings
from ingest.observe.events import EventHub, HookEvent, HookRejected, HookResponse, HookTarget, Upload
from ingest.observe.hooks import CallableTarget, HookCallable, parse_hook_answer
from ingest.observe.metrics import Metrics
from tests.conftest import MULTIPART, file_part, multipart_body, stored_files, temp_files
from tests.prom import value

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def hooked_client(settings: Settings,
                        hooks: Sequence[HookCallable | HookTarget]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, hooks=hooks)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


class Recorder:
    def __init__(self) -> None:
        self.events: list[HookEvent] = []

    async def __call__(self, event: HookEvent) -> HookResponse | None:
        self.events.append(event)
        return None

    def types(self) -> list[str]:
        return [e.type for e in self.events]


async def settle(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.01)


async def test_a_callable_hook_sees_a_raw_upload_from_pre_create_to_post_finish(settings: Settings) -> None:
    recorder = Recorder()
    async with hooked_client(settings.replace(hook_progress_interval=0), [recorder]) as client:
        response = await client.put("/uploads/notes.txt", content=b"hello world")
        assert response.status_code == 201
        await settle(lambda: "post-finish" in recorder.types())
    # Blocking events are delivered at once, post-* ones from a queue: restore the order
    # with the sequence numbers, as a receiver would.
    in_order = sorted(recorder.events, key=lambda e: e.upload["sequence"])
    assert [e.type for e in in_order] == ["pre-create", "post-create", "post-receive", "pre-finish", "post-finish"]
    assert [e.upload["sequence"] for e in in_order] == [1, 2, 3, 4, 5]
    posts = [e.upload["sequence"] for e in recorder.events if e.type.startswith("post-")]
    assert posts == sorted(posts)
    finished = in_order[-1].upload
    assert finished["id"] == response.json()["files"][0]["id"]
    assert (finished["size"], finished["protocol"], finished["client"]) == (11, "raw", "192.0.2.7")


async def test_deleting_a_stored_file_sends_post_terminate(settings: Settings) -> None:
    recorder = Recorder()
    async with hooked_client(settings, [recorder]) as client:
        stored = (await client.put("/uploads/a.txt", content=b"abc")).json()["files"][0]
        assert (await client.delete(f"/uploads/{stored['id']}")).status_code == 204
        await settle(lambda: "post-terminate" in recorder.types())
    terminated = recorder.events[-1].upload
    assert (terminated["id"], terminated["error"], terminated["sha256"]) == (stored["id"], "deleted", stored["sha256"])


async def test_a_callable_raising_hook_rejected_refuses_a_multipart_upload(settings: Settings) -> None:
    def no_exe(event: HookEvent) -> None:
        if event.type == "pre-create" and event.upload["filename"].endswith(".exe"):
            raise HookRejected("executables are not accepted", status=415)

    async with hooked_client(settings, [no_exe]) as client:
        body = multipart_body([file_part("a", "ok.txt", b"fine"), file_part("b", "setup.exe", b"MZ")])
        response = await client.post("/uploads", headers=MULTIPART, content=body)
        assert response.status_code == 415
        assert response.json() == {"error": "hook_rejected", "detail": "executables are not accepted"}
        metrics = (await client.get("/metrics")).text
    assert stored_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []
    # Both files of the form ended unstored: the refused one and the one before it.
    assert value(metrics, "ingest_uploads_failed_total", protocol="multipart", error="hook_rejected") == 2
    assert value(metrics, "ingest_uploads_in_progress", protocol="multipart") == 0
    assert value(metrics, "ingest_temp_bytes") == 0


@pytest.mark.parametrize(("fail_open", "status"), [(False, 503), (True, 201)])
async def test_a_pre_finish_hook_that_times_out_has_the_documented_outcome(
        settings: Settings, fail_open: bool, status: int) -> None:
    async def stuck(event: HookEvent) -> None:
        if event.type == "pre-finish":
            await anyio.sleep(30)

    quick = settings.replace(hook_timeout=0.2, hook_fail_open=fail_open)
    async with hooked_client(quick, [stuck]) as client:
        response = await client.put("/uploads/a.bin", content=b"x" * 1000)
    assert response.status_code == status
    assert len(stored_files(settings.data_dir)) == (1 if fail_open else 0)
    assert temp_files(settings.data_dir) == []


async def test_post_events_beyond_the_queue_are_dropped_and_counted_not_waited_for(settings: Settings) -> None:
    release = anyio.Event()

    async def blocked(event: HookEvent) -> None:
        await release.wait()

    small = settings.replace(hook_queue_size=4, hook_timeout=60)
    target = CallableTarget(blocked, events=["post-create", "post-receive", "post-finish"])
    async with hooked_client(small, [target]) as client:
        for n in range(12):
            assert (await client.put(f"/uploads/f{n}.txt", content=b"x")).status_code == 201
        metrics = (await client.get("/metrics")).text
        release.set()
    dropped = sum(value(metrics, "ingest_hook_deliveries_total", event=e, target="blocked", outcome="dropped")
                  for e in ("post-create", "post-receive", "post-finish"))
    assert dropped > 0
    assert len(stored_files(settings.data_dir)) == 12


async def test_a_hub_counts_an_upload_from_start_to_failure() -> None:
    metrics = Metrics()
    hub = EventHub(metrics)
    upload = Upload(id="u1", protocol="tus", filename="a", content_type="text/plain")
    await hub.create(upload)
    hub.received(upload, 100)
    assert metrics.temp_bytes._value.get() == 100
    hub.failed(upload, "client_disconnected")
    hub.failed(upload, "again")  # an ended upload stays ended
    assert metrics.temp_bytes._value.get() == 0
    assert metrics.failed.labels("tus", "client_disconnected")._value.get() == 1
    assert metrics.failed.labels("tus", "again")._value.get() == 0
    assert metrics.in_progress.labels("tus")._value.get() == 0


async def test_a_plain_function_target_runs_in_a_thread_and_may_answer() -> None:
    target = CallableTarget(lambda event: HookResponse(metadata={"seen": event.type}))
    answer = await target.deliver(HookEvent("pre-create", {"id": "x"}))
    assert answer == HookResponse(metadata={"seen": "pre-create"})


@pytest.mark.parametrize(("body", "expected"), [
    (b"", None),
    (b'{"reject": true, "status": 451, "message": "no"}', HookResponse(reject=True, status=451, message="no")),
    (b'{"metadata": {"a": 1}}', HookResponse(metadata={"a": 1})),
])
def test_webhook_answers_are_read_as_documented(body: bytes, expected: HookResponse | None) -> None:
    assert parse_hook_answer(body) == expected


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"metadata": [1]}'])
def test_malformed_webhook_answers_are_failures(body: bytes) -> None:
    from ingest.observe.hooks import HookDeliveryError

    with pytest.raises(HookDeliveryError):
        parse_hook_answer(body)


def test_a_rejection_status_outside_the_error_range_becomes_403() -> None:
    assert HookRejected("no", status=200).status == 403
