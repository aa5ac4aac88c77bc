"""tus 1.0.0 conformance, in process: every status code and header of the protocol and its
extensions (https://tus.io/protocols/resumable-upload), as tables of cases where they fit."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ingest.config import Settings
from tests.conftest import app_client, sha256
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.anyio

TUS = {"tus-resumable": "1.0.0"}
OCTETS = {**TUS, "content-type": "application/offset+octet-stream"}


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


async def create(client: httpx.AsyncClient, length: int | None = 10, *, filename: str = "a.bin",
                 extra: dict[str, str] | None = None) -> str:
    headers = {**TUS, "upload-metadata": f"filename {b64(filename)}", **(extra or {})}
    if length is None:
        headers["upload-defer-length"] = "1"
    else:
        headers["upload-length"] = str(length)
    response = await client.post("/files/", headers=headers)
    assert response.status_code == 201, response.text
    return response.headers["location"]


async def patch(client: httpx.AsyncClient, url: str, offset: int, body: bytes,
                **headers: str) -> httpx.Response:
    return await client.patch(url, content=body, headers={**OCTETS, "upload-offset": str(offset),
                                                          **{k.replace("_", "-"): v for k, v in headers.items()}})


async def offset_of(client: httpx.AsyncClient, url: str) -> int:
    response = await client.head(url, headers=TUS)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


async def stored_items(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/uploads")).json()["items"]
    return items


def checksum(algorithm: str, body: bytes) -> str:
    return f"{algorithm} {b64(hashlib.new(algorithm, body).digest())}"


# --- discovery and versions ------------------------------------------------------------------

async def test_options_advertises_version_extensions_max_size_and_checksums(
        client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.options("/files/")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination", "checksum",
        "expiration", "concatenation"}
    assert response.headers["tus-max-size"] == str(settings.max_file_size)
    assert {"sha1", "sha256", "md5"} <= set(response.headers["tus-checksum-algorithm"].split(","))


@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE"])
@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
async def test_an_unsupported_or_missing_version_answers_412_with_tus_version(
        client: httpx.AsyncClient, method: str, version: str | None) -> None:
    url = await create(client)
    headers = {"upload-length": "1", "upload-offset": "0",
               "content-type": "application/offset+octet-stream"}
    if version:
        headers["tus-resumable"] = version
    target = "/files/" if method == "POST" else url
    response = await client.request(method, target, headers=headers)
    assert response.status_code == 412
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-resumable"] == "1.0.0"
    if method != "HEAD":
        assert response.json()["error"] == "unsupported_tus_version"


# --- creation --------------------------------------------------------------------------------

async def test_creation_answers_201_with_an_absolute_location_under_files(client: httpx.AsyncClient) -> None:
    response = await client.post("/files/", headers={**TUS, "upload-length": "5"})
    assert response.status_code == 201
    assert response.headers["location"].startswith("http://testserver/files/")
    assert response.headers["upload-offset"] == "0"
    assert response.headers["upload-expires"].endswith(" GMT")
    assert response.headers["tus-resumable"] == "1.0.0"


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-defer-length": "1"}, 400, "invalid_request"),
    ({"upload-defer-length": "2"}, 400, "invalid_request"),
    ({"upload-length": "-1"}, 400, "invalid_request"),
    ({"upload-length": "five"}, 400, "invalid_request"),
    ({"upload-length": str(2**70)}, 413, "file_too_large"),
    ({"upload-length": "5", "upload-metadata": "filename !!!notbase64"}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-metadata": "file name eA=="}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-metadata": f"a {b64('x')},a {b64('y')}"}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-metadata": f"filename {b64(chr(1) + 'x')}"}, 400, "invalid_filename"),
    ({"upload-length": "5", "upload-metadata": f"filename {b64('dir/')}"}, 400, "invalid_filename"),
    ({"upload-length": "5", "upload-concat": "middle"}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-concat": "final;/files/x"}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-concat": "partial;"}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-metadata": "note QUJD="}, 400, "invalid_request"),
    ({"upload-length": "5", "upload-metadata": "no\x7fte QUJD"}, 400, "invalid_request"),
    ({"upload-length": "9" * 5000}, 400, "invalid_request"),
    ({"upload-length": "5", "content-type": "application/offset+octet-stream", "upload-checksum": "sha1 !!"},
     400, "invalid_request"),
], ids=["no-length", "length-and-defer", "defer-not-1", "negative", "not-a-number", "over-max",
        "bad-base64", "key-with-space", "repeated-key", "control-char-name", "empty-name",
        "bad-concat", "final-with-length", "partial-with-parts", "padding-after-a-full-quantum",
        "control-char-key", "5000-digits", "malformed-checksum"])
async def test_bad_creation_requests_are_refused_and_create_nothing(
        client: httpx.AsyncClient, settings: Settings, headers: dict[str, str], status: int, code: str) -> None:
    response = await client.post("/files/", content=b"abc", headers={**TUS, **headers})
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "location" not in response.headers  # every header is checked before anything exists
    assert list((settings.data_dir / "tus").iterdir()) == []


async def test_a_finished_upload_is_an_ordinary_stored_file_named_by_its_metadata(
        client: httpx.AsyncClient) -> None:
    body = os.urandom(3000)
    url = await create(client, len(body), filename="../report.csv",
                       extra={"upload-metadata": f"filename {b64('../report.csv')},filetype {b64('text/csv')},"
                                                 f"project {b64('x')},flag"})
    assert (await patch(client, url, 0, body[:1000])).headers["upload-offset"] == "1000"
    response = await patch(client, url, 1000, body[1000:])
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "3000"
    assert "upload-expires" not in response.headers
    [item] = await stored_items(client)
    assert item["id"] == response.headers["ingest-file-id"]
    assert (item["filename"], item["content_type"], item["size"], item["sha256"]) == (
        "report.csv", "text/csv", 3000, sha256(body))
    assert item["metadata"] == {"project": "x", "flag": ""}
    assert (await client.get(item["content_url"])).content == body
    head = await client.head(url, headers=TUS)
    assert (head.status_code, head.headers["upload-offset"], head.headers["ingest-file-id"]) == (
        200, "3000", item["id"])


async def test_an_empty_upload_is_committed_at_creation(client: httpx.AsyncClient) -> None:
    await create(client, 0, filename="empty.txt")
    [item] = await stored_items(client)
    assert (item["filename"], item["size"], item["sha256"]) == ("empty.txt", 0, sha256(b""))


async def test_creation_with_upload_stores_the_first_bytes(client: httpx.AsyncClient) -> None:
    response = await client.post("/files/", content=b"hello", headers={
        **OCTETS, "upload-length": "11", "upload-metadata": f"filename {b64('h.txt')}",
        "upload-checksum": checksum("sha256", b"hello")})
    assert (response.status_code, response.headers["upload-offset"]) == (201, "5")
    url = response.headers["location"]
    assert (await patch(client, url, 5, b" world")).status_code == 204
    [item] = await stored_items(client)
    assert item["sha256"] == sha256(b"hello world")


async def test_creation_with_upload_and_a_bad_checksum_still_says_where_the_upload_is(
        client: httpx.AsyncClient) -> None:
    response = await client.post("/files/", content=b"hello", headers={
        **OCTETS, "upload-length": "11", "upload-checksum": checksum("sha1", b"other")})
    assert response.status_code == 460
    assert await offset_of(client, response.headers["location"]) == 0


async def test_deferred_length_is_announced_then_given_by_a_patch(client: httpx.AsyncClient) -> None:
    url = await create(client, None)
    head = await client.head(url, headers=TUS)
    assert head.headers["upload-defer-length"] == "1" and "upload-length" not in head.headers
    assert (await patch(client, url, 0, b"abc")).headers["upload-offset"] == "3"
    assert (await patch(client, url, 3, b"de", upload_length="2")).status_code == 400  # below offset
    response = await patch(client, url, 3, b"de", upload_length="5")
    assert (response.status_code, response.headers["upload-offset"]) == (204, "5")
    assert (await patch(client, url, 5, b"", upload_length="6")).status_code == 400  # length is fixed
    [item] = await stored_items(client)
    assert item["sha256"] == sha256(b"abcde")


# Python's isdigit() is true for "²" (which int() refuses), and b64decode raises a bare
# ValueError for non-ASCII text: values a client can send as Latin-1 bytes.
@pytest.mark.parametrize(("header", "value"), [
    ("upload-length", b"\xb2"), ("upload-offset", b"\xb2"), ("upload-offset", b"9" * 5000),
    ("upload-metadata", b"filename \xe9QQ=="), ("upload-checksum", b"sha1 \xe9" * 4),
], ids=["superscript-length", "superscript-offset", "5000-digit-offset", "non-ascii-metadata",
        "non-ascii-checksum"])
async def test_non_ascii_or_overlong_numbers_and_base64_answer_400(
        client: httpx.AsyncClient, header: str, value: bytes) -> None:
    url = await create(client, 10)
    headers: dict[str, str | bytes] = {**OCTETS, "upload-offset": "0", "upload-length": "10", header: value}
    method = "POST" if header in {"upload-length", "upload-metadata"} else "PATCH"
    response = await client.request(method, "/files/" if method == "POST" else url, content=b"abc", headers=headers)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert await offset_of(client, url) == 0


async def test_metadata_keys_may_hold_any_visible_ascii_but_spaces_and_commas(client: httpx.AsyncClient) -> None:
    metadata = f"x:y {b64('1')},a=b {b64('2')},(k) {b64('3')}"
    response = await client.post("/files/", headers={**TUS, "upload-length": "1", "upload-metadata": metadata})
    assert response.status_code == 201, response.text
    head = await client.head(response.headers["location"], headers=TUS)
    assert head.headers["upload-metadata"] == metadata


# --- HEAD and PATCH --------------------------------------------------------------------------

async def test_head_reports_offset_length_metadata_and_no_store(client: httpx.AsyncClient) -> None:
    url = await create(client, 10, filename="x.bin")
    await patch(client, url, 0, b"abc")
    response = await client.head(url, headers=TUS)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "3"
    assert response.headers["upload-length"] == "10"
    assert response.headers["upload-metadata"] == f"filename {b64('x.bin')}"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["upload-expires"].endswith(" GMT")
    assert response.headers["tus-resumable"] == "1.0.0"


PATCH_CASES: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("wrong-offset-behind", {"upload-offset": "0"}, b"x", 409, "offset_mismatch"),
    ("wrong-offset-ahead", {"upload-offset": "5"}, b"x", 409, "offset_mismatch"),
    ("no-offset", {"upload-offset": ""}, b"x", 400, "invalid_request"),
    ("negative-offset", {"upload-offset": "-3"}, b"x", 400, "invalid_request"),
    ("wrong-content-type", {"content-type": "application/octet-stream"}, b"x", 415, "unsupported_media_type"),
    ("bad-checksum", {"upload-checksum": checksum("sha1", b"not this")}, b"defg", 460, "checksum_mismatch"),
    ("unknown-algorithm", {"upload-checksum": "crc99 AAAA"}, b"x", 400, "invalid_request"),
    ("digest-wrong-size", {"upload-checksum": f"sha256 {b64(b'short')}"}, b"x", 400, "invalid_request"),
    ("past-length", {}, b"0123456789", 413, "upload_length_exceeded"),
]


@pytest.mark.parametrize(("headers", "body", "status", "code"), [case[1:] for case in PATCH_CASES],
                         ids=[case[0] for case in PATCH_CASES])
async def test_bad_patches_are_refused_and_store_nothing(
        client: httpx.AsyncClient, headers: dict[str, str], body: bytes, status: int, code: str) -> None:
    url = await create(client, 10)
    await patch(client, url, 0, b"abc")
    response = await client.patch(url, content=body, headers={**OCTETS, "upload-offset": "3", **headers})
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert response.headers["tus-resumable"] == "1.0.0"
    if status == 409:
        assert response.headers["upload-offset"] == "3"
    assert await offset_of(client, url) == 3
    # The upload is intact: finishing it stores exactly the good bytes.
    assert (await patch(client, url, 3, b"defghij")).status_code == 204
    [item] = await stored_items(client)
    assert item["sha256"] == sha256(b"abcdefghij")


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512", "md5"])
async def test_a_matching_checksum_is_accepted(client: httpx.AsyncClient, algorithm: str) -> None:
    url = await create(client, 4)
    response = await patch(client, url, 0, b"data", upload_checksum=checksum(algorithm, b"data"))
    assert (response.status_code, response.headers["upload-offset"]) == (204, "4")


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
@pytest.mark.parametrize("upload_id", ["0" * 32, "not-an-id", "..%2F..%2Fcatalog.sqlite3"])
async def test_unknown_uploads_answer_404(client: httpx.AsyncClient, method: str, upload_id: str) -> None:
    response = await client.request(method, f"/files/{upload_id}",
                                    headers={**OCTETS, "upload-offset": "0"})
    assert response.status_code == 404
    assert response.headers["tus-resumable"] == "1.0.0"


async def test_patch_to_a_finished_upload_changes_nothing_and_refuses_more_bytes(client: httpx.AsyncClient) -> None:
    url = await create(client, 3)
    await patch(client, url, 0, b"abc")
    response = await patch(client, url, 3, b"")
    assert (response.status_code, response.headers["upload-offset"]) == (204, "3")
    assert len(await stored_items(client)) == 1
    more = await patch(client, url, 3, b"more")
    assert (more.status_code, more.json()["error"]) == (413, "upload_length_exceeded")
    assert (await stored_items(client))[0]["size"] == 3


# --- termination and expiration --------------------------------------------------------------

async def test_delete_terminates_an_upload(client: httpx.AsyncClient, settings: Settings) -> None:
    url = await create(client, 10)
    await patch(client, url, 0, b"abc")
    response = await client.delete(url, headers=TUS)
    assert (response.status_code, response.headers["tus-resumable"]) == (204, "1.0.0")
    assert (await client.head(url, headers=TUS)).status_code == 404
    assert list((settings.data_dir / "tus").iterdir()) == []


async def test_an_expired_upload_answers_410_then_404_once_swept(settings: Settings) -> None:
    async with app_client(settings) as client:
        tus = client._transport.app.state.tus  # type: ignore[attr-defined]
        url = await create(client, 10)
        await patch(client, url, 0, b"abc")
        expires = (await client.head(url, headers=TUS)).headers["upload-expires"]
        assert expires.endswith(" GMT")
        now = tus.clock()
        tus.clock = lambda: now + settings.tus_expiry + 1
        assert (await client.head(url, headers=TUS)).status_code == 410
        assert (await patch(client, url, 3, b"d")).json()["error"] == "upload_expired"
        assert await tus.sweep() == 1
        assert (await client.head(url, headers=TUS)).status_code == 404
        assert list((settings.data_dir / "tus").iterdir()) == []


async def test_each_patch_pushes_the_expiry_back(settings: Settings) -> None:
    async with app_client(settings) as client:
        tus = client._transport.app.state.tus  # type: ignore[attr-defined]
        url = await create(client, 10)
        start = tus.clock()
        tus.clock = lambda: start + settings.tus_expiry - 1
        await patch(client, url, 0, b"abc")
        tus.clock = lambda: start + settings.tus_expiry + 1
        assert await tus.sweep() == 0
        assert await offset_of(client, url) == 3


# --- restarts, interruption and hand-over ----------------------------------------------------

async def test_offsets_and_the_hash_survive_a_restart_between_two_patches(settings: Settings) -> None:
    body = os.urandom(5 * 1024 * 1024 + 7)
    async with app_client(settings) as client:
        url = await create(client, len(body))
        await patch(client, url, 0, body[:3_000_001])
    async with app_client(settings) as client:  # a new process: no hash state in memory
        assert await offset_of(client, url) == 3_000_001
        assert (await patch(client, url, 3_000_001, body[3_000_001:])).status_code == 204
        [item] = await stored_items(client)
        assert item["sha256"] == sha256(body)


class Trickle:
    """A request body that sends some bytes, then stalls like a dead connection."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.sent = anyio.Event()
        self.never = anyio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        self.sent.set()
        await self.never.wait()
        yield b"never sent"


