"""Webhooks against a real server: a real HTTP receiver records what each protocol sends."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port, start_server, stop_server, stored_files, temp_files
from tests.hook_receiver import Delivery, HookReceiver, hook_receiver
from tests.prom import value

MiB = 1024 * 1024

Uploader = Callable[[LiveServer, str, bytes, dict[str, str]], httpx.Response]


def upload_multipart(server: LiveServer, name: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.url + "/uploads", files={"file": (name, content)},
                      data={"metadata": '{"project": "x"}'}, headers=headers, timeout=60)


def upload_raw(server: LiveServer, name: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.put(server.url + "/uploads/" + name, content=content, headers=headers, timeout=60)


UPLOADERS: dict[str, Uploader] = {"multipart": upload_multipart, "raw": upload_raw}


@contextmanager
def server_with_hooks(tmp_path: Path, hook_url: str, *args: str) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "data", "--no-fsync", "--hook-url", hook_url, *args)
    try:
        yield server
    finally:
        stop_server(server)


def metric(server: LiveServer, name: str, **labels: str) -> float:
    return value(httpx.get(server.url + "/metrics").text, name, **labels)


def nothing_stored(server: LiveServer) -> bool:
    return (stored_files(server.data_dir) == [] and temp_files(server.data_dir) == []
            and httpx.get(server.url + "/uploads").json()["items"] == [])


@pytest.mark.parametrize("protocol", UPLOADERS)
def test_a_webhook_receives_every_event_of_an_upload_in_order(tmp_path: Path, protocol: str) -> None:
    content = os.urandom(3 * MiB + 5)
    with hook_receiver() as receiver, server_with_hooks(
            tmp_path, receiver.url, "--hook-progress-interval", "0", "--hook-forward-headers", "x-tenant") as server:
        response = UPLOADERS[protocol](server, "clip.bin", content, {"x-tenant": "acme"})
        assert response.status_code == 201, response.text
        stored = response.json()["files"][0]
        assert receiver.wait_for(lambda: "post-finish" in receiver.events_of(stored["id"]))
        with receiver.lock:
            deliveries = [d for d in receiver.deliveries if d.upload["id"] == stored["id"]]
    in_sequence = [d.type for d in sorted(deliveries, key=lambda d: d.upload["sequence"])]
    assert in_sequence[:2] == ["pre-create", "post-create"]
    assert in_sequence[-2:] == ["pre-finish", "post-finish"]
    assert set(in_sequence[2:-2]) == {"post-receive"}
    posts = [d.upload["sequence"] for d in deliveries if d.type.startswith("post-")]
    assert posts == sorted(posts), "post-* events of one upload arrive in order"
    progress = [d.upload["size"] for d in deliveries if d.type == "post-receive"]
    assert progress == sorted(progress) and 0 < progress[-1] <= len(content)
    finished = next(d.upload for d in deliveries if d.type == "post-finish")
    assert finished["sha256"] == hashlib.sha256(content).hexdigest() == stored["sha256"]
    assert (finished["size"], finished["filename"], finished["protocol"], finished["client"]) == (
        len(content), "clip.bin", protocol, "127.0.0.1")
    if protocol == "multipart":
        assert finished["metadata"] == {"project": "x"}
    else:
        assert finished["expected_size"] == len(content)
    assert all(d.headers.get("x-tenant") == "acme" and d.headers["hook-name"] == d.type for d in deliveries)


@pytest.mark.parametrize("protocol", UPLOADERS)
def test_a_pre_create_rejection_stores_nothing_and_answers_with_the_hooks_status(
        tmp_path: Path, protocol: str) -> None:
    def refuse_creation(event_type: str, upload: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if event_type == "pre-create":
            return 200, {"reject": True, "status": 451, "message": "uploads from here are refused"}
        return 200, None

    with hook_receiver() as receiver, server_with_hooks(tmp_path, receiver.url) as server:
        receiver.answer = refuse_creation
        # Small, so the client has sent it all before the early answer.
        response = UPLOADERS[protocol](server, "x.bin", b"z" * 4096, {})
        assert response.status_code == 451
        assert response.json() == {"error": "hook_rejected", "detail": "uploads from here are refused"}
        assert nothing_stored(server)
        assert receiver.wait_for(lambda: len(receiver.of_type("post-terminate")) == 1)
        assert receiver.of_type("post-terminate")[0].upload["error"] == "hook_rejected"
        assert receiver.of_type("post-create") == [] and receiver.of_type("pre-finish") == []
        assert metric(server, "ingest_uploads_failed_total", protocol=protocol, error="hook_rejected") == 1


@pytest.mark.parametrize("protocol", UPLOADERS)
def test_a_pre_finish_rejection_discards_the_received_upload(tmp_path: Path, protocol: str) -> None:
    def refuse_finish(event_type: str, upload: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if event_type == "pre-finish":
            assert upload["sha256"] and upload["size"] == 2 * MiB
            return 200, {"reject": True, "status": 409, "message": "a copy is already stored"}
        return 200, None

    with hook_receiver() as receiver, server_with_hooks(tmp_path, receiver.url) as server:
        receiver.answer = refuse_finish
        response = UPLOADERS[protocol](server, "dup.bin", os.urandom(2 * MiB), {})
        assert response.status_code == 409
        assert response.json()["error"] == "hook_rejected"
        assert nothing_stored(server)
        assert receiver.wait_for(lambda: len(receiver.of_type("post-terminate")) == 1)
        assert receiver.of_type("post-finish") == []


def test_pre_create_may_change_the_stored_metadata(tmp_path: Path) -> None:
    def tag(event_type: str, upload: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        return (200, {"metadata": {"scan": "pending"}}) if event_type == "pre-create" else (200, None)

    with hook_receiver() as receiver, server_with_hooks(tmp_path, receiver.url) as server:
        receiver.answer = tag
        response = upload_multipart(server, "a.txt", b"hello", {})
        stored = response.json()["files"][0]
        assert stored["metadata"] == {"project": "x", "scan": "pending"}
        assert httpx.get(stored["url"]).json()["metadata"] == {"project": "x", "scan": "pending"}


@pytest.mark.parametrize(("fail_open", "status"), [(False, 503), (True, 201)])
def test_an_unreachable_pre_create_hook_has_a_documented_outcome(
        tmp_path: Path, fail_open: bool, status: int) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    flag = "--hook-fail-open" if fail_open else "--no-hook-fail-open"
    with server_with_hooks(tmp_path, nobody, flag, "--hook-events", "pre-create") as server:
        response = upload_raw(server, "a.bin", b"abc", {})
        assert response.status_code == status
        if not fail_open:
            assert response.json()["error"] == "hook_unavailable"
            assert nothing_stored(server)


def test_a_receiver_that_is_down_neither_fails_uploads_nor_stops_retrying(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    with server_with_hooks(tmp_path, nobody, "--hook-events", "post-create,post-finish,post-terminate",
                           "--hook-retries", "2", "--hook-backoff", "0.05") as server:
        for name in ("one.bin", "two.bin"):
            assert upload_raw(server, name, os.urandom(MiB), {}).status_code == 201
        assert len(stored_files(server.data_dir)) == 2
        labels = {"event": "post-finish", "target": "webhook"}
        assert HookReceiver("").wait_for(
            lambda: metric(server, "ingest_hook_deliveries_total", outcome="failed", **labels) == 2)
        assert metric(server, "ingest_hook_retries_total", **labels) == 4
        assert metric(server, "ingest_hook_deliveries_total", outcome="delivered", **labels) == 0


def test_a_slow_receiver_does_not_hold_up_uploads_and_gets_the_event_on_a_retry(tmp_path: Path) -> None:
    with hook_receiver() as receiver, server_with_hooks(
            tmp_path, receiver.url, "--hook-events", "post-finish", "--hook-timeout", "0.5",
            "--hook-retries", "20", "--hook-backoff", "0.1") as server:
        receiver.gate.clear()  # the receiver holds every request until the gate opens
        response = upload_raw(server, "slow.bin", os.urandom(MiB), {})
        # The upload was answered while the receiver was still holding its delivery.
        assert response.status_code == 201
        assert not receiver.gate.is_set()
        labels = {"event": "post-finish", "target": "webhook"}
        assert receiver.wait_for(lambda: metric(server, "ingest_hook_retries_total", **labels) >= 1)
        receiver.gate.set()
        assert receiver.wait_for(
            lambda: metric(server, "ingest_hook_deliveries_total", outcome="delivered", **labels) == 1)
        attempts = receiver.of_type("post-finish")
        assert len(attempts) >= 2
        assert {d.upload["id"] for d in attempts} == {response.json()["files"][0]["id"]}


def test_failed_deliveries_are_retried_until_one_succeeds(tmp_path: Path) -> None:
    answers = iter([500, 502])

    def flaky(event_type: str, upload: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        return next(answers, 200), None

    with hook_receiver() as receiver, server_with_hooks(
            tmp_path, receiver.url, "--hook-events", "post-finish", "--hook-backoff", "0.05") as server:
        receiver.answer = flaky
        assert upload_raw(server, "f.bin", b"data", {}).status_code == 201
        labels = {"event": "post-finish", "target": "webhook"}
        assert receiver.wait_for(
            lambda: metric(server, "ingest_hook_deliveries_total", outcome="delivered", **labels) == 1)
        attempts: list[Delivery] = receiver.of_type("post-finish")
        assert len(attempts) == 3
        assert len({d.upload["sequence"] for d in attempts}) == 1, "a retry resends the same event"
        assert metric(server, "ingest_hook_retries_total", **labels) == 2
