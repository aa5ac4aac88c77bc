"""The OpenAPI 3.1 description of the HTTP API, written out so every media type is exact:
multipart and octet-stream request bodies, and file downloads declared as binary only."""

from __future__ import annotations

from typing import Any

from ingest import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_FILE_ID = {"name": "file_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}


def _error_responses(*statuses: int) -> dict[str, Any]:
    reasons = {400: "Malformed request", 401: "Missing or wrong bearer token, or an expired upload link",
               403: "The token lacks the scope, or the upload link is revoked or used up",
               404: "No such file", 411: "Length required", 413: "Too large",
               415: "Unsupported media type", 416: "Range not satisfiable",
               422: "Digest mismatch", 507: "Insufficient storage"}
    return {str(status): {"description": reasons[status],
                          "content": {"application/json": {"schema": _ERROR}}}
            for status in statuses}


_CREATED = {
    "201": {
        "description": "Stored; for one file, Location points at its metadata",
        "headers": {"Location": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Created"}}},
    },
    **_error_responses(400, 401, 403, 411, 413, 415, 422, 507),
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
        "post": {"summary": "Create an upload link (admin scope); the answer holds its secret and URL, once",
                 "requestBody": {"required": False, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False, "properties": {
                         "expires": {"type": ["string", "number"]}, "max_size": {"type": ["string", "integer"]},
                         "max_files": {"type": "integer", "minimum": 1}, "label": {"type": "string"},
                         "accept": {"type": ["string", "array"]}, "single_use": {"type": "boolean"}}}}}},
                 "responses": {"201": _json({"type": "object", "required": ["link", "secret", "url"], "properties": {
                     "link": _LINK, "secret": {"type": "string"}, "url": {"type": "string"}}}, "Created"),
                     **_error_responses(400, 401, 403)}},
        "get": {"summary": "List upload links (admin scope)",
                "responses": {"200": _json({"type": "object", "properties": {
                    "items": {"type": "array", "items": _LINK}}}, "Every link"), **_error_responses(401, 403)}}},
    "/links/current": {"get": {
        "summary": "The upload link the request is made with: its label and what is left",
        "responses": {"200": _json({"type": "object"}, "The link"), **_error_responses(401, 403, 404)}}},
    "/links/{link_id}": {
        "get": {"summary": "One upload link (admin scope)", "parameters": [_LINK_ID],
                "responses": {"200": _json(_LINK, "The link"), **_error_responses(401, 403, 404)}},
        "delete": {"summary": "Revoke an upload link (admin scope); it stops working at once",
                   "parameters": [_LINK_ID],
                   "responses": {"200": _json(_LINK, "The revoked link"), **_error_responses(401, 403, 404)}}},
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RAW_BODY = {"required": True, "content": {"application/octet-stream": _BINARY}}