async def test_a_new_request_takes_over_from_a_stalled_patch_which_keeps_its_bytes(
        client: httpx.AsyncClient) -> None:
    body = os.urandom(3 * 1024 * 1024)
    url = await create(client, len(body))
    stalled = Trickle(body[:1_500_000])
    answers: list[httpx.Response] = []

    async def stalled_patch() -> None:
        answers.append(await client.patch(url, content=stalled, headers={**OCTETS, "upload-offset": "0"}))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stalled_patch)
        await stalled.sent.wait()
        await anyio.sleep(0.05)  # let the server take the chunk off the wire
        with anyio.fail_after(30):
            offset = await offset_of(client, url)  # asks the stalled PATCH to stop and save
        assert offset == 1_500_000
        response = await patch(client, url, offset, body[offset:])
        assert response.status_code == 204
    assert answers[0].status_code == 409 and answers[0].json()["error"] == "upload_superseded"
    [item] = await stored_items(client)
    assert item["sha256"] == sha256(body)


async def test_a_patch_cut_short_keeps_every_byte_that_arrived(client: httpx.AsyncClient) -> None:
    body = os.urandom(2 * 1024 * 1024)
    url = await create(client, len(body))

    async def cut_short() -> AsyncIterator[bytes]:
        yield body[:700_000]
        raise OSError("connection reset")

    with pytest.raises(OSError):
        await client.patch(url, content=cut_short(), headers={**OCTETS, "upload-offset": "0"})
    offset = await offset_of(client, url)
    assert offset == 700_000
    assert (await patch(client, url, offset, body[offset:])).status_code == 204
    [item] = await stored_items(client)
    assert item["sha256"] == sha256(body)


