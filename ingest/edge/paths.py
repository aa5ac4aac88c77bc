"""The URL layout's upload rules in one place: which requests carry an upload body, which
paths are tus's, and which upload protocol a request takes.

The protocol label (`multipart`, `raw`, `tus`, `other`) names the upload protocol a request
speaks; metrics, events and log lines carry it as `protocol`.
"""

from __future__ import annotations

UPLOAD_METHODS = frozenset({"POST", "PUT", "PATCH"})  # methods whose body is an upload
TUS_PREFIX = "/files"  # tusd's default path

MULTIPART = "multipart"
RAW = "raw"
TUS = "tus"
OTHER = "other"


def is_tus_path(path: str) -> bool:
    return path == TUS_PREFIX or path.startswith(TUS_PREFIX + "/")


def protocol_of(method: str, path: str, content_type: str) -> str:
    """Which upload protocol a request takes, from its method, path and media type."""
    if is_tus_path(path):
        return TUS
    if method == "PUT" and path.startswith("/uploads/"):
        return RAW
    if method == "POST" and path == "/uploads":
        media_type = content_type.partition(";")[0].strip().lower()
        return MULTIPART if media_type == "multipart/form-data" else RAW
    return OTHER
