"""The OpenAPI document itself: valid, and saying what the server does (schemathesis then
checks the answers against it, tests/test_openapi_fuzz.py)."""

from __future__ import annotations

from typing import Any

import openapi_spec_validator
import pytest

from ingest.web.openapi import spec
from ingest.wire import TUS_VERSION

SPEC = spec()
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, item in SPEC["paths"].items()
            for method, operation in item.items() if method in METHODS]


def parameter_names(operation: dict[str, Any], where: str) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == where}


def test_the_document_is_valid_openapi_3_1() -> None:
    openapi_spec_validator.validate(SPEC)
    assert SPEC["openapi"] == "3.1.0"


def test_every_operation_has_a_unique_operation_id() -> None:
    ids = [operation.get("operationId") for _, _, operation in operations()]
    assert None not in ids and len(ids) == len(set(ids))
    assert {"createUploads", "listUploads", "putUpload", "downloadContent", "tusCreate", "tusPatch"} <= set(ids)


def test_multipart_text_fields_are_strings_and_file_parts_binary() -> None:
    multipart = SPEC["paths"]["/uploads"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = multipart["schema"]
    assert schema["properties"]["file"] == {**schema["properties"]["file"], "type": "string", "format": "binary"}
    metadata = schema["properties"]["metadata"]
    assert (metadata["type"], metadata["contentMediaType"]) == ("string", "application/json")
    [digest] = schema["patternProperties"].values()
    assert digest["type"] == "string" and digest["pattern"] == "^[0-9a-f]{64}$"
    assert schema["additionalProperties"]["type"] == "string"
    assert "format" not in schema["additionalProperties"]
    assert multipart["encoding"]["file"]["contentType"] == "application/octet-stream"


@pytest.mark.parametrize(("path", "method"), [("/uploads", "post"), ("/uploads/{filename}", "put"),
                                              ("/files/", "post")])
def test_uploads_take_a_progress_token(path: str, method: str) -> None:
    assert "progress" in parameter_names(SPEC["paths"][path][method], "query")


@pytest.mark.parametrize(("path", "method"), [("/uploads", "post"), ("/uploads/{filename}", "put")])
def test_raw_uploads_take_a_content_digest(path: str, method: str) -> None:
    assert "Content-Digest" in parameter_names(SPEC["paths"][path][method], "header")


@pytest.mark.parametrize("method", ["get", "head"])
def test_downloads_declare_range_and_conditional_headers(method: str) -> None:
    operation = SPEC["paths"]["/uploads/{file_id}/content"][method]
    assert {"Range", "If-Range", "If-None-Match", "If-Modified-Since"} <= parameter_names(operation, "header")
    assert {"200", "206", "304", "416"} <= set(operation["responses"])


def test_tus_endpoints_declare_their_headers_and_statuses() -> None:
    collection, upload = SPEC["paths"]["/files/"], SPEC["paths"]["/files/{upload_id}"]
    for operation in (collection["post"], upload["head"], upload["patch"], upload["delete"]):
        [version] = [p for p in operation["parameters"] if p["name"] == "Tus-Resumable"]
        assert version["required"] and version["schema"]["enum"] == [TUS_VERSION]
        assert "412" in operation["responses"]
    assert {"Upload-Length", "Upload-Defer-Length", "Upload-Metadata", "Upload-Concat",
            "Upload-Checksum"} <= parameter_names(collection["post"], "header")
    assert {"Location", "Upload-Offset", "Tus-Resumable"} <= set(collection["post"]["responses"]["201"]["headers"])
    assert {"Upload-Offset", "Upload-Checksum"} <= parameter_names(upload["patch"], "header")
    assert {"204", "409", "410", "415", "460"} <= set(upload["patch"]["responses"])
    assert "application/offset+octet-stream" in upload["patch"]["requestBody"]["content"]
    assert {"Upload-Offset", "Upload-Length"} <= set(upload["head"]["responses"]["200"]["headers"])
    assert {"Tus-Version", "Tus-Extension", "Tus-Max-Size"} <= set(collection["options"]["responses"]["204"]["headers"])