async def test_a_patch_with_a_checksum_cut_short_is_discarded_whole(client: httpx.AsyncClient) -> None:
    url = await create(client, 10)

    async def cut_short() -> AsyncIterator[bytes]:
        yield b"abcde"
        raise OSError("connection reset")

    with pytest.raises(OSError):
        await client.patch(url, content=cut_short(), headers={
            **OCTETS, "upload-offset": "0", "upload-checksum": checksum("sha1", b"abcdefghij")})
    assert await offset_of(client, url) == 0


def test_the_last_byte_arriving_before_a_disconnect_still_stores_the_upload(settings: Settings) -> None:
    """HEAD then says offset == length, which every tus client takes for done: the file must
    be stored by then, not left to expire."""
    with InProcessApp(settings) as app:
        created = app.request("POST", "/files/", headers=[(b"tus-resumable", b"1.0.0"), (b"upload-length", b"5")])
        url = (created.header("location") or "").removeprefix("http://testserver")
        answer = app.request("PATCH", url, chunks=[b"ab", b"cde"], disconnect=True, headers=[
            (b"tus-resumable", b"1.0.0"), (b"content-type", b"application/offset+octet-stream"),
            (b"upload-offset", b"0")])
        assert (answer.status, answer.json()["error"]) == (400, "client_disconnected")
        [item] = app.request("GET", "/uploads").json()["items"]
        assert (item["size"], item["sha256"]) == (5, sha256(b"abcde"))
        head = app.request("HEAD", url, headers=[(b"tus-resumable", b"1.0.0")])
        assert (head.header("upload-offset"), head.header("ingest-file-id")) == ("5", item["id"])


