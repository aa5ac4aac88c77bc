"""ingest/edge/paths.py: the upload rules of the URL layout, which every middleware and the
access log share."""

from __future__ import annotations

import pytest

from ingest.edge.paths import MULTIPART, OTHER, RAW, TUS, UPLOAD_METHODS, is_tus_path, protocol_of


@pytest.mark.parametrize("path", ["/files", "/files/", "/files/0123abcd", "/files/a/b"])
def test_the_tus_prefix_and_everything_below_it_are_tus_paths(path: str) -> None:
    assert is_tus_path(path)


@pytest.mark.parametrize("path", ["/", "/filesystem", "/uploads", "/static/files/x", "/file"])
def test_a_path_that_merely_starts_with_the_letters_of_files_is_not_tus(path: str) -> None:
    assert not is_tus_path(path)


@pytest.mark.parametrize(("method", "path", "content_type", "expected"), [
    ("POST", "/uploads", "multipart/form-data; boundary=x", MULTIPART),
    ("POST", "/uploads", "Multipart/Form-Data ; boundary=x", MULTIPART),
    ("POST", "/uploads", "application/octet-stream", RAW),
    ("POST", "/uploads", "", RAW),
    ("PUT", "/uploads/report.pdf", "", RAW),
    ("PATCH", "/files/0123", "application/offset+octet-stream", TUS),
    ("POST", "/files/", "", TUS),
    ("GET", "/uploads", "", OTHER),
    ("GET", "/uploads/abc/content", "", OTHER),
    ("POST", "/links", "application/json", OTHER),
])
def test_each_request_is_labelled_with_the_upload_protocol_it_takes(
        method: str, path: str, content_type: str, expected: str) -> None:
    assert protocol_of(method, path, content_type) == expected


def test_upload_bodies_come_with_post_put_and_patch_only() -> None:
    assert {"POST", "PUT", "PATCH"} == UPLOAD_METHODS
