"""ingest/tus/service.py: TusService without HTTP, over LocalPartials beside the upload
service's local storage: creation, appending, the commit of a whole upload into an ordinary
stored file, concatenation, termination and expiry."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.errors import (
    ChecksumMismatch,
    ClientDisconnected,
    FileTooLarge,
    InvalidRequest,
    NotFound,
    OffsetMismatch,
    UploadExpired,
    UploadLengthExceeded,
)
from ingest.storage.local import LocalStorage
from ingest.storage.local_partials import LocalPartials
from ingest.tus.service import TusService, TusUpload
from ingest.uploads import UploadService
from tests.conftest import read_stored, sha256, stored_files, temp_files
from tests.inprocess import body_of

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tus(upload_service: UploadService, settings: Settings, clock: Clock) -> AsyncIterator[TusService]:
    storage = upload_service.storage
    assert isinstance(storage, LocalStorage)
    partials = LocalPartials(storage, settings.data_dir)
    partials.prepare()
    yield TusService(settings, upload_service, partials, clock=clock)


def partial_files(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "tus").iterdir())


async def write(tus: TusService, upload: TusUpload, *chunks: bytes, checksum: tuple[str, bytes] | None = None,
                length: int | None = None) -> TusUpload:
    """A PATCH of these chunks at the offset the upload holds."""
    return await tus.write(upload.upload_id, offset=upload.offset, body=body_of(chunks), checksum=checksum,
                           length=length, request=None)


async def test_an_upload_written_in_two_patches_becomes_a_stored_file_of_its_bytes_name_and_type(
        tus: TusService, upload_service: UploadService, settings: Settings) -> None:
    content = os.urandom(300_000)
    upload = await tus.create(length=len(content), metadata={
        "filename": "report.pdf", "filetype": "application/x-thing", "note": "kept with the file"}, request=None)
    upload = await write(tus, upload, content[:100_000], content[100_000:123_456])
    assert (upload.offset, upload.file_id) == (123_456, None)
    upload = await write(tus, upload, content[123_456:])
    assert upload.file_id is not None
    stored = await upload_service.get(upload.file_id)
    assert (stored.filename, stored.content_type, stored.size, stored.sha256, stored.metadata) == (
        "report.pdf", "application/x-thing", len(content), sha256(content), {"note": "kept with the file"})
    assert read_stored(settings, stored) == content
    assert [path.suffix for path in partial_files(settings)] == [".json"]  # the record, not the bytes
    assert temp_files(settings.data_dir) == []


async def test_info_reports_the_bytes_held_and_the_file_once_stored(tus: TusService) -> None:
    upload = await tus.create(length=6, metadata={}, request=None)
    await write(tus, upload, b"abc")
    held = await tus.info(upload.upload_id, request=None)
    assert (held.offset, held.length, held.complete, held.file_id) == (3, 6, False, None)
    await write(tus, held, b"def")
    done = await tus.info(upload.upload_id, request=None)
    assert (done.offset, done.complete) == (6, True) and done.file_id is not None


async def test_a_write_at_another_offset_is_refused_with_the_offset_held(tus: TusService) -> None:
    upload = await tus.create(length=10, metadata={}, request=None)
    await write(tus, upload, b"abc")
    with pytest.raises(OffsetMismatch) as caught:
        await tus.write(upload.upload_id, offset=1, body=body_of([b"x"]), request=None)
    assert caught.value.headers["upload-offset"] == "3"
    assert (await tus.info(upload.upload_id, request=None)).offset == 3


async def test_bytes_past_the_upload_length_are_refused_whole(tus: TusService, settings: Settings) -> None:
    upload = await tus.create(length=5, metadata={}, request=None)
    with pytest.raises(UploadLengthExceeded):
        await write(tus, upload, b"abc", b"defg")
    assert (await tus.info(upload.upload_id, request=None)).offset == 0
    assert stored_files(settings.data_dir) == []


async def test_a_length_over_max_file_size_is_refused_before_anything_exists(
        tus: TusService, settings: Settings) -> None:
    with pytest.raises(FileTooLarge):
        await tus.create(length=settings.max_file_size + 1, metadata={}, request=None)
    assert partial_files(settings) == []


async def test_an_empty_upload_is_a_stored_file_at_its_creation(tus: TusService, upload_service: UploadService) -> None:
    upload = await tus.create(length=0, metadata={"filename": "empty.txt"}, request=None)
    assert upload.file_id is not None
    stored = await upload_service.get(upload.file_id)
    assert (stored.filename, stored.size, stored.sha256) == ("empty.txt", 0, sha256(b""))


async def test_a_deferred_length_is_declared_by_a_write_which_may_complete_the_upload(
        tus: TusService, upload_service: UploadService) -> None:
    upload = await tus.create(length=None, metadata={}, request=None)
    upload = await write(tus, upload, b"ab")
    assert (upload.length, upload.file_id) == (None, None)
    upload = await write(tus, upload, b"c", length=3)
    assert upload.file_id is not None
    stored = await upload_service.get(upload.file_id)
    assert (stored.filename, stored.sha256) == (f"upload-{upload.upload_id}", sha256(b"abc"))


async def test_a_write_cut_short_keeps_every_byte_that_arrived(tus: TusService) -> None:
    upload = await tus.create(length=10, metadata={}, request=None)
    with pytest.raises(ClientDisconnected):
        await tus.write(upload.upload_id, offset=0, body=body_of([b"abc", b"de"], disconnect=True), request=None)
    assert (await tus.info(upload.upload_id, request=None)).offset == 5


async def test_a_chunk_whose_checksum_does_not_match_is_discarded_whole(tus: TusService) -> None:
    upload = await tus.create(length=10, metadata={}, request=None)
    with pytest.raises(ChecksumMismatch):
        await write(tus, upload, b"abc", checksum=("sha1", hashlib.sha1(b"other").digest()))
    upload = await tus.info(upload.upload_id, request=None)
    assert upload.offset == 0
    upload = await write(tus, upload, b"abc", checksum=("sha1", hashlib.sha1(b"abc").digest()))
    assert upload.offset == 3


async def test_terminate_removes_the_upload_and_its_bytes(tus: TusService, settings: Settings) -> None:
    upload = await tus.create(length=10, metadata={}, request=None)
    await write(tus, upload, b"abc")
    await tus.terminate(upload.upload_id, request=None)
    with pytest.raises(NotFound):
        await tus.info(upload.upload_id, request=None)
    assert partial_files(settings) == []


async def test_an_expired_upload_is_refused_then_swept_and_a_fresh_one_is_kept(
        tus: TusService, settings: Settings, clock: Clock) -> None:
    old = await tus.create(length=10, metadata={}, request=None)
    await write(tus, old, b"abc")
    clock.now += settings.tus_expiry - 1
    fresh = await tus.create(length=10, metadata={}, request=None)
    clock.now += 2
    with pytest.raises(UploadExpired):
        await tus.info(old.upload_id, request=None)
    assert await tus.sweep() == 1
    with pytest.raises(NotFound):
        await tus.info(old.upload_id, request=None)
    assert (await tus.info(fresh.upload_id, request=None)).offset == 0


async def test_each_write_pushes_the_expiry_back(tus: TusService, settings: Settings, clock: Clock) -> None:
    upload = await tus.create(length=10, metadata={}, request=None)
    clock.now += settings.tus_expiry - 1
    upload = await write(tus, upload, b"abc")
    clock.now += 2
    assert await tus.sweep() == 0
    assert (await tus.info(upload.upload_id, request=None)).offset == 3


async def test_partial_uploads_concatenate_in_the_order_named_into_one_file_and_are_removed(
        tus: TusService, upload_service: UploadService, settings: Settings) -> None:
    contents = [b"first ", b"", b"second " * 1000, b"third"]
    parts = []
    for content in contents:
        part = await tus.create(length=len(content), metadata={}, partial=True, request=None)
        parts.append(await write(tus, part, content) if content else part)
    order = [3, 0, 1, 2]
    final = await tus.concatenate([parts[i].upload_id for i in order], {"filename": "joined.bin"}, request=None)
    assert final.file_id is not None and final.offset == sum(map(len, contents))
    stored = await upload_service.get(final.file_id)
    joined = b"".join(contents[i] for i in order)
    assert (stored.filename, stored.sha256) == ("joined.bin", sha256(joined))
    assert read_stored(settings, stored) == joined
    for part in parts:
        with pytest.raises(NotFound):
            await tus.info(part.upload_id, request=None)


async def test_concatenating_an_unfinished_or_repeated_part_is_refused_and_stores_nothing(
        tus: TusService, upload_service: UploadService, settings: Settings) -> None:
    done = await write(tus, await tus.create(length=3, metadata={}, partial=True, request=None), b"abc")
    unfinished = await write(tus, await tus.create(length=5, metadata={}, partial=True, request=None), b"ab")
    for part_ids in ([done.upload_id, unfinished.upload_id], [done.upload_id, done.upload_id]):
        with pytest.raises(InvalidRequest):
            await tus.concatenate(part_ids, {"filename": "j.bin"}, request=None)
    assert stored_files(settings.data_dir) == [] and await upload_service.catalog.file_ids() == set()
    assert (await tus.info(done.upload_id, request=None)).offset == 3
