"""ingest/multipart/parser.py end to end (framing guard + streaming-form-data + sinks + commit),
driven without HTTP so every chunking of a body can be tried quickly: what a form's files and
fields become. The framing guard's own hazards are in tests/test_framing.py."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.errors import (
    DigestMismatch,
    FieldTooLarge,
    FileTooLarge,
    IngestError,
    InvalidFilename,
    InvalidMetadata,
    NoFiles,
    TooManyParts,
)
from ingest.storage.local import LocalStorage
from ingest.uploads import UploadService
from tests.conftest import (
    FORM,
    FORM_CONTENT,
    assert_nothing_kept,
    field_part,
    file_part,
    multipart_body,
    read_stored,
    receive_multipart,
    sha256,
    temp_files,
)

pytestmark = pytest.mark.anyio


async def test_stored_bytes_are_exact_at_every_two_way_split(upload_service: UploadService, settings: Settings) -> None:
    for split in range(1, len(FORM)):
        form, stored = await receive_multipart(upload_service, [FORM[:split], FORM[split:]])
        assert [read_stored(settings, s) for s in stored] == [FORM_CONTENT, b"\x00\r\n" * 50], split
        assert form.fields == {"note": "hello"}
    assert temp_files(settings.data_dir) == []


async def test_stored_bytes_are_exact_when_fed_one_byte_at_a_time(upload_service: UploadService,
                                                                  settings: Settings) -> None:
    _, stored = await receive_multipart(upload_service, [FORM[i:i + 1] for i in range(len(FORM))])
    assert read_stored(settings, stored[0]) == FORM_CONTENT


@pytest.mark.parametrize("disposition", [
    b'filename="a\\x00b"'.replace(b"\\x00", b"\x00"),
    b'filename="a\tb"',
    b'filename=".."',
    b'filename="' + b"n" * 300 + b'"',
    b"filename*=UTF-8''%00.txt",
])
async def test_unusable_filenames_are_refused(upload_service: UploadService, settings: Settings,
                                              disposition: bytes) -> None:
    body = multipart_body([(b'Content-Disposition: form-data; name="f"; ' + disposition + b"\r\n", b"x")])
    with pytest.raises(IngestError) as caught:
        await receive_multipart(upload_service, [body])
    assert caught.value.status == 400
    assert_nothing_kept(settings.data_dir)


async def test_digest_fields_are_checked_per_file_in_order(upload_service: UploadService, settings: Settings) -> None:
    body = multipart_body([
        file_part("file", "a.txt", b"first"), file_part("file", "b.txt", b"second"),
        field_part("file.sha256", sha256(b"first")), field_part("file.sha256", sha256(b"second"))])
    _, stored = await receive_multipart(upload_service, [body])
    assert [s.sha256 for s in stored] == [sha256(b"first"), sha256(b"second")]


async def test_digest_mismatch_rejects_the_whole_request(upload_service: UploadService, settings: Settings) -> None:
    body = multipart_body([
        file_part("good", "a.txt", b"first"), file_part("bad", "b.txt", b"second"),
        field_part("bad.sha256", sha256(b"something else"))])
    with pytest.raises(DigestMismatch):
        await receive_multipart(upload_service, [body])
    assert_nothing_kept(settings.data_dir)


async def test_content_digest_part_header_is_checked(upload_service: UploadService, settings: Settings) -> None:
    import base64
    import hashlib

    good = base64.b64encode(hashlib.sha256(b"payload").digest()).decode()
    headers = (b'Content-Disposition: form-data; name="f"; filename="p.bin"\r\n'
               b"Content-Digest: sha-256=:" + good.encode() + b":\r\n")
    _, stored = await receive_multipart(upload_service, [multipart_body([(headers, b"payload")])])
    assert stored[0].sha256 == sha256(b"payload")
    with pytest.raises(DigestMismatch):
        await receive_multipart(upload_service, [multipart_body([(headers, b"tampered")])])


async def test_metadata_field_is_stored_with_every_file(upload_service: UploadService) -> None:
    body = multipart_body([field_part("metadata", '{"project": "x", "n": 3}'),
                           file_part("f", "a", b"1"), file_part("f", "b", b"2")])
    _, stored = await receive_multipart(upload_service, [body])
    assert [s.metadata for s in stored] == [{"project": "x", "n": 3}] * 2


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"text"'])
async def test_metadata_that_is_not_a_json_object_is_refused(upload_service: UploadService, value: str) -> None:
    with pytest.raises(InvalidMetadata):
        await receive_multipart(upload_service, [multipart_body([field_part("metadata", value),
                                                                 file_part("f", "a", b"1")])])


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
            await receive_multipart(service, [body])
        await service.stop()
        assert_nothing_kept(limited.data_dir)


async def test_a_form_without_files_is_refused(upload_service: UploadService) -> None:
    with pytest.raises(NoFiles):
        await receive_multipart(upload_service, [multipart_body([field_part("only", "fields")])])


async def test_an_empty_browser_file_input_is_skipped(upload_service: UploadService) -> None:
    body = multipart_body([file_part("empty", "", b"", "application/octet-stream"),
                           file_part("real", "r.txt", b"data")])
    _, stored = await receive_multipart(upload_service, [body])
    assert [s.filename for s in stored] == ["r.txt"]


async def test_data_in_a_part_with_an_empty_filename_is_refused(upload_service: UploadService) -> None:
    with pytest.raises(InvalidFilename):
        await receive_multipart(upload_service, [multipart_body([file_part("f", "", b"data")])])


async def test_an_empty_file_with_a_name_is_stored(upload_service: UploadService, settings: Settings) -> None:
    _, stored = await receive_multipart(upload_service, [multipart_body([file_part("f", "empty.txt", b"")])])
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
