"""ingest/uploads.py: UploadService without HTTP, over local storage and a SQLite catalog.

A request's files are committed all together or not at all, the catalog stays in step with
storage (every row has its blob; a blob without a row is swept), and delete removes both."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.errors import DigestMismatch, FileTooLarge, NotFound, UnsupportedFileType
from ingest.models import StoredFile, new_file_id
from ingest.storage.local import LocalStorage
from ingest.uploads import IncomingFile, UploadService
from tests.conftest import assert_nothing_kept, read_stored, sha256, stored_files, temp_files

pytestmark = pytest.mark.anyio


async def receiving(service: UploadService, content: bytes, *, filename: str = "a.bin",
                    content_type: str = "application/octet-stream",
                    expected_sha256: str | None = None) -> IncomingFile:
    """A file whose bytes have all been handed to its sink, not yet finished or committed."""
    incoming = await service.new_file(filename=filename, content_type=content_type,
                                      expected_sha256=expected_sha256, request=None)
    for start in range(0, len(content), 1000):
        await incoming.sink.write(content[start:start + 1000])
    return incoming


async def catalog_ids(service: UploadService) -> set[str]:
    return await service.catalog.file_ids()


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_a_committed_file_is_its_bytes_on_disk_and_a_row_with_their_size_and_sha256(
        upload_service: UploadService, settings: Settings) -> None:
    content = os.urandom(10_000)
    [stored] = await upload_service.commit([await receiving(upload_service, content, filename="r.bin",
                                                            content_type="application/x-thing")])
    assert (stored.filename, stored.content_type, stored.size, stored.sha256) == (
        "r.bin", "application/x-thing", len(content), sha256(content))
    assert read_stored(settings, stored) == content
    assert await upload_service.get(stored.id) == stored
    assert temp_files(settings.data_dir) == []


async def test_the_files_of_one_request_are_committed_in_order_each_with_its_own_name(
        upload_service: UploadService, settings: Settings) -> None:
    contents = [b"first", b"", b"third" * 500]
    files = [await receiving(upload_service, content, filename=f"{index}.txt", content_type="text/plain")
             for index, content in enumerate(contents)]
    stored = await upload_service.commit(files)
    assert [(s.filename, s.size, s.sha256) for s in stored] == [
        (f"{index}.txt", len(content), sha256(content)) for index, content in enumerate(contents)]
    assert [read_stored(settings, s) for s in stored] == contents
    assert await catalog_ids(upload_service) == {s.id for s in stored}


async def test_a_matching_expected_sha256_is_stored(upload_service: UploadService) -> None:
    [stored] = await upload_service.commit([await receiving(upload_service, b"data", expected_sha256=sha256(b"data"))])
    assert stored.sha256 == sha256(b"data")


async def test_a_digest_mismatch_in_one_file_stores_none_of_the_request(
        upload_service: UploadService, settings: Settings) -> None:
    files = [await receiving(upload_service, b"good"),
             await receiving(upload_service, b"bad", expected_sha256=sha256(b"something else"))]
    with pytest.raises(DigestMismatch):
        await upload_service.commit(files)
    assert await catalog_ids(upload_service) == set()
    assert_nothing_kept(settings.data_dir)


async def test_a_catalog_failure_after_the_blobs_were_committed_removes_every_blob(
        upload_service: UploadService, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing_add(stored_files: object, *, release: object = ()) -> None:
        raise OSError("the catalog is gone")

    monkeypatch.setattr(upload_service.catalog, "add", failing_add)
    files = [await receiving(upload_service, b"one"), await receiving(upload_service, b"two")]
    with pytest.raises(OSError, match="the catalog is gone"):
        await upload_service.commit(files)
    assert_nothing_kept(settings.data_dir)


async def test_a_blob_that_fails_to_commit_takes_the_blobs_committed_before_it_along(
        upload_service: UploadService, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = [await receiving(upload_service, content) for content in (b"1", b"2", b"3")]

    async def failing_commit(blob_id: str, *, sha256: str) -> None:
        raise OSError("the disk is gone")

    monkeypatch.setattr(second.sink, "commit", failing_commit)
    with pytest.raises(OSError):
        await upload_service.commit([first, second, third])
    assert await catalog_ids(upload_service) == set()
    assert_nothing_kept(settings.data_dir)


async def test_discard_removes_the_temporary_files_and_stores_nothing(
        upload_service: UploadService, settings: Settings) -> None:
    files = [await receiving(upload_service, b"x" * 5000), await receiving(upload_service, b"y")]
    assert len(temp_files(settings.data_dir)) == 2
    await upload_service.discard(files, RuntimeError("the client went away"))
    assert_nothing_kept(settings.data_dir)
    assert await catalog_ids(upload_service) == set()


async def test_a_file_is_refused_as_it_passes_max_file_size(settings: Settings) -> None:
    limited = settings.replace(max_file_size=1000)
    storage = LocalStorage(limited.data_dir, fsync=False)
    storage.prepare()
    service = UploadService(limited, storage, SqliteCatalog(limited.catalog_path))
    await service.start()
    try:
        incoming = await service.new_file(filename="big.bin", content_type="application/octet-stream", request=None)
        await incoming.sink.write(b"x" * 1000)
        with pytest.raises(FileTooLarge):
            await incoming.sink.write(b"x")
        await service.discard([incoming])
        assert_nothing_kept(limited.data_dir)
    finally:
        await service.stop()


async def test_the_content_rules_refuse_a_file_by_its_first_bytes_and_nothing_is_kept(settings: Settings) -> None:
    images_only = settings.replace(accept=("image/*",))
    storage = LocalStorage(images_only.data_dir, fsync=False)
    storage.prepare()
    service = UploadService(images_only, storage, SqliteCatalog(images_only.catalog_path))
    await service.start()
    try:
        with pytest.raises(UnsupportedFileType):
            await service.commit([await receiving(service, b"%PDF-1.7\n" + b"x" * 100, filename="a.png",
                                                   content_type="image/png")])
        assert_nothing_kept(images_only.data_dir)
        assert await catalog_ids(service) == set()
    finally:
        await service.stop()


async def test_delete_removes_the_row_and_the_blob_and_a_second_delete_is_not_found(
        upload_service: UploadService, settings: Settings) -> None:
    [stored] = await upload_service.commit([await receiving(upload_service, b"to delete")])
    assert await upload_service.delete(stored.id, request=None) == stored
    assert stored_files(settings.data_dir) == []
    with pytest.raises(NotFound):
        await upload_service.get(stored.id)
    with pytest.raises(NotFound):
        await upload_service.delete(stored.id, request=None)


async def test_a_blob_without_a_row_is_swept_once_old_and_a_cataloged_one_is_kept(
        upload_service: UploadService, settings: Settings) -> None:
    [kept] = await upload_service.commit([await receiving(upload_service, b"cataloged")])
    writer = upload_service.storage.create()
    writer.write(b"a commit cut between blob and row")
    orphan_id = new_file_id()
    writer.commit(orphan_id)
    storage = upload_service.storage
    assert isinstance(storage, LocalStorage)
    await upload_service.sweep(temp_older_than=settings.temp_max_age)
    assert storage.exists(orphan_id)  # young: its row may still be on the way
    for blob_id in (orphan_id, kept.id):
        age(storage.path_of(blob_id), settings.temp_max_age + 60)
    await upload_service.sweep(temp_older_than=settings.temp_max_age)
    assert not storage.exists(orphan_id)
    assert read_stored(settings, kept) == b"cataloged"


async def test_temporary_files_are_swept_once_older_than_asked_and_live_ones_kept(
        upload_service: UploadService, settings: Settings) -> None:
    old, fresh = await receiving(upload_service, b"abandoned"), await receiving(upload_service, b"in flight")
    for incoming in (old, fresh):
        await upload_service.finish(incoming)  # every byte is on disk
    [old_path] = [path for path in temp_files(settings.data_dir) if path.read_bytes() == b"abandoned"]
    age(old_path, 3600)
    await upload_service.sweep(temp_older_than=600)
    assert [path.read_bytes() for path in temp_files(settings.data_dir)] == [b"in flight"]
    [stored] = await upload_service.commit([fresh])
    assert read_stored(settings, stored) == b"in flight"
    await upload_service.discard([old])


async def test_starting_the_service_sweeps_temporary_files_of_dead_processes(settings: Settings) -> None:
    storage = LocalStorage(settings.data_dir, fsync=False)
    storage.prepare()
    dead = settings.data_dir / "tmp" / "999999999.0badcafe.0123456789abcdef.part"
    dead.write_bytes(b"left by a process that died")
    service = UploadService(settings, storage, SqliteCatalog(settings.catalog_path))
    await service.start()
    try:
        assert temp_files(settings.data_dir) == []
    finally:
        await service.stop()


async def test_the_catalog_row_is_what_the_commit_returned(upload_service: UploadService) -> None:
    [stored] = await upload_service.commit([await receiving(upload_service, b"row")])
    page = await upload_service.page(limit=10, after=None)
    assert page == [stored]
    assert isinstance(page[0], StoredFile)
