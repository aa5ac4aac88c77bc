"""What ingest knows about a stored file, and how client-supplied names and types are cleaned."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.errors import InvalidFilename, LinkExpired, LinkLimitExceeded, LinkRevoked, LinkUsedUp

MAX_FILENAME_BYTES = 255
DEFAULT_MEDIA_TYPE = "application/octet-stream"

# RFC 9110 §8.3.1: type "/" subtype, both tokens; parameters are kept only when well formed.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^({_TOKEN})/({_TOKEN})\s*((?:;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\r\n]*\")\s*)*)$")


def new_file_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class StoredFile:
    """One committed file: the row of the catalog and the body of most JSON answers."""

    id: str
    filename: str
    size: int
    sha256: str
    content_type: str
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # What the first bytes are (ingest/content_rules.py); None when they say nothing.
    detected_type: str | None = None
    # Who sent it: the upload link's id, or the name of the bearer token (None without auth).
    link: str | None = None
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Link:
    """An upload link: what it allows, and how much of it is used or held by uploads in flight.
    Its secret is never kept, only its hash (ingest/edge/access.py)."""

    id: str
    label: str = ""
    created_at: str
    expires_at: str | None = None  # ISO 8601 UTC, like created_at; None: never
    max_size: int | None = None  # bytes over every upload made with it
    max_files: int | None = None
    accept: tuple[str, ...] = ()
    single_use: bool = False
    revoked_at: str | None = None
    bytes_used: int = 0  # by stored files
    files_used: int = 0
    bytes_reserved: int = 0  # by uploads in flight
    files_reserved: int = 0
    uploads_in_flight: int = 0

    def expired(self, now: str) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def state(self, now: str) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expired(now):
            return "expired"
        if self.exhausted():
            return "used_up"
        return "active"

    def exhausted(self) -> bool:
        """Nothing more can start: every file or byte is used or held, or it was used once."""
        files = self.files_used + self.files_reserved
        return ((self.max_files is not None and files >= self.max_files)
                or (self.max_size is not None and self.bytes_used + self.bytes_reserved >= self.max_size)
                or (self.single_use and (self.files_used > 0 or self.uploads_in_flight > 0)))

    def bytes_left(self) -> int | None:
        if self.max_size is None:
            return None
        return max(0, self.max_size - self.bytes_used - self.bytes_reserved)

    def files_left(self) -> int | None:
        if self.max_files is None:
            return None
        return max(0, self.max_files - self.files_used - self.files_reserved)

    def grant(self, *, size: int | None, exact: bool, files: int, holding: bool, now: str) -> int:
        """Bytes an upload may add to its reservation, or the error refusing it. `size`: its
        length (None: unknown, take what is left); `exact`: refuse rather than grant less;
        `holding`: it already holds a reservation (it started before an expiry or revocation,
        and is allowed to finish: README "Upload links")."""
        if not holding:
            if self.revoked_at is not None:
                raise LinkRevoked(f"upload link {self.id} was revoked at {self.revoked_at}")
            if self.expired(now):
                raise LinkExpired(f"upload link {self.id} expired at {self.expires_at}")
            if self.single_use and (self.files_used or self.uploads_in_flight):
                raise LinkUsedUp(f"upload link {self.id} is single-use and was used")
        left_files = self.files_left()
        if files and left_files is not None and files > left_files:
            raise LinkUsedUp(f"upload link {self.id} takes at most {self.max_files} files; none is left")
        left = self.bytes_left()
        if left is None:
            return size or 0
        if left == 0 and (size is None or size > 0):
            raise LinkUsedUp(f"upload link {self.id} has no bytes left of its {self.max_size}")
        if size is None or not exact:
            return left if size is None else min(size, left)
        if size > left:
            raise LinkLimitExceeded(f"{size} bytes exceed the {left} bytes left of upload link {self.id} "
                                    "(uploads in flight hold their share)")
        return size

    def to_json(self, now: str) -> dict[str, Any]:
        described = asdict(self)
        described["accept"] = list(self.accept)
        described.update(state=self.state(now), bytes_left=self.bytes_left(), files_left=self.files_left())
        return described


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def clean_filename(raw: str | None) -> str:
    """A client's filename reduced to a safe display name; it never becomes a path.

    Paths are stripped (both `/` and `\\`, since Windows clients send `C:\\dir\\x.txt`),
    the name is NFC-normalised, and names with control characters, no usable text or
    more than 255 UTF-8 bytes are refused rather than silently rewritten.
    """
    if raw is None or raw == "":
        raise InvalidFilename("a filename is required")
    name = unicodedata.normalize("NFC", raw)
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in name):
        raise InvalidFilename("filename contains control characters")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in {"", ".", ".."}:
        raise InvalidFilename(f"filename {raw!r} has no name after its path is removed")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise InvalidFilename(f"filename is longer than {MAX_FILENAME_BYTES} UTF-8 bytes")
    return name


def clean_media_type(raw: str | None, filename: str) -> str:
    """The client's media type when it is well formed and says something; else a guess."""
    if raw:
        match = _MEDIA_TYPE.match(raw.strip())
        if match:
            media_type = f"{match.group(1)}/{match.group(2)}".lower()
            if media_type != DEFAULT_MEDIA_TYPE:
                params = match.group(3).strip()
                return f"{media_type}; {params.lstrip(';').strip()}" if params else media_type
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or DEFAULT_MEDIA_TYPE
