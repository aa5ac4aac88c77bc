"""Content rules checked on the bytes: each file's media type detected from its first block,
recorded beside the declared one, and held against `--accept` and `--on-type-mismatch`.

Detection uses libmagic (python-magic; README "Detected media types" compares it with
puremagic and filetype on real files). It runs once per file, on the first block the file's
sink hands to storage (ingest/sink.py) or on the first bytes of a tus upload, never per chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread

from ingest.errors import UnsupportedFileType

DETECT_BYTES = 64 * 1024  # bytes of a file's start given to libmagic
MISMATCH_POLICIES = ("accept", "refuse")
UNKNOWN = "application/octet-stream"  # what an undetectable file counts as for --accept

# Names libmagic gives where the IANA registry has another (or the client may send another).
_ALIASES = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-icon": "image/vnd.microsoft.icon",
    "image/x-ms-bmp": "image/bmp", "image/x-bmp": "image/bmp", "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav", "audio/mp3": "audio/mpeg",
    "audio/x-flac": "audio/flac", "application/x-gzip": "application/gzip",
    "application/x-zip-compressed": "application/zip", "application/x-pdf": "application/pdf",
    "font/sfnt": "font/ttf", "application/font-sfnt": "font/ttf", "application/x-font-ttf": "font/ttf",
    "video/x-m4v": "video/mp4", "text/xml": "application/xml", "application/x-javascript": "text/javascript",
    "application/javascript": "text/javascript",
}
# Detected types that say "some container", compatible with any more specific declared type of
# that family: libmagic names a CSV or JSON file text/plain and an .xlsx application/zip.
_TEXT_FAMILY = ("text/", "application/json", "application/xml", "text/javascript",
                "application/x-ndjson", "image/svg+xml", "application/x-yaml", "application/yaml")
_ZIP_FAMILY = ("application/vnd.openxmlformats-", "application/vnd.oasis.opendocument.",
               "application/epub+zip", "application/java-archive",
               "application/vnd.android.package-archive")
_NO_CLAIM = frozenset({UNKNOWN, "application/x-empty", "inode/x-empty"})

_magic_lock = threading.Lock()
_magic: object | None = None


def _libmagic() -> object:
    global _magic
    with _magic_lock:
        if _magic is None:
            import magic  # loads libmagic and its database once, on first use

            _magic = magic.Magic(mime=True)
        return _magic


def detect(head: bytes) -> str | None:
    """The media type of a file starting with `head`; None when nothing can be said."""
    if not head:
        return None
    found = _libmagic().from_buffer(head)  # type: ignore[attr-defined]
    media_type = essence(str(found))
    return None if media_type in _NO_CLAIM else media_type


def essence(media_type: str) -> str:
    """`Image/JPG; q=1` -> `image/jpeg`: type/subtype only, lower case, aliases resolved."""
    bare = media_type.partition(";")[0].strip().lower()
    return _ALIASES.get(bare, bare)


def matches(media_type: str | None, patterns: Sequence[str]) -> bool:
    """Whether `media_type` is one of `patterns` (`image/*`, `application/pdf`, `*/*`)."""
    actual = essence(media_type or UNKNOWN)
    kind = actual.partition("/")[0]
    for pattern in patterns:
        wanted = essence(pattern)
        if wanted in ("*/*", "*", actual) or (wanted.endswith("/*") and wanted[:-2] == kind):
            return True
    return False


def mismatched(declared: str, detected: str | None) -> bool:
    """True when the bytes say something else than the client: a JPEG declared as a PDF.
    An undetectable file, or one declared only as application/octet-stream, never mismatches."""
    claimed, found = essence(declared), essence(detected or UNKNOWN)
    if claimed in _NO_CLAIM or found in _NO_CLAIM or claimed == found:
        return False
    if found == "text/plain" and claimed.startswith(_TEXT_FAMILY):
        return False
    if found == "application/zip" and (claimed.startswith(_ZIP_FAMILY) or claimed.endswith("+zip")):
        return False
    return not (found == "application/xml" and claimed.endswith("+xml"))


@dataclass(frozen=True)
class ContentRules:
    """`accept`: patterns every detected type must match (empty: any); `on_type_mismatch`:
    whether a declared type the bytes contradict is stored (`accept`) or refused."""

    accept: tuple[str, ...] = ()
    on_type_mismatch: str = "accept"

    def __post_init__(self) -> None:
        if self.on_type_mismatch not in MISMATCH_POLICIES:
            raise ValueError(f"on_type_mismatch must be accept or refuse, not {self.on_type_mismatch!r}")
        for pattern in self.accept:
            if "/" not in pattern and pattern != "*":
                raise ValueError(f"accept: {pattern!r} is not a media type or type/* pattern")

    def check(self, *, filename: str, declared: str, detected: str | None,
              also_accept: Sequence[str] = ()) -> None:
        """Raise 415 unsupported_file_type when a rule refuses the file. `also_accept`: a
        second list the type must match as well (an upload link's own)."""
        for patterns in (self.accept, also_accept):
            if patterns and not matches(detected, patterns):
                raise UnsupportedFileType(
                    f"{filename}: its bytes are {detected or 'of no type known'}, and this server "
                    f"accepts only {', '.join(patterns)}; nothing was stored")
        if self.on_type_mismatch == "refuse" and mismatched(declared, detected):
            raise UnsupportedFileType(
                f"{filename}: declared as {essence(declared)} but its bytes are {detected}; "
                "nothing was stored")


async def detect_in_thread(head: bytes) -> str | None:
    # libmagic parses untrusted bytes in C for up to a millisecond: off the event loop.
    return await anyio.to_thread.run_sync(detect, head)


def head_of(block: Sequence[bytes | bytearray]) -> bytes:
    """The first DETECT_BYTES of a block made of pieces."""
    head = bytearray()
    for piece in block:
        head += piece[: DETECT_BYTES - len(head)]
        if len(head) >= DETECT_BYTES:
            break
    return bytes(head)
