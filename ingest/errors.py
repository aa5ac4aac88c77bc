"""The one error type of ingest and its catalogue of codes.

Every failure a client can cause or observe is an `IngestError` subclass listed in
`CATALOGUE`, with a stable `code` and the HTTP `status` it is answered with. The HTTP answer,
`{"error": code, "detail": message}`, is made in one place: `ingest/edge/errors.py`
(`error_response` and the app's exception handlers).
"""

from __future__ import annotations

from typing import Any


class IngestError(Exception):
    """Also the answer to an unexpected failure: 500 `internal_error`."""

    code: str = "internal_error"
    status: int = 500

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail}


# --- the request and its body ------------------------------------------------------------

class MalformedMultipart(IngestError):
    code = "malformed_multipart"
    status = 400


class InvalidFilename(IngestError):
    code = "invalid_filename"
    status = 400


class InvalidMetadata(IngestError):
    code = "invalid_metadata"
    status = 400


class InvalidRequest(IngestError):
    """A bad query parameter, header or JSON body."""

    code = "invalid_request"
    status = 400


class InvalidRange(IngestError):
    """A malformed `Range` header of a download."""

    code = "invalid_range"
    status = 400


class NoFiles(IngestError):
    """A form without a file part."""

    code = "no_files"
    status = 400


class InvalidDigest(IngestError):
    """A `Content-Digest` or `<name>.sha256` that is not a SHA-256."""

    code = "invalid_digest"
    status = 400


class ClientDisconnected(IngestError):
    """The client went away mid-body; it never sees the answer."""

    code = "client_disconnected"
    status = 400


class ParseBudgetExceeded(IngestError):
    """A multipart body that costs more parsing CPU than `multipart_min_parse_rate` allows."""

    code = "parse_budget_exceeded"
    status = 400


class Unauthorized(IngestError):
    code = "unauthorized"
    status = 401


class Forbidden(IngestError):
    """A valid credential without the scope the endpoint needs."""

    code = "forbidden"
    status = 403


class NotFound(IngestError):
    code = "not_found"
    status = 404


class MethodNotAllowed(IngestError):
    code = "method_not_allowed"
    status = 405


class RequestTimeout(IngestError):
    """An upload body that sent nothing for too long, or averaged too few bytes/s."""

    code = "request_timeout"
    status = 408


class LengthRequired(IngestError):
    code = "length_required"
    status = 411


class FileTooLarge(IngestError):
    code = "file_too_large"
    status = 413


class RequestTooLarge(IngestError):
    code = "request_too_large"
    status = 413


class TooManyParts(IngestError):
    code = "too_many_parts"
    status = 413


class FieldTooLarge(IngestError):
    code = "field_too_large"
    status = 413


class UnsupportedMediaType(IngestError):
    code = "unsupported_media_type"
    status = 415


class UnsupportedFileType(IngestError):
    """A file whose detected type is not accepted, or contradicts its declared type."""

    code = "unsupported_file_type"
    status = 415


class RangeNotSatisfiable(IngestError):
    code = "range_not_satisfiable"
    status = 416


class DigestMismatch(IngestError):
    """The received bytes do not have the SHA-256 the client gave."""

    code = "digest_mismatch"
    status = 422


# --- the server ---------------------------------------------------------------------------

class StorageFailed(IngestError):
    code = "storage_error"
    status = 500


class TooManyUploads(IngestError):
    """More than `max_concurrent_uploads` at once; answered before the body is read."""

    code = "too_many_uploads"
    status = 503


class InsufficientStorage(IngestError):
    code = "insufficient_storage"
    status = 507


# --- hooks (ingest/observe/events.py): what a pre-* hook decided, or that none could ------

class HookRejected(IngestError):
    """A pre-* hook refused the upload; the client gets the hook's status and message."""

    code = "hook_rejected"
    status = 403

    def __init__(self, detail: str, *, status: int = 403) -> None:
        super().__init__(detail)
        # Only client and server error statuses make sense as a refusal.
        self.status = status if 400 <= status <= 599 else 403


class HookUnavailable(IngestError):
    """A pre-* hook failed or timed out and `hook_fail_open` is off."""

    code = "hook_unavailable"
    status = 503


# --- upload links (ingest/links/service.py): why a link no longer works --------------------

class LinkExpired(IngestError):
    code = "link_expired"
    status = 401


class LinkRevoked(IngestError):
    code = "link_revoked"
    status = 403


class LinkUsedUp(IngestError):
    """No file or byte left on the link, or a single-use link already used."""

    code = "link_used_up"
    status = 403


class LinkLimitExceeded(IngestError):
    """A declared length over what is left of the link's `max_size`."""

    code = "link_limit_exceeded"
    status = 413


# --- tus 1.0.0 (ingest/tus): the statuses the protocol prescribes, https://tus.io/protocols/resumable-upload

class UnsupportedTusVersion(IngestError):
    code = "unsupported_tus_version"
    status = 412


class OffsetMismatch(IngestError):
    """A PATCH whose `Upload-Offset` is not the upload's current offset."""

    code = "offset_mismatch"
    status = 409


class ChecksumMismatch(IngestError):
    """A PATCH whose bytes do not match its `Upload-Checksum`."""

    code = "checksum_mismatch"
    status = 460


class UploadExpired(IngestError):
    code = "upload_expired"
    status = 410


class UploadLocked(IngestError):
    """Another server process is writing or committing the upload."""

    code = "upload_locked"
    status = 423


class UploadNotPatchable(IngestError):
    """A PATCH to a final upload, the concatenation of others."""

    code = "upload_not_patchable"
    status = 403


class UploadLengthExceeded(IngestError):
    """Bytes beyond the declared `Upload-Length` (or the size limit), or to a complete upload."""

    code = "upload_length_exceeded"
    status = 413


class UploadSuperseded(IngestError):
    """A request cut off because a newer one took the upload over."""

    code = "upload_superseded"
    status = 409


CATALOGUE: tuple[type[IngestError], ...] = (
    MalformedMultipart, InvalidFilename, InvalidMetadata, InvalidRequest, InvalidRange, NoFiles,
    InvalidDigest, ClientDisconnected, ParseBudgetExceeded, Unauthorized, Forbidden, NotFound,
    MethodNotAllowed, RequestTimeout, LengthRequired, FileTooLarge, RequestTooLarge, TooManyParts,
    FieldTooLarge, UnsupportedMediaType, UnsupportedFileType, RangeNotSatisfiable, DigestMismatch,
    StorageFailed, TooManyUploads, InsufficientStorage,
    HookRejected, HookUnavailable,
    LinkExpired, LinkRevoked, LinkUsedUp, LinkLimitExceeded,
    UnsupportedTusVersion, OffsetMismatch, ChecksumMismatch, UploadExpired, UploadLocked,
    UploadNotPatchable, UploadLengthExceeded, UploadSuperseded,
)