_DOWNLOAD = {
    "description": "The file's bytes (ranges give 206)",
    "headers": {"ETag": {"schema": {"type": "string"}},
                "Content-Disposition": {"schema": {"type": "string"}},
                "Accept-Ranges": {"schema": {"type": "string"}}},
    # The bytes come back with the media type stored for the file (any type), or as
    # multipart/byteranges for several ranges (RFC 9110 §14.6).
    "content": {"*/*": _BINARY},
}


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "ingest", "version": __version__,
                 "description": "Streaming ingestion of large files."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "detail"],
                          "properties": {"error": {"type": "string"},
                                         "detail": {"type": "string"}}},
                "StoredFile": {
                    "type": "object",
                    "required": ["id", "filename", "size", "sha256", "content_type",
                                 "created_at", "metadata", "url", "content_url"],
                    "properties": {
                        "id": {"type": "string"}, "filename": {"type": "string"},
                        "size": {"type": "integer", "minimum": 0},
                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "content_type": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "metadata": {"type": "object"},
                        "detected_type": _NULLABLE_TEXT, "link": _NULLABLE_TEXT, "token": _NULLABLE_TEXT,
                        "url": {"type": "string"}, "content_url": {"type": "string"}}},
                "Created": {
                    "type": "object", "required": ["files"],
                    "properties": {
                        "files": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/StoredFile"}},
                        "fields": {"type": "object", "additionalProperties": {
                            "oneOf": [{"type": "string"},
                                      {"type": "array", "items": {"type": "string"}}]}}}},
                "Page": {
                    "type": "object", "required": ["items", "next_cursor", "next"],
                    "properties": {
                        "items": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/StoredFile"}},
                        "next_cursor": {"type": ["string", "null"]},
                        "next": {"type": ["string", "null"]}}},
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/healthz": {"get": {
                "summary": "Liveness", "security": [],
                "responses": {"200": {"description": "Up", "content": {"application/json": {
                    "schema": {"type": "object"}}}}}}},
            "/uploads": {
                "post": {
                    "summary": "Upload files (multipart) or one file (raw body)",
                    "parameters": [{"name": "filename", "in": "query", "required": False,
                                    "schema": {"type": "string"},
                                    "description": "name of a raw (octet-stream) upload"}],
                    "requestBody": {"required": True, "content": {
                        "multipart/form-data": {
                            "schema": {"type": "object", "additionalProperties": {
                                "type": "string", "format": "binary"}},
                            "encoding": {"*": {"contentType": "application/octet-stream"}}},
                        "application/octet-stream": _BINARY,
                    }},
                    "responses": _CREATED},
                "get": {
                    "summary": "List stored files, newest first",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {
                            "type": "integer", "minimum": 1, "maximum": 1000}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                        {"name": "link", "in": "query", "schema": {"type": "string"},
                         "description": "only files that came by this upload link (its id)"}],
                    "responses": {"200": {"description": "One page", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}},
                        **_error_responses(400, 401, 403)}},
            },
            "/uploads/{filename}": {"put": {
                "summary": "Upload one file as the raw body (curl -T)",
                "parameters": [{"name": "filename", "in": "path", "required": True,
                                "schema": {"type": "string"}},
                               {"name": "Content-Digest", "in": "header", "required": False,
                                "schema": {"type": "string"},
                                "description": "RFC 9530, e.g. sha-256=:<base64>:"}],
                "requestBody": _RAW_BODY,
                "responses": _CREATED}},
            "/uploads/{file_id}": {
                "get": {"summary": "Metadata of a stored file", "parameters": [_FILE_ID],
                        "responses": {"200": {"description": "The file", "content": {
                            "application/json": {"schema": {
                                "$ref": "#/components/schemas/StoredFile"}}}},
                            **_error_responses(401, 404)}},
                "delete": {"summary": "Delete a stored file", "parameters": [_FILE_ID],
                           "responses": {"204": {"description": "Deleted"},
                                         **_error_responses(401, 404)}}},
            "/uploads/progress/{token}": {"get": {
                "summary": "Live progress of the upload tagged ?progress={token} (Server-Sent Events: "
                           "progress, then complete or failed)",
                "parameters": [{"name": "token", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{8,128}$"}}],
                "responses": {"200": {"description": "An event stream", "content": {
                    "text/event-stream": {"schema": {"type": "string"}}}},
                    **_error_responses(400, 401)}}},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {"200": {"description": "Metrics", "content": {
                    "text/plain": {"schema": {"type": "string"}}}},
                    **_error_responses(401)}}},
            "/uploads/{file_id}/content": {
                "get": {"summary": "Download (Range, If-None-Match supported)",
                        "parameters": [_FILE_ID],
                        "responses": {"200": _DOWNLOAD,
                                      "206": {**_DOWNLOAD, "description": "Partial content"},
                                      "304": {"description": "Not modified"},
                                      **_error_responses(400, 401, 404, 416)}},
                "head": {"summary": "Headers of a download", "parameters": [_FILE_ID],
                         "responses": {"200": {"description": "Headers only"},
                                       **_error_responses(401, 404)}}},
            **_LINK_PATHS,
        },
    }