async def test_a_deferred_length_equal_to_the_bytes_held_is_stored_by_the_next_head(
        client: httpx.AsyncClient) -> None:
    url = await create(client, None)
    assert (await patch(client, url, 0, b"abc")).status_code == 204
    # The length is declared, then the offset is found wrong: the upload is whole nonetheless.
    assert (await patch(client, url, 7, b"", upload_length="3")).status_code == 409
    head = await client.head(url, headers=TUS)
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("3", "3")
    [item] = await stored_items(client)
    assert (head.headers["ingest-file-id"], item["sha256"]) == (item["id"], sha256(b"abc"))


# --- concatenation ---------------------------------------------------------------------------

async def test_four_partial_uploads_sent_in_parallel_concatenate_into_one_file(
        client: httpx.AsyncClient, settings: Settings) -> None:
    parts = [os.urandom(1024 * 1024 + n) for n in range(4)]
    urls = [""] * 4

    async def send(index: int) -> None:
        url = await create(client, len(parts[index]), extra={"upload-concat": "partial"})
        half = len(parts[index]) // 2
        await patch(client, url, 0, parts[index][:half])
        assert (await patch(client, url, half, parts[index][half:])).status_code == 204
        urls[index] = url

    async with anyio.create_task_group() as tasks:
        for index in range(4):
            tasks.start_soon(send, index)
    assert await stored_items(client) == []  # partial uploads are never listed
    head = await client.head(urls[0], headers=TUS)
    assert head.headers["upload-concat"] == "partial"
    relative = " ".join(url.removeprefix("http://testserver") for url in urls)
    response = await client.post("/files/", headers={
        **TUS, "upload-concat": f"final;{relative}",
        "upload-metadata": f"filename {b64('whole.bin')}"})
    assert response.status_code == 201
    whole = b"".join(parts)
    [item] = await stored_items(client)
    assert (item["filename"], item["size"], item["sha256"]) == ("whole.bin", len(whole), sha256(whole))
    final = await client.head(response.headers["location"], headers=TUS)
    assert final.headers["upload-concat"] == "final;" + " ".join(urls)
    assert (final.headers["upload-offset"], final.headers["upload-length"]) == (str(len(whole)),) * 2
    assert (await patch(client, response.headers["location"], len(whole), b"")).status_code == 403
    assert sorted(p.name for p in (settings.data_dir / "tus").iterdir()) == [
        response.headers["location"].rsplit("/", 1)[1] + ".json"]


