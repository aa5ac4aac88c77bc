"""The tus 1.0.0 endpoints at /files/ in OpenAPI terms: headers in, headers out, statuses.

Spec: https://tus.io/protocols/resumable-upload. The protocol speaks in headers and empty
bodies; errors still come with ingest's JSON error body.
"""

from __future__ import annotations

from typing import Any

from ingest.wire import TUS_VERSION

_ERROR = {"$ref": "#/components/schemas/Error"}
_REASONS = {
    400: "Malformed header", 401: "Missing or wrong bearer token", 403: "Upload not patchable (a final upload)",
    404: "No such upload", 408: "Body too slow", 409: "Upload-Offset differs from the server's",
    410: "Upload expired", 412: "Tus-Resumable missing or unsupported", 413: "Larger than allowed",
    415: "Wrong Content-Type", 422: "Digest mismatch", 423: "Upload locked by another request",
    460: "Upload-Checksum mismatch", 503: "Too many uploads at once", 507: "Insufficient storage",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": _REASONS[status],
                          "headers": {"Tus-Resumable": _header("the protocol version", TUS_VERSION)},
                          "content": {"application/json": {"schema": _ERROR}}}
            for status in statuses}


def _header(description: str, example: str | None = None, *, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema["minimum"] = 0
    header: dict[str, Any] = {"description": description, "schema": schema}
    if example is not None:
        header["example"] = example
    return header


def _param(name: str, description: str, *, required: bool = False,
           schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


_TUS_RESUMABLE = _param("Tus-Resumable", "the protocol version the client speaks", required=True,
                        schema={"type": "string", "enum": [TUS_VERSION]})
_UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}
_OFFSET_BODY = {"content": {"application/offset+octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}
_COMMON = {"Tus-Resumable": _header("the protocol version", TUS_VERSION)}
_STATE = {
    "Upload-Offset": _header("bytes the server holds", kind="integer"),
    "Upload-Expires": _header("when an unfinished upload is dropped (HTTP date)"),
    "Ingest-File-Id": _header("id of the stored file, once the upload is complete (GET /uploads/{id})"),
}
_CHECKSUM = _param("Upload-Checksum", "`sha256 <base64 digest>` of this request's body (checksum extension)")


def paths() -> dict[str, Any]:
    options = {
        "operationId": "tusOptions", "summary": "tus: what the server supports", "tags": ["tus"],
        "responses": {"204": {"description": "Capabilities", "headers": {
            "Tus-Version": _header("supported protocol versions", TUS_VERSION),
            "Tus-Extension": _header("supported extensions", "creation,termination,checksum"),
            "Tus-Max-Size": _header("largest upload in bytes", kind="integer"),
            "Tus-Checksum-Algorithm": _header("algorithms for Upload-Checksum", "sha1,sha256")}},
            **_errors(401)}}
    create = {
        "operationId": "tusCreate", "tags": ["tus"],
        "summary": "tus: create an upload (creation; with a body, creation-with-upload)",
        "parameters": [
            _TUS_RESUMABLE,
            _param("Upload-Length", "the file's size in bytes", schema={"type": "string", "pattern": "^[0-9]{1,20}$"}),
            _param("Upload-Defer-Length", "`1`: the size is sent with a later PATCH",
                   schema={"type": "string", "enum": ["1"]}),
            _param("Upload-Metadata", "comma-separated `key base64value` pairs; `filename` and "
                   "`filetype` name the stored file"),
            _param("Upload-Concat", "`partial`, or `final;<url> <url>...` (concatenation)"),
            _CHECKSUM,
            {"name": "progress", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "a token to follow this upload at GET /uploads/progress/{token}"},
        ],
        "requestBody": {"required": False, **_OFFSET_BODY},
        "responses": {"201": {"description": "Created; Location is the upload's URL", "headers": {
            **_COMMON, "Location": _header("the upload's URL, for HEAD and PATCH"), **_STATE}},
            **_errors(400, 401, 408, 412, 413, 415, 460, 503, 507)}}
    head = {
        "operationId": "tusHead", "tags": ["tus"], "summary": "tus: the offset to resume from",
        "parameters": [_UPLOAD_ID, _TUS_RESUMABLE],
        "responses": {"200": {"description": "The upload's state (no body)", "headers": {
            **_COMMON, **_STATE, "Upload-Length": _header("the file's size", kind="integer"),
            "Upload-Metadata": _header("as sent at creation"),
            "Cache-Control": _header("always no-store", "no-store")}},
            **{status: {"description": _REASONS[int(status)]} for status in ("401", "404", "410", "412")}}}
    patch = {
        "operationId": "tusPatch", "tags": ["tus"], "summary": "tus: append bytes at Upload-Offset",
        "parameters": [
            _UPLOAD_ID, _TUS_RESUMABLE,
            _param("Upload-Offset", "must equal the server's offset", required=True,
                   schema={"type": "string", "pattern": "^[0-9]{1,20}$"}),
            _param("Upload-Length", "the size, for an upload created with Upload-Defer-Length",
                   schema={"type": "string", "pattern": "^[0-9]{1,20}$"}),
            _CHECKSUM],
        "requestBody": {"required": True, **_OFFSET_BODY},
        "responses": {"204": {"description": "Appended; the last PATCH commits the file",
                              "headers": {**_COMMON, **_STATE}},
                      **_errors(400, 401, 403, 404, 408, 409, 410, 412, 413, 415, 422, 423, 460, 503, 507)}}
    delete = {
        "operationId": "tusDelete", "tags": ["tus"], "summary": "tus: abandon an upload (termination)",
        "parameters": [_UPLOAD_ID, _TUS_RESUMABLE],
        "responses": {"204": {"description": "Gone", "headers": _COMMON},
                      **_errors(400, 401, 404, 410, 412, 423)}}
    return {
        "/files/": {"options": options, "post": create},
        "/files/{upload_id}": {"head": head, "patch": patch, "delete": delete,
                               "options": {**options, "operationId": "tusOptionsUpload",
                                           "parameters": [_UPLOAD_ID]}},
    }
