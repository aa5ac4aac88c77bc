"""One tus upload's state record, its JSON form, and what its Upload-Metadata says of the file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.models import clean_filename, clean_media_type

NAME_KEYS = ("filename", "name")  # tus-js-client sends filename/filetype, Uppy also name/type
TYPE_KEYS = ("filetype", "type")


@dataclass
class TusUpload:
    upload_id: str
    length: int | None
    metadata: dict[str, str]
    created_at: float
    expires_at: float
    concat: str | None = None  # "partial" or "final"
    parts: list[str] = field(default_factory=list)
    file_id: str | None = None  # the stored file, once committed
    # The running SHA-256 of the first `sha256_offset` bytes, saved (hash_state.py) so that any
    # process can continue it; None where it cannot be saved.
    sha256_state: str | None = None
    sha256_offset: int = -1
    detected_type: str | None = None  # from the first bytes (ingest/content_rules.py)
    type_checked: bool = False
    link: str | None = None  # the upload link it was created with, or the token's name
    token: str | None = None
    reserved: int | None = None  # bytes its link reservation holds, when the link has a size limit
    # Where a checksummed PATCH started while it is unverified: bytes beyond do not count.
    unverified_from: int | None = None
    offset: int = 0  # not persisted: the storage knows how many bytes it holds

    @property
    def complete(self) -> bool:
        return self.file_id is not None or (self.length is not None and self.offset == self.length)

    def state(self) -> dict[str, Any]:
        state = asdict(self)
        del state["upload_id"], state["offset"]
        return state

    @classmethod
    def from_state(cls, upload_id: str, state: dict[str, Any], offset: int) -> TusUpload:
        upload = cls(upload_id=upload_id, **state)
        if upload.unverified_from is not None:
            offset = min(offset, upload.unverified_from)
        upload.offset = upload.length if upload.file_id is not None and upload.length else offset
        return upload


def name_and_type(metadata: dict[str, str], default_name: str) -> tuple[str, str]:
    raw_name = next((metadata[key] for key in NAME_KEYS if metadata.get(key)), default_name)
    filename = clean_filename(raw_name)
    raw_type = next((metadata[key] for key in TYPE_KEYS if metadata.get(key)), None)
    return filename, clean_media_type(raw_type, filename)


def extra_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """Upload-Metadata pairs other than name and type are stored with the file."""
    return {key: value for key, value in metadata.items() if key not in NAME_KEYS + TYPE_KEYS}