async def test_a_final_upload_naming_a_part_twice_is_refused_and_the_part_is_kept(client: httpx.AsyncClient) -> None:
    url = await create(client, 3, extra={"upload-concat": "partial"})
    assert (await patch(client, url, 0, b"abc")).status_code == 204
    with anyio.fail_after(10):  # holding the part's lock twice used to wait for itself forever
        response = await client.post("/files/", headers={**TUS, "upload-concat": f"final;{url} {url}"})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert await offset_of(client, url) == 3


async def test_concatenating_an_unfinished_partial_upload_is_refused(client: httpx.AsyncClient) -> None:
    url = await create(client, 10, extra={"upload-concat": "partial"})
    response = await client.post("/files/", headers={**TUS, "upload-concat": f"final;{url}"})
    assert response.status_code == 400


# --- CORS and auth ---------------------------------------------------------------------------

async def test_cors_exposes_the_tus_headers_and_preflight_needs_no_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync=False, tokens=("secret",),
                        cors_origins=("https://app.example",))
    async with app_client(settings) as client:
        preflight = await client.options("/files/", headers={
            "origin": "https://app.example", "access-control-request-method": "POST",
            "access-control-request-headers": "tus-resumable,upload-length,upload-metadata,authorization"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        refused = await client.post("/files/", headers={**TUS, "upload-length": "1",
                                                        "origin": "https://app.example"})
        assert refused.status_code == 401
        assert refused.headers["tus-resumable"] == "1.0.0"
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        created = await client.post("/files/", headers={**TUS, "upload-length": "1", "origin": "https://app.example",
                                                        "authorization": "Bearer secret"})
        assert created.status_code == 201
        exposed = {h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")}
        assert {"location", "upload-offset", "upload-length", "upload-expires", "tus-resumable",
                "tus-version", "tus-max-size", "tus-extension"} <= exposed
        other = await client.options("/files/", headers={
            "origin": "https://evil.example", "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("version", [None, "0.2.2", "1.0.0"])
async def test_without_a_token_every_tus_request_gets_401_whatever_its_version(
        tmp_path: Path, method: str, version: str | None) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync=False, tokens=("secret",))
    async with app_client(settings) as client:
        created = await client.post("/files/", headers={**TUS, "upload-length": "3",
                                                        "authorization": "Bearer secret"})
        url = created.headers["location"] if method != "POST" else "/files/"
        headers = {"upload-length": "3", "upload-offset": "0", "content-type": "application/offset+octet-stream",
                   **({"tus-resumable": version} if version else {})}
        refused = await client.request(method, url, headers=headers, content=b"abc")
        assert refused.status_code == 401
        assert refused.headers["tus-resumable"] == "1.0.0"  # tus clients read it on every answer
        assert refused.headers["www-authenticate"] == 'Bearer realm="ingest"'
        # With the token, the protocol's own answers come back.
        allowed = await client.request(method, url, headers={**headers, "authorization": "Bearer secret"},
                                       content=b"abc")
        expected = 204 if method == "OPTIONS" else 412 if version != "1.0.0" else {
            "POST": 201, "HEAD": 200, "PATCH": 204, "DELETE": 204}[method]
        assert allowed.status_code == expected


async def test_method_override_lets_a_post_act_as_patch(client: httpx.AsyncClient) -> None:
    url = await create(client, 3)
    response = await client.post(url, content=b"abc", headers={
        **OCTETS, "upload-offset": "0", "x-http-method-override": "PATCH"})
    assert (response.status_code, response.headers["upload-offset"]) == (204, "3")


async def test_an_upload_written_by_another_process_answers_423(settings: Settings) -> None:
    async with app_client(settings) as client:
        url = await create(client, 10)
        tus = client._transport.app.state.tus  # type: ignore[attr-defined]
        session = tus.storage.open_partial(url.rsplit("/", 1)[1])  # as a sibling worker would
        try:
            response = await patch(client, url, 0, b"abc")
        finally:
            session.close()
        assert (response.status_code, response.json()["error"]) == (423, "upload_locked")
        assert response.headers["retry-after"] == "1"
        assert (await patch(client, url, 0, b"abc")).status_code == 204
