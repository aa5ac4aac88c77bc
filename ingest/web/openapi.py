"""The OpenAPI 3.1 description of the HTTP API, written out so every media type is exact:
multipart and octet-stream request bodies, and file downloads declared as binary only.
The tus endpoints are in ingest/web/openapi_tus.py."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ingest import __version__
from ingest.web import openapi_tus

_ERROR = {"$ref": "#/components/schemas/Error"}
_FILE_ID = {"name": "file_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _error_responses(*statuses: int) -> dict[str, Any]:
    reasons = {400: "Malformed request", 401: "Missing or wrong bearer token, or an expired upload link",
               403: "The token lacks the scope, or the upload link is revoked or used up",
               404: "No such file", 408: "Body too slow", 411: "Length required", 413: "Too large",
               415: "Unsupported media type", 416: "Range not satisfiable",
               422: "Digest mismatch", 503: "Too many uploads at once", 507: "Insufficient storage"}
    return {str(status): {"description": reasons[status],
                          "content": {"application/json": {"schema": _ERROR}}}
            for status in statuses}


_CREATED = {
    "201": {
        "description": "Stored; for one file, Location points at its metadata",
        "headers": {"Location": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Created"}}},
    },
    **_error_responses(400, 401, 403, 408, 411, 413, 415, 422, 503, 507),
}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_LINK = {"type": "object", "required": ["id", "label", "created_at", "state"], "properties": {
    "id": {"type": "string"}, "label": {"type": "string"}, "created_at": {"type": "string"},
    "expires_at": _NULLABLE_TEXT, "revoked_at": _NULLABLE_TEXT,
    "max_size": {"type": ["integer", "null"]}, "max_files": {"type": ["integer", "null"]},
    "accept": {"type": "array", "items": {"type": "string"}}, "single_use": {"type": "boolean"},
    "state": {"enum": ["active", "expired", "revoked", "used_up"]},
    "bytes_left": {"type": ["integer", "null"]}, "files_left": {"type": ["integer", "null"]}}}
_LINK_ID = {"name": "link_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_LINK_PATHS: dict[str, Any] = {
    "/links": {
        "post": {"operationId": "createLink",
                 "summary": "Create an upload link (admin scope); the answer holds its secret and URL, once",
                 "requestBody": {"required": False, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False, "properties": {
                         "expires": {"type": ["string", "number"]}, "max_size": {"type": ["string", "integer"]},
                         "max_files": {"type": "integer", "minimum": 1}, "label": {"type": "string"},
                         "accept": {"type": ["string", "array"]}, "single_use": {"type": "boolean"}}}}}},
                 "responses": {"201": _json({"type": "object", "required": ["link", "secret", "url"], "properties": {
                     "link": _LINK, "secret": {"type": "string"}, "url": {"type": "string"}}}, "Created"),
                     **_error_responses(400, 401, 403)}},
        "get": {"operationId": "listLinks", "summary": "List upload links (admin scope)",
                "responses": {"200": _json({"type": "object", "properties": {
                    "items": {"type": "array", "items": _LINK}}}, "Every link"), **_error_responses(401, 403)}}},
    "/links/current": {"get": {
        "operationId": "getCurrentLink",
        "summary": "The upload link the request is made with: its label and what is left",
        "responses": {"200": _json({"type": "object"}, "The link"), **_error_responses(401, 403, 404)}}},
    "/links/{link_id}": {
        "get": {"operationId": "getLink", "summary": "One upload link (admin scope)", "parameters": [_LINK_ID],
                "responses": {"200": _json(_LINK, "The link"), **_error_responses(401, 403, 404)}},
        "delete": {"operationId": "revokeLink",
                   "summary": "Revoke an upload link (admin scope); it stops working at once",
                   "parameters": [_LINK_ID],
                   "responses": {"200": _json(_LINK, "The revoked link"), **_error_responses(401, 403, 404)}}},
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RAW_BODY = {"required": True, "content": {"application/octet-stream": _BINARY}}
_PROGRESS = {"name": "progress", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{8,128}$"},
             "description": "a token of your choosing; follow the upload at GET /uploads/progress/{token} "
                            "(the X-Progress-Id header does the same)"}
_CONTENT_DIGEST = {"name": "Content-Digest", "in": "header", "required": False,
                   "schema": {"type": "string"},
                   "description": "RFC 9530 digest of the body, e.g. `sha-256=:<base64>:`; a mismatch is 422 "
                                  "and nothing is stored"}

# Every part with a filename is a file (binary); every other part is a text field.
_MULTIPART = {
    "schema": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "a file; any part name works, and a request may hold many files"},
            "metadata": {"type": "string", "contentMediaType": "application/json",
                         "description": "a JSON object stored with every file of the request"},
        },
        "patternProperties": {
            r"\.sha256$": {**_SHA256, "description": "`<name>.sha256`: the expected sha256 (hex) of the "
                           "file part named <name>; a mismatch is 422 and nothing is stored"}},
        "additionalProperties": {"type": "string",
                                 "description": "other text fields, echoed back under `fields`"},
    },
    "encoding": {"file": {"contentType": "application/octet-stream"},
                 "metadata": {"contentType": "application/json"}},
}

_DOWNLOAD = {
    "description": "The file's bytes (ranges give 206)",
    "headers": {"ETag": {"schema": {"type": "string"}, "description": "the quoted sha256 (strong)"},
                "Last-Modified": {"schema": {"type": "string"}},
                "Content-Disposition": {"schema": {"type": "string"}},
                "Accept-Ranges": {"schema": {"type": "string"}}},
    # The bytes come back with the media type stored for the file (any type), or as
    # multipart/byteranges for several ranges (RFC 9110 §14.6).
    "content": {"*/*": _BINARY},
}
_CONDITIONAL = [
    {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "RFC 9110 §14.2, e.g. `bytes=1000-`; several ranges give multipart/byteranges"},
    {"name": "If-Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "an ETag or date: the Range applies only if the file still matches (RFC 9110 §13.1.5)"},
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "ETags; a match gives 304 (RFC 9110 §13.1.2)"},
    {"name": "If-Modified-Since", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "an HTTP date; not modified since gives 304 (RFC 9110 §13.1.3)"},
]

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "detail"],
              "properties": {"error": {"type": "string", "description": "a stable code, e.g. not_found"},
                             "detail": {"type": "string"}}},
    "StoredFile": {
        "type": "object",
        "required": ["id", "filename", "size", "sha256", "content_type",
                     "created_at", "metadata", "url", "content_url"],
        "properties": {
            "id": {"type": "string"}, "filename": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": _SHA256,
            "content_type": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "metadata": {"type": "object"},
            "detected_type": _NULLABLE_TEXT, "link": _NULLABLE_TEXT, "token": _NULLABLE_TEXT,
            "url": {"type": "string"}, "content_url": {"type": "string"}}},
    "Created": {
        "type": "object", "required": ["files"],
        "properties": {
            "files": {"type": "array", "items": {"$ref": "#/components/schemas/StoredFile"}},
            "fields": {"type": "object", "additionalProperties": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}},
    "Page": {
        "type": "object", "required": ["items", "next_cursor", "next"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/StoredFile"}},
            "next_cursor": {"type": ["string", "null"]},
            "next": {"type": ["string", "null"]}}},
}


def routes() -> list[BaseRoute]:
    return [Route("/openapi.json", openapi_spec, methods=["GET"])]


async def openapi_spec(request: Request) -> Response:
    return JSONResponse(spec())


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "ingest", "version": __version__,
                 "description": "Streaming ingestion of large files: multipart or raw uploads, resumable "
                                "tus uploads at /files/, downloads with ranges. Every stored file has a "
                                "sha256 computed while it arrived."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": _SCHEMAS},
        "security": [{"bearer": []}, {}],
        "tags": [{"name": "files", "description": "upload, list, download, delete"},
                 {"name": "tus", "description": "resumable uploads, tus 1.0.0 (https://tus.io)"},
                 {"name": "operations", "description": "health, metrics"}],
        "paths": {
            "/healthz": {"get": {
                "operationId": "getHealth", "tags": ["operations"], "summary": "Liveness", "security": [],
                "responses": {"200": {"description": "Up", "content": {"application/json": {
                    "schema": {"type": "object"}}}}}}},
            "/uploads": {
                "post": {
                    "operationId": "createUploads", "tags": ["files"],
                    "summary": "Upload files (multipart) or one file (raw body)",
                    "parameters": [{"name": "filename", "in": "query", "required": False,
                                    "schema": {"type": "string"},
                                    "description": "name of a raw (octet-stream) upload"},
                                   _PROGRESS, _CONTENT_DIGEST],
                    "requestBody": {"required": True, "content": {
                        "multipart/form-data": _MULTIPART,
                        "application/octet-stream": _BINARY,
                    }},
                    "responses": _CREATED},
                "get": {
                    "operationId": "listUploads", "tags": ["files"],
                    "summary": "List stored files, newest first",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {
                            "type": "integer", "minimum": 1, "maximum": 1000}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"},
                         "description": "next_cursor of the previous page"},
                        {"name": "link", "in": "query", "schema": {"type": "string"},
                         "description": "only files that came by this upload link (its id)"}],
                    "responses": {"200": {"description": "One page", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}},
                        **_error_responses(400, 401, 403)}},
            },
            "/uploads/{filename}": {"put": {
                "operationId": "putUpload", "tags": ["files"],
                "summary": "Upload one file as the raw body (curl -T)",
                "parameters": [{"name": "filename", "in": "path", "required": True,
                                "schema": {"type": "string"}},
                               _PROGRESS, _CONTENT_DIGEST],
                "requestBody": _RAW_BODY,
                "responses": _CREATED}},
            "/uploads/{file_id}": {
                "get": {"operationId": "getUpload", "tags": ["files"], "summary": "Metadata of a stored file",
                        "parameters": [_FILE_ID],
                        "responses": {"200": {"description": "The file", "content": {
                            "application/json": {"schema": {
                                "$ref": "#/components/schemas/StoredFile"}}}},
                            **_error_responses(401, 404)}},
                "delete": {"operationId": "deleteUpload", "tags": ["files"], "summary": "Delete a stored file",
                           "parameters": [_FILE_ID],
                           "responses": {"204": {"description": "Deleted"},
                                         **_error_responses(401, 404)}}},
            "/uploads/progress/{token}": {"get": {
                "operationId": "streamProgress", "tags": ["files"],
                "summary": "Live progress of the upload tagged ?progress={token} (Server-Sent Events: "
                           "progress, then complete or failed)",
                "parameters": [{"name": "token", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{8,128}$"}}],
                "responses": {"200": {"description": "An event stream", "content": {
                    "text/event-stream": {"schema": {"type": "string"}}}},
                    **_error_responses(400, 401)}}},
            "/metrics": {"get": {
                "operationId": "getMetrics", "tags": ["operations"],
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {"200": {"description": "Metrics", "content": {
                    "text/plain": {"schema": {"type": "string"}}}},
                    **_error_responses(401)}}},
            "/uploads/{file_id}/content": {
                "get": {"operationId": "downloadContent", "tags": ["files"],
                        "summary": "Download (Range, If-Range, If-None-Match, If-Modified-Since)",
                        "parameters": [_FILE_ID, *_CONDITIONAL],
                        "responses": {"200": _DOWNLOAD,
                                      "206": {**_DOWNLOAD, "description": "Partial content"},
                                      "304": {"description": "Not modified"},
                                      **_error_responses(400, 401, 404, 416)}},
                "head": {"operationId": "headContent", "tags": ["files"], "summary": "Headers of a download",
                         "parameters": [_FILE_ID, *_CONDITIONAL],
                         "responses": {"200": {"description": "Headers only"},
                                       "206": {"description": "Headers of a partial answer"},
                                       "304": {"description": "Not modified"},
                                       "400": {"description": "Malformed Range"},
                                       "416": {"description": "Range not satisfiable"},
                                       **_error_responses(401, 404)}}},
            **openapi_tus.paths(),
            **_LINK_PATHS,
        },
    }
