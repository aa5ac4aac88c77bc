"""The error catalogue (ingest/errors.py) and the one JSON answer made of it (ingest/edge/errors.py)."""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import ingest
from ingest import errors
from ingest.edge.errors import EXCEPTION_HANDLERS, error_response
from ingest.errors import CATALOGUE, IngestError

# The wire contract: every class's code and status. Clients and the README rely on these.
EXPECTED = {
    "MalformedMultipart": ("malformed_multipart", 400),
    "InvalidFilename": ("invalid_filename", 400),
    "InvalidMetadata": ("invalid_metadata", 400),
    "InvalidRequest": ("invalid_request", 400),
    "InvalidRange": ("invalid_range", 400),
    "NoFiles": ("no_files", 400),
    "InvalidDigest": ("invalid_digest", 400),
    "ClientDisconnected": ("client_disconnected", 400),
    "ParseBudgetExceeded": ("parse_budget_exceeded", 400),
    "Unauthorized": ("unauthorized", 401),
    "Forbidden": ("forbidden", 403),
    "NotFound": ("not_found", 404),
    "MethodNotAllowed": ("method_not_allowed", 405),
    "RequestTimeout": ("request_timeout", 408),
    "LengthRequired": ("length_required", 411),
    "FileTooLarge": ("file_too_large", 413),
    "RequestTooLarge": ("request_too_large", 413),
    "TooManyParts": ("too_many_parts", 413),
    "FieldTooLarge": ("field_too_large", 413),
    "UnsupportedMediaType": ("unsupported_media_type", 415),
    "UnsupportedFileType": ("unsupported_file_type", 415),
    "RangeNotSatisfiable": ("range_not_satisfiable", 416),
    "DigestMismatch": ("digest_mismatch", 422),
    "StorageFailed": ("storage_error", 500),
    "TooManyUploads": ("too_many_uploads", 503),
    "InsufficientStorage": ("insufficient_storage", 507),
    "HookRejected": ("hook_rejected", 403),
    "HookUnavailable": ("hook_unavailable", 503),
    "LinkExpired": ("link_expired", 401),
    "LinkRevoked": ("link_revoked", 403),
    "LinkUsedUp": ("link_used_up", 403),
    "LinkLimitExceeded": ("link_limit_exceeded", 413),
    "UnsupportedTusVersion": ("unsupported_tus_version", 412),
    "OffsetMismatch": ("offset_mismatch", 409),
    "ChecksumMismatch": ("checksum_mismatch", 460),
    "UploadExpired": ("upload_expired", 410),
    "UploadLocked": ("upload_locked", 423),
    "UploadNotPatchable": ("upload_not_patchable", 403),
    "UploadLengthExceeded": ("upload_length_exceeded", 413),
    "UploadSuperseded": ("upload_superseded", 409),
}


def _subclasses(cls: type[IngestError]) -> Iterator[type[IngestError]]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def test_the_catalogue_keeps_every_code_and_status() -> None:
    """(That the codes are distinct: tests/test_app.py.)"""
    assert {error.__name__: (error.code, error.status) for error in CATALOGUE} == EXPECTED
    assert len(CATALOGUE) == len(EXPECTED)
    assert IngestError.code not in {error.code for error in CATALOGUE}  # internal_error: unexpected failures
    for name in EXPECTED:
        assert getattr(errors, name).__name__ == name  # importable under its own name


def test_every_error_defined_in_the_package_is_in_the_catalogue() -> None:
    for module in pkgutil.walk_packages(ingest.__path__, "ingest."):
        if not module.name.endswith("__main__"):  # which runs the CLI
            importlib.import_module(module.name)
    defined = {cls for cls in _subclasses(IngestError) if cls.__module__.startswith("ingest.")}
    assert defined == set(CATALOGUE), defined ^ set(CATALOGUE)
    assert {cls.__module__ for cls in defined} == {"ingest.errors"}


def test_hook_errors_are_importable_where_hooks_are_written() -> None:
    from ingest.observe import events
    assert events.HookRejected is errors.HookRejected
    assert events.HookUnavailable is errors.HookUnavailable
    assert errors.HookRejected("no", status=451).status == 451
    assert errors.HookRejected("no", status=200).status == 403


def test_error_response_is_the_code_detail_and_status() -> None:
    response = error_response(errors.FileTooLarge("one file over 10 bytes"))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body) == {"error": "file_too_large", "detail": "one file over 10 bytes"}


def test_error_response_adds_headers_to_the_errors_own() -> None:
    error = errors.TooManyUploads("busy", headers={"retry-after": "1", "connection": "keep-alive"})
    response = error_response(error, headers={"connection": "close"})
    assert (response.headers["retry-after"], response.headers["connection"]) == ("1", "close")
    assert error.headers == {"retry-after": "1", "connection": "keep-alive"}  # not changed


def test_a_hooks_status_is_the_answers() -> None:
    response = error_response(errors.HookRejected("executables are not accepted", status=415))
    assert response.status_code == 415
    assert json.loads(response.body)["error"] == "hook_rejected"


async def _raise(request: Request) -> Response:
    raise {
        "/too-large": errors.FileTooLarge("one file over 10 bytes"),
        "/disk": errors.StorageFailed("storage failed: disk on fire"),
        "/locked": errors.UploadLocked("retry shortly", headers={"retry-after": "1"}),
        "/teapot": HTTPException(418, "short and stout", headers={"x-kind": "teapot"}),
        "/bug": ZeroDivisionError("division by zero"),
    }[request.url.path]


@pytest.fixture
async def handled() -> AsyncIterator[httpx.AsyncClient]:
    """A bare app with the handlers ingest installs."""
    app = Starlette(routes=[Route(path, _raise, methods=["GET", "POST"])
                            for path in ("/too-large", "/disk", "/locked", "/teapot", "/bug")],
                    exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.anyio
async def test_an_ingest_error_is_answered_as_itself(handled: httpx.AsyncClient) -> None:
    answer = await handled.get("/locked")
    assert answer.status_code == 423
    assert answer.json() == {"error": "upload_locked", "detail": "retry shortly"}
    assert answer.headers["retry-after"] == "1"
    assert "connection" not in answer.headers


@pytest.mark.anyio
async def test_a_refused_upload_closes_the_connection(handled: httpx.AsyncClient) -> None:
    answer = await handled.post("/too-large", content=b"x" * 100)
    assert (answer.status_code, answer.json()["error"]) == (413, "file_too_large")
    assert answer.headers["connection"] == "close"


@pytest.mark.anyio
async def test_a_server_error_is_logged(handled: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="ingest")
    answer = await handled.get("/disk")
    assert answer.json() == {"error": "storage_error", "detail": "storage failed: disk on fire"}
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("ingest", "storage_error: storage failed: disk on fire")]


@pytest.mark.anyio
async def test_starlettes_http_errors_get_our_codes(handled: httpx.AsyncClient) -> None:
    unknown = await handled.get("/nowhere")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    wrong_method = await handled.delete("/disk")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")
    assert set(wrong_method.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}  # Starlette's, kept
    assert "connection" not in (await handled.put("/disk")).headers  # unlike an IngestError
    teapot = await handled.get("/teapot")
    assert teapot.status_code == 418
    assert teapot.json() == {"error": "http_error", "detail": "short and stout"}
    assert teapot.headers["x-kind"] == "teapot"


@pytest.mark.anyio
async def test_an_unexpected_error_says_nothing_of_itself(handled: httpx.AsyncClient) -> None:
    answer = await handled.get("/bug")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal_error", "detail": "the server failed; see its log"}
