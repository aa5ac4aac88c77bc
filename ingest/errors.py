"""The one error type of ingest and its catalogue of codes.

Every failure a client can cause or observe is an `IngestError`; `app.py` turns it into
`{"error": code, "detail": message}` with the status it carries.
"""

from __future__ import annotations

from typing import Any


class IngestError(Exception):
    code: str = "internal_error"
    status: int = 500

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail}


def _error(code: str, status: int) -> type[IngestError]:
    name = "".join(word.title() for word in code.split("_"))
    return type(name, (IngestError,), {"code": code, "status": status})


MalformedMultipart = _error("malformed_multipart", 400)
InvalidFilename = _error("invalid_filename", 400)
InvalidMetadata = _error("invalid_metadata", 400)
InvalidRequest = _error("invalid_request", 400)
NoFiles = _error("no_files", 400)
Unauthorized = _error("unauthorized", 401)
NotFound = _error("not_found", 404)
LengthRequired = _error("length_required", 411)
FileTooLarge = _error("file_too_large", 413)
RequestTooLarge = _error("request_too_large", 413)
TooManyParts = _error("too_many_parts", 413)
FieldTooLarge = _error("field_too_large", 413)
UnsupportedMediaType = _error("unsupported_media_type", 415)
RangeNotSatisfiable = _error("range_not_satisfiable", 416)
DigestMismatch = _error("digest_mismatch", 422)
InvalidDigest = _error("invalid_digest", 400)
InsufficientStorage = _error("insufficient_storage", 507)
ClientDisconnected = _error("client_disconnected", 400)
StorageFailed = _error("storage_error", 500)
ParseBudgetExceeded = _error("parse_budget_exceeded", 400)
TooManyUploads = _error("too_many_uploads", 503)
RequestTimeout = _error("request_timeout", 408)
UnsupportedFileType = _error("unsupported_file_type", 415)
Forbidden = _error("forbidden", 403)
# Upload links (ingest/links/service.py): what a link's holder is told when it no longer works.
LinkExpired = _error("link_expired", 401)
LinkRevoked = _error("link_revoked", 403)
LinkUsedUp = _error("link_used_up", 403)
LinkLimitExceeded = _error("link_limit_exceeded", 413)

CATALOGUE: tuple[type[IngestError], ...] = (
    MalformedMultipart, InvalidFilename, InvalidMetadata, InvalidRequest, NoFiles, Unauthorized,
    NotFound, LengthRequired, FileTooLarge, RequestTooLarge, TooManyParts, FieldTooLarge,
    UnsupportedMediaType, RangeNotSatisfiable, DigestMismatch, InvalidDigest,
    InsufficientStorage, ClientDisconnected, StorageFailed, ParseBudgetExceeded, TooManyUploads,
    RequestTimeout, UnsupportedFileType, Forbidden, LinkExpired, LinkRevoked, LinkUsedUp,
    LinkLimitExceeded,
)

# tus 1.0.0 (ingest/tus): the statuses the protocol prescribes, https://tus.io/protocols/resumable-upload
UnsupportedTusVersion = _error("unsupported_tus_version", 412)
OffsetMismatch = _error("offset_mismatch", 409)
ChecksumMismatch = _error("checksum_mismatch", 460)
UploadExpired = _error("upload_expired", 410)
UploadLocked = _error("upload_locked", 423)
UploadNotPatchable = _error("upload_not_patchable", 403)
UploadLengthExceeded = _error("upload_length_exceeded", 413)
UploadSuperseded = _error("upload_superseded", 409)
CATALOGUE += (UnsupportedTusVersion, OffsetMismatch, ChecksumMismatch, UploadExpired, UploadLocked,
              UploadNotPatchable, UploadLengthExceeded, UploadSuperseded)
