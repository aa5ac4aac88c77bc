"""The multipart path end to end (framing guard + streaming-form-data + sinks + commit),
driven without HTTP so every chunking of a body can be tried quickly."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from starlette.types import Message

from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.edge.body import RequestBody
from ingest.errors import (
    DigestMismatch,
    FieldTooLarge,
    FileTooLarge,
    IngestError,
    InvalidFilename,
    InvalidMetadata,
    MalformedMultipart,
    NoFiles,
    TooManyParts,
)
from ingest.models import StoredFile
from ingest.multipart.parser import Form, receive_form
from ingest.storage.local import LocalStorage
from ingest.uploads import UploadService
from tests.conftest import field_part, file_part, multipart_body, sha256, stored_files, temp_files

pytestmark = pytest.mark.anyio
CONTENT_TYPE = "multipart/form-data; boundary=b0undary"


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[UploadService]:
    storage = LocalStorage(settings.data_dir, fsync=False)
    storage.prepare()
    service = UploadService(settings, storage, SqliteCatalog(settings.catalog_path))
    await service.start()
    yield service
    await service.stop()


def _chunks(chunks: Sequence[bytes]) -> RequestBody:
    messages = iter([*({"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks),
                     {"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> Message:
        return next(messages)

    return RequestBody(receive)


async def receive(service: UploadService, chunks: Sequence[bytes],
                  content_type: str = CONTENT_TYPE) -> tuple[Form, list[StoredFile]]:
    form = await receive_form(content_type, _chunks(chunks), service, service.settings, request=None)
    return form, await service.commit(form.files)


def read_stored(settings: Settings, stored: StoredFile) -> bytes:
    return (settings.data_dir / "files" / stored.id[:2] / stored.id).read_bytes()


def assert_nothing_kept(settings: Settings) -> None:
    assert temp_files(settings.data_dir) == []
    assert stored_files(settings.data_dir) == []


CONTENT = b"line one\r\n--b0undar not a boundary\r\n--b0undaryX still data\r\n\r"
BODY = multipart_body([
    field_part("note", "hello"),
    file_part("file", "a.txt", CONTENT, "text/plain"),
    file_part("file", "b.bin", b"\x00\r\n" * 50, "application/x-thing"),
])


async def test_stored_bytes_are_exact_at_every_two_way_split(service: UploadService, settings: Settings) -> None:
    for split in range(1, len(BODY)):
        form, stored = await receive(service, [BODY[:split], BODY[split:]])
        assert [read_stored(settings, s) for s in stored] == [CONTENT, b"\x00\r\n" * 50], split
        assert form.fields == {"note": "hello"}
    assert temp_files(settings.data_dir) == []


async def test_stored_bytes_are_exact_when_fed_one_byte_at_a_time(service: UploadService, settings: Settings) -> None:
    _, stored = await receive(service, [BODY[i:i + 1] for i in range(len(BODY))])
    assert read_stored(settings, stored[0]) == CONTENT


@pytest.mark.parametrize("epilogue", [b"", b"\r\n", b"\r\n\r\n--b0undary\r\n", b"garbage after the end" * 100])
async def test_epilogue_in_the_same_chunk_never_reaches_the_last_part(
        service: UploadService, settings: Settings, epilogue: bytes) -> None:
    body = multipart_body([file_part("file", "a.bin", b"last part bytes")]) + epilogue
    _, stored = await receive(service, [body])
    assert read_stored(settings, stored[0]) == b"last part bytes"


async def test_body_cut_anywhere_before_the_closing_boundary_is_rejected_and_leaves_nothing(
        service: UploadService, settings: Settings) -> None:
    closing = len(BODY) - len(b"\r\n")  # the CRLF after "--b0undary--" is optional epilogue
    for cut in range(closing):
        with pytest.raises(IngestError) as caught:
            await receive(service, [BODY[:cut]])
        assert caught.value.status == 400, cut
        assert_nothing_kept(settings)


async def test_preamble_before_the_first_boundary_is_ignored(service: UploadService, settings: Settings) -> None:
    body = b"This is a preamble.\r\n" + multipart_body([file_part("f", "x.txt", b"abc")])
    _, stored = await receive(service, [body])
    assert read_stored(settings, stored[0]) == b"abc"


async def test_overlong_part_header_is_refused_quickly(service: UploadService, settings: Settings) -> None:
    endless_line = b"--b0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"" + b"a" * (1024 * 1024)
    started = time.monotonic()
    with pytest.raises(MalformedMultipart, match="part headers are longer"):
        await receive(service, [endless_line[i:i + 1024] for i in range(0, len(endless_line), 1024)])
    assert time.monotonic() - started < 5
    assert_nothing_kept(settings)


async def test_non_utf8_part_headers_are_a_400(service: UploadService, settings: Settings) -> None:
    body = multipart_body([(b'Content-Disposition: form-data; name="f"; filename="\xff\xfe.bin"\r\n', b"x")])
    with pytest.raises(MalformedMultipart, match="not valid UTF-8"):
        await receive(service, [body])
    assert_nothing_kept(settings)


async def test_content_type_before_content_disposition_is_recorded(service: UploadService) -> None:
    body = multipart_body([(b'Content-Type: image/png\r\nContent-Disposition: form-data; name="f"; '
                            b'filename="pic"\r\n', b"\x89PNG")])
    _, stored = await receive(service, [body])
    assert stored[0].content_type == "image/png"


async def test_each_file_of_a_repeated_field_keeps_its_own_name_and_type(service: UploadService) -> None:
    _, stored = await receive(service, [BODY])
    assert [(s.filename, s.content_type) for s in stored] == [
        ("a.txt", "text/plain"), ("b.bin", "application/x-thing")]


@pytest.mark.parametrize(("disposition", "expected"), [
    (b'filename="plain.txt"; filename*=UTF-8\'\'%C3%A9t%C3%A9.txt', "\u00e9t\u00e9.txt"),
    (b"filename*=UTF-8''na%C3%AFve.txt", "na\u00efve.txt"),
    (b'filename="C:\\evil\\x.txt"', "x.txt"),
    (b'filename="../../etc/passwd"', "passwd"),
    (b'filename="/etc/shadow"', "shadow"),
    (b'filename="caf\xc3\xa9.txt"', "caf\u00e9.txt"),
    (b'filename="quote\\"d.txt"', 'quote"d.txt'),
])
async def test_filename_is_taken_from_the_right_parameter_and_stripped_of_paths(
        service: UploadService, disposition: bytes, expected: str) -> None:
    body = multipart_body([(b'Content-Disposition: form-data; name="f"; ' + disposition + b"\r\n", b"x")])
    _, stored = await receive(service, [body])
    assert stored[0].filename == expected


@pytest.mark.parametrize("disposition", [
    b'filename="a\\x00b"'.replace(b"\\x00", b"\x00"),
    b'filename="a\tb"',
    b'filename=".."',
    b'filename="' + b"n" * 300 + b'"',
    b"filename*=UTF-8''%00.txt",
])
async def test_unusable_filenames_are_refused(service: UploadService, settings: Settings,
                                              disposition: bytes) -> None:
    body = multipart_body([(b'Content-Disposition: form-data; name="f"; ' + disposition + b"\r\n", b"x")])
    with pytest.raises(IngestError) as caught:
        await receive(service, [body])
    assert caught.value.status == 400
    assert_nothing_kept(settings)


@pytest.mark.parametrize("headers", [
    b"Content-Type: text/plain\r\n",  # no Content-Disposition
    b"Content-Disposition: attachment; name=\"f\"\r\n",
    b"Content-Disposition: form-data; filename=\"x\"\r\n",  # no name
    b"Content-Disposition: form-data; name=\"\"; filename=\"x\"\r\n",
    b"Content-Disposition: form-data; name=\"f\"\r\nContent-Disposition: form-data; name=\"g\"\r\n",
    b"Content-Disposition: form-data; name=\"f\"; name=\"g\"\r\n",
    b"Content-Disposition: form-data;\r\n name=\"f\"\r\n",  # folded line
    b"no colon here\r\n",
    b"Content-Disposition: form-data; name=\"f\"; filename*=latin9''x\r\n",
])
async def test_malformed_part_headers_are_a_400_and_leave_nothing(
        service: UploadService, settings: Settings, headers: bytes) -> None:
    body = multipart_body([file_part("ok", "ok.txt", b"fine"), (headers, b"x")])
    with pytest.raises(IngestError) as caught:
        await receive(service, [body])
    assert caught.value.status == 400
    assert_nothing_kept(settings)


@pytest.mark.parametrize("content_type", [
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=\"" + "x" * 71 + "\"",
    "multipart/form-data; boundary=a\rb",
    "text/plain; boundary=b0undary",
])
async def test_bad_boundary_parameter_is_a_400(service: UploadService, content_type: str) -> None:
    with pytest.raises(MalformedMultipart):
        await receive(service, [BODY], content_type=content_type)


async def test_digest_fields_are_checked_per_file_in_order(service: UploadService, settings: Settings) -> None:
    body = multipart_body([
        file_part("file", "a.txt", b"first"), file_part("file", "b.txt", b"second"),
        field_part("file.sha256", sha256(b"first")), field_part("file.sha256", sha256(b"second"))])
    _, stored = await receive(service, [body])
    assert [s.sha256 for s in stored] == [sha256(b"first"), sha256(b"second")]


async def test_digest_mismatch_rejects_the_whole_request(service: UploadService, settings: Settings) -> None:
    body = multipart_body([
        file_part("good", "a.txt", b"first"), file_part("bad", "b.txt", b"second"),
        field_part("bad.sha256", sha256(b"something else"))])
    with pytest.raises(DigestMismatch):
        await receive(service, [body])
    assert_nothing_kept(settings)


async def test_content_digest_part_header_is_checked(service: UploadService, settings: Settings) -> None:
    import base64
    import hashlib

    good = base64.b64encode(hashlib.sha256(b"payload").digest()).decode()
    headers = (b'Content-Disposition: form-data; name="f"; filename="p.bin"\r\n'
               b"Content-Digest: sha-256=:" + good.encode() + b":\r\n")
    _, stored = await receive(service, [multipart_body([(headers, b"payload")])])
    assert stored[0].sha256 == sha256(b"payload")
    with pytest.raises(DigestMismatch):
        await receive(service, [multipart_body([(headers, b"tampered")])])


async def test_metadata_field_is_stored_with_every_file(service: UploadService) -> None:
    body = multipart_body([field_part("metadata", '{"project": "x", "n": 3}'),
                           file_part("f", "a", b"1"), file_part("f", "b", b"2")])
    _, stored = await receive(service, [body])
    assert [s.metadata for s in stored] == [{"project": "x", "n": 3}] * 2


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"text"'])
async def test_metadata_that_is_not_a_json_object_is_refused(service: UploadService, value: str) -> None:
    with pytest.raises(InvalidMetadata):
        await receive(service, [multipart_body([field_part("metadata", value), file_part("f", "a", b"1")])])


async def test_limits_are_enforced_while_streaming(settings: Settings, tmp_path: Path) -> None:
    cases: list[tuple[Settings, bytes, type[IngestError]]] = [
        (settings.replace(max_file_size=10), multipart_body([file_part("f", "a", b"x" * 11)]), FileTooLarge),
        (settings.replace(max_field_size=4), multipart_body([field_part("n", "12345"), file_part("f", "a", b"x")]),
         FieldTooLarge),
        (settings.replace(max_parts=2), multipart_body([file_part("f", str(i), b"x") for i in range(3)]),
         TooManyParts),
    ]
    for limited, body, error in cases:
        storage = LocalStorage(limited.data_dir, fsync=False)
        storage.prepare()
        service = UploadService(limited, storage, SqliteCatalog(limited.catalog_path))
        await service.start()
        with pytest.raises(error):
            await receive(service, [body])
        await service.stop()
        assert_nothing_kept(limited)


async def test_a_form_without_files_is_refused(service: UploadService) -> None:
    with pytest.raises(NoFiles):
        await receive(service, [multipart_body([field_part("only", "fields")])])


async def test_an_empty_browser_file_input_is_skipped(service: UploadService) -> None:
    body = multipart_body([file_part("empty", "", b"", "application/octet-stream"),
                           file_part("real", "r.txt", b"data")])
    _, stored = await receive(service, [body])
    assert [s.filename for s in stored] == ["r.txt"]


async def test_data_in_a_part_with_an_empty_filename_is_refused(service: UploadService) -> None:
    with pytest.raises(InvalidFilename):
        await receive(service, [multipart_body([file_part("f", "", b"data")])])


async def test_an_empty_file_with_a_name_is_stored(service: UploadService, settings: Settings) -> None:
    _, stored = await receive(service, [multipart_body([file_part("f", "empty.txt", b"")])])
    assert stored[0].size == 0
    assert stored[0].sha256 == sha256(b"")


def test_garbage_collection_during_a_parse_is_not_charged_to_the_parse_budget() -> None:
    from ingest.multipart.parser import _COLLECTOR_CLOCK, _parse_cpu_time

    objects = [[index] for index in range(1_000_000)]  # makes a full collection take a while
    with _COLLECTOR_CLOCK:  # held by every parse, as receive_form does
        started_parse, started_thread = _parse_cpu_time(), time.thread_time()
        gc.collect()
        collection = time.thread_time() - started_thread
    assert len(objects) and collection > 0.01
    assert _parse_cpu_time() - started_parse < collection / 4


def test_the_collector_clock_is_a_gc_callback_only_while_a_parse_holds_it() -> None:
    from ingest.multipart.parser import _COLLECTOR_CLOCK

    assert _COLLECTOR_CLOCK not in gc.callbacks
    with _COLLECTOR_CLOCK, _COLLECTOR_CLOCK:
        assert gc.callbacks.count(_COLLECTOR_CLOCK) == 1
    assert _COLLECTOR_CLOCK not in gc.callbacks


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable", "x-uuencode", "BASE64", ""])
@pytest.mark.parametrize("on_field", [False, True])
async def test_content_transfer_encoding_other_than_identity_is_a_400_and_leaves_nothing(
        service: UploadService, settings: Settings, encoding: str, on_field: bool) -> None:
    disposition = 'form-data; name="f"' if on_field else 'form-data; name="f"; filename="a.txt"'
    headers = f"Content-Disposition: {disposition}\r\nContent-Transfer-Encoding: {encoding}\r\n".encode()
    body = multipart_body([file_part("ok", "ok.txt", b"fine"), (headers, b"aGVsbG8=")])
    with pytest.raises(MalformedMultipart, match="Content-Transfer-Encoding"):
        await receive(service, [body])
    assert_nothing_kept(settings)


@pytest.mark.parametrize("encoding", ["7bit", "8bit", "binary", " Binary "])
async def test_identity_content_transfer_encodings_are_accepted(service: UploadService, encoding: str) -> None:
    headers = (f'Content-Disposition: form-data; name="f"; filename="a.bin"\r\n'
               f"Content-Transfer-Encoding: {encoding}\r\n").encode()
    _, [stored] = await receive(service, [multipart_body([(headers, b"\x00\xffbytes")])])
    assert stored.sha256 == sha256(b"\x00\xffbytes")


def test_the_form_parser_leaves_smart_open_transports_unloaded_without_refusing_other_threads() -> None:
    """streaming-form-data's smart_open gets no boto3 or requests, yet a thread importing them
    at the same time gets them, and the import system is left as it was found."""
    probe = (
        "import sys, threading\n"
        "finders = list(sys.meta_path)\n"
        "errors = []\n"
        "def other():\n"
        "    try:\n"
        "        import requests\n"
        "    except ImportError as error:\n"
        "        errors.append(error)\n"
        "thread = threading.Thread(target=other)\n"
        "thread.start()\n"
        "import ingest.multipart.formparser\n"
        "thread.join()\n"
        "import smart_open.s3\n"
        "assert smart_open.s3.MISSING_DEPS and 'boto3' not in sys.modules, sorted(sys.modules)\n"
        "assert not errors and 'requests' in sys.modules, errors\n"
        "assert sys.meta_path == finders, sys.meta_path\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
