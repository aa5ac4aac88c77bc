"""The model behind tests/test_fuzz_tus.py: what a tus 1.0.0 server may answer to a request,
and which bytes the upload holds after it, read from the spec
(https://tus.io/protocols/resumable-upload) rather than from ingest's code.

Where several things are wrong with one request, the spec does not say which the server
reports first, so the model allows the status of each of them; the bytes held must then be
unchanged. The checks (`check_state`) compare what HEAD says, what is on disk and what
GET /uploads lists against the model. The spec says nothing of a stored file's name: that
it comes from the `filename` (or `name`) metadata, its media type from `filetype` (or
`type`), and the other pairs are kept with it, is ingest's rule (README "Resumable uploads (tus)"); names and
types are cleaned by the rules every protocol shares.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from ingest.errors import InvalidFilename
from ingest.models import clean_filename, clean_media_type
from ingest.tus.headers import MAX_DIGITS
from tests.fuzzing import assert_headers_clean, blob_ids_on_disk, delete_stored, sha256
from tests.inprocess import Answer, InProcessApp

MAX_FILE_SIZE = 4096  # small, so that lengths over the limit are cheap to send
BLOCK_SIZE = 512  # several blocks per PATCH
OFFSET_TYPE = "application/offset+octet-stream"
ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512, "md5": hashlib.md5}
# A key: not empty, no spaces or commas (the spec), visible ASCII (its SHOULD, and no controls).
METADATA_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")  # RFC 4648 §4, padded
LOCATION = re.compile(r"http://testserver/files/([0-9a-f]{32})")
HUGE = -1  # a number with more digits than the server converts: refused, or over every limit
OWS = " \t"  # RFC 9110 §5.6.3


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def field(name: str, value: str) -> tuple[bytes, bytes]:
    """A header as a client would put it on the wire: Latin-1 where it can be, else UTF-8."""
    try:
        return name.encode(), value.encode("latin-1")
    except UnicodeEncodeError:
        return name.encode(), value.encode("utf-8", "surrogatepass")


def number(raw: str | None) -> int | None:
    """A non-negative whole number in ASCII digits; None when it is not one."""
    if raw is None or not re.fullmatch(r"[0-9]+", raw):
        return None
    return HUGE if len(raw.lstrip("0")) > MAX_DIGITS else int(raw)


def spec_metadata(raw: str) -> dict[str, str] | None:
    """Upload-Metadata as the spec words it; None when it breaks a MUST."""
    if raw.strip(OWS) == "":
        return {}
    metadata: dict[str, str] = {}
    for pair in raw.split(","):
        key, _, encoded = pair.strip(OWS).partition(" ")
        encoded = encoded.strip(OWS)
        if not METADATA_KEY.fullmatch(key) or key in metadata or not BASE64.fullmatch(encoded):
            return None
        try:
            metadata[key] = base64.b64decode(encoded).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return metadata


def name_refused(metadata: dict[str, str]) -> bool:
    """ingest stores a tus upload under its `filename` (or `name`) metadata, cleaned by the
    rules every protocol shares (fuzzed for themselves in tests/test_fuzz_raw.py)."""
    raw = next((metadata[key] for key in ("filename", "name") if metadata.get(key)), None)
    if raw is None:
        return False
    try:
        clean_filename(raw)
    except InvalidFilename:
        return True
    return False


BAD = ("bad",)


def spec_checksum(raw: str | None) -> tuple[str, bytes] | tuple[str] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>` -> (algorithm, digest), None, or BAD."""
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip(OWS).partition(" ")
    algorithm, encoded = algorithm.lower(), encoded.strip(OWS)
    if algorithm not in ALGORITHMS or not BASE64.fullmatch(encoded):
        return BAD
    digest = base64.b64decode(encoded)
    return (algorithm, digest) if len(digest) == ALGORITHMS[algorithm]().digest_size else BAD


def digest_header(checksum: tuple[str, str] | str | None, body: bytes) -> str | None:
    """("right" | "wrong", algorithm) -> a header over `body`; a string is sent as it stands."""
    if checksum is None or isinstance(checksum, str):
        return checksum
    verdict, algorithm = checksum
    digest = ALGORITHMS[algorithm.lower()](body + (b"" if verdict == "right" else b"!")).digest()
    return f"{algorithm} {b64(digest)}"


def media_type(raw: str | None) -> str:
    return (raw or "").partition(";")[0].strip(OWS).lower()


NAME_KEYS = ("filename", "name")
TYPE_KEYS = ("filetype", "type")


@dataclass
class Upload:
    upload_id: str
    length: int | None
    held: bytes = b""
    partial: bool = False
    file_id: str | None = None
    metadata: dict[str, str] = dataclass_field(default_factory=dict)  # Upload-Metadata, decoded
    default_name: str | None = None  # the stored name without a name in the metadata: upload-<id>

    def stored_as(self) -> tuple[str, str, dict[str, str]]:
        """The filename, media type and metadata its stored file must have."""
        raw_name = next((self.metadata[key] for key in NAME_KEYS if self.metadata.get(key)), None)
        filename = clean_filename(raw_name) if raw_name else self.default_name or f"upload-{self.upload_id}"
        raw_type = next((self.metadata[key] for key in TYPE_KEYS if self.metadata.get(key)), None)
        extra = {key: value for key, value in self.metadata.items() if key not in NAME_KEYS + TYPE_KEYS}
        return filename, clean_media_type(raw_type, filename), extra

    @property
    def url(self) -> str:
        return f"/files/{self.upload_id}"

    @property
    def complete(self) -> bool:
        return self.length is not None and len(self.held) == self.length

    @property
    def finished(self) -> bool:
        """All bytes are in: the upload takes no more (a non-partial one is committed)."""
        return self.file_id is not None or self.complete


@dataclass(frozen=True)
class Outcome:
    statuses: frozenset[int]
    kept: bytes = b""  # bytes the request added to the upload
    length: int | None = None  # the upload's length after the request
    created: bool = False

    @property
    def held(self) -> bytes:
        return self.kept


def body_outcome(upload: Upload, body: bytes, sent: bytes, *, cut: bool,
                 checksum: tuple[str, bytes] | None, success: int) -> Outcome:
    """A body sent at the right offset: appended whole, cut short (kept, unless it carried a
    checksum: an unverifiable chunk is discarded), or refused whole."""
    if upload.finished:
        if sent:
            return Outcome(frozenset({413}), length=upload.length)
        return Outcome(frozenset({400} if cut else {success}), length=upload.length)
    room = (upload.length if upload.length is not None else MAX_FILE_SIZE) - len(upload.held)
    if len(sent) > room:
        return Outcome(frozenset({413}), length=upload.length)
    if cut:
        return Outcome(frozenset({400}), kept=b"" if checksum else sent, length=upload.length)
    if checksum and ALGORITHMS[checksum[0]](body).digest() != checksum[1]:
        return Outcome(frozenset({460}), length=upload.length)
    return Outcome(frozenset({success}), kept=body, length=upload.length)


# --- creation --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Creation:
    version: Any
    length: str | None
    defer: Any
    metadata: str | None
    concat: str | None
    content_type: Any
    body: bytes
    checksum: Any
    cut: int | None
    chunk_cuts: list[int] = dataclass_field(default_factory=list)

    @property
    def sent(self) -> bytes:
        return self.body if self.cut is None else self.body[:self.cut]

    def headers(self) -> list[tuple[bytes, bytes]]:
        values = {"tus-resumable": self.version, "upload-length": self.length, "upload-defer-length": self.defer,
                  "upload-metadata": self.metadata, "upload-concat": self.concat, "content-type": self.content_type,
                  "upload-checksum": digest_header(self.checksum, self.body)}
        return [field(name, value) for name, value in values.items() if value is not None]


@dataclass(frozen=True)
class CreationOutcome(Outcome):
    partial: bool = False


def expected_creation(creation: Creation) -> CreationOutcome:
    if creation.version != "1.0.0":
        return CreationOutcome(frozenset({412}))
    faults: set[int] = set()
    metadata = spec_metadata(creation.metadata) if creation.metadata is not None else {}
    if metadata is None:
        faults.add(400)
    concat = (creation.concat or "").strip(OWS)
    kind = "plain" if creation.concat is None else "partial" if concat == "partial" else (
        "final" if concat.startswith("final;") else "bad")
    if kind == "bad":
        faults.add(400)
    length = number(creation.length)
    if creation.length is not None and length is None:
        faults.add(400)
    if kind == "final":
        # No upload here is a complete partial one: the parts are unknown or malformed.
        return CreationOutcome(frozenset(faults | {400, 404}))
    if length == HUGE:
        faults |= {400, 413}
    elif length is not None and length > MAX_FILE_SIZE:
        faults.add(413)
    if creation.defer is not None and creation.defer != "1":
        faults.add(400)
    if (creation.length is None) == (creation.defer is None):
        faults.add(400)
    if kind == "plain" and metadata and name_refused(metadata):
        faults.add(400)
    with_body = media_type(creation.content_type) == OFFSET_TYPE
    checksum = spec_checksum(digest_header(creation.checksum, creation.body)) if with_body else None
    if checksum == BAD:
        faults.add(400)
    if faults:
        return CreationOutcome(frozenset(faults))
    assert length != HUGE and checksum != BAD
    partial = kind == "partial"
    # An upload of length 0 is committed at its creation, before any body is read.
    upload = Upload("", length=length, partial=partial, file_id="x" if length == 0 and not partial else None)
    if not with_body:
        return CreationOutcome(frozenset({201}), length=length, created=True, partial=partial)
    outcome = body_outcome(upload, creation.body, creation.sent, cut=creation.cut is not None,
                           checksum=checksum, success=201)  # type: ignore[arg-type]
    return CreationOutcome(outcome.statuses, kept=outcome.kept, length=length, created=True, partial=partial)


# --- PATCH ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Patch:
    version: Any
    content_type: Any
    offset: tuple[Any, ...]  # ("right",), ("delta", n), ("raw", text), ("missing",)
    body: tuple[str, int]  # ("rest", extra): to the end and `extra` more; ("some", size)
    checksum: Any
    length: tuple[Any, ...] | None  # None, ("right",), ("raw", text)
    cut: float | None  # the fraction of the body sent before the client disconnects
    chunk_cuts: list[int] = dataclass_field(default_factory=list)

    def body_for(self, upload: Upload, pool: bytes) -> bytes:
        kind, size = self.body
        if kind == "rest":
            size += max(0, (upload.length if upload.length is not None else len(upload.held) + 20) - len(upload.held))
        return pool[:size]

    def sent(self, body: bytes) -> bytes:
        return body if self.cut is None else body[:int(len(body) * self.cut)]

    def offset_value(self, upload: Upload) -> str | None:
        return {"right": lambda: str(len(upload.held)), "delta": lambda: str(len(upload.held) + self.offset[1]),
                "raw": lambda: self.offset[1], "missing": lambda: None}[self.offset[0]]()

    def length_value(self, upload: Upload, body: bytes) -> str | None:
        if self.length is None:
            return None
        if self.length[0] == "raw":
            return str(self.length[1])
        return str(upload.length if upload.length is not None else len(upload.held) + len(body))

    def headers(self, upload: Upload, body: bytes) -> list[tuple[bytes, bytes]]:
        values = {"tus-resumable": self.version, "content-type": self.content_type,
                  "upload-offset": self.offset_value(upload), "upload-checksum": digest_header(self.checksum, body),
                  "upload-length": self.length_value(upload, body)}
        return [field(name, value) for name, value in values.items() if value is not None]


def expected_patch(upload: Upload, patch: Patch, body: bytes) -> Outcome:
    unchanged = upload.length
    if patch.version != "1.0.0":
        return Outcome(frozenset({412}), length=unchanged)
    faults: set[int] = set()
    if media_type(patch.content_type) != OFFSET_TYPE:
        faults.add(415)
    offset = number(patch.offset_value(upload))
    if offset is None:
        faults.add(400)
    checksum = spec_checksum(digest_header(patch.checksum, body))
    if checksum == BAD:
        faults.add(400)
    raw_length = patch.length_value(upload, body)
    length = number(raw_length)
    if raw_length is not None and length is None:
        faults.add(400)
    if length == HUGE or offset == HUGE:
        faults.add(400)
    if faults:
        return Outcome(frozenset(faults), length=unchanged)
    if length is not None and length != upload.length:
        # creation-defer-length: a PATCH may state the length once, not below what is held.
        if upload.length is not None or length < len(upload.held):
            return Outcome(frozenset({400}), length=unchanged)
        if length > MAX_FILE_SIZE:
            return Outcome(frozenset({413}), length=unchanged)
    else:
        length = upload.length
    if offset != len(upload.held):
        return Outcome(frozenset({409}), length=length)
    declared = Upload(upload.upload_id, length=length, held=upload.held, partial=upload.partial,
                      file_id=upload.file_id)
    return body_outcome(declared, body, patch.sent(body), cut=patch.cut is not None,
                        checksum=checksum, success=204)  # type: ignore[arg-type]


# --- concatenation ---------------------------------------------------------------------------

def expected_final(uploads: list[Upload], urls: list[str], *, with_length: bool, filename: str | None) -> Outcome:
    """Upload-Concat: final;<urls>. The id of a part is the last segment of its URL's path
    (as tusd reads it, whatever the host: a proxy may have rewritten it)."""
    faults: set[int] = set()
    known = {upload.upload_id: upload for upload in uploads}
    ids = [url.rstrip("/").rsplit("/", 1)[-1] for url in " ".join(urls).split()]
    parts = [known[part_id] for part_id in ids if part_id in known]
    if len(parts) < len(ids):
        faults.add(404)
    if len(set(ids)) < len(ids):
        faults.add(400)
    if not ids:
        faults.add(400)  # `final;` and no URL
    if with_length:
        faults.add(400)
    if filename is not None and name_refused({"filename": filename}):
        faults.add(400)
    if any(not part.partial or not part.complete for part in parts):
        faults.add(400)
    if sum(len(part.held) for part in parts) > MAX_FILE_SIZE:
        faults.add(413)
    if faults:
        return Outcome(frozenset(faults))
    return Outcome(frozenset({201}), kept=b"".join(part.held for part in parts), created=True)


# --- requests and checks -------------------------------------------------------------------------

def send(app: InProcessApp, method: str, path: str, headers: list[tuple[bytes, bytes]],
         chunks: Sequence[bytes] = (), *, disconnect: bool = False, raw_path: bytes | None = None) -> Answer:
    """A request whose answer is checked for what every tus answer must be: no 5xx,
    Tus-Resumable, no header that could split, and errors as JSON {error, detail}."""
    answer = app.request(method, path, headers=headers, chunks=chunks, disconnect=disconnect, raw_path=raw_path)
    assert answer.status < 500, (answer.status, answer.body[:300])
    assert answer.header("tus-resumable") == "1.0.0", answer.headers
    assert_headers_clean(answer)
    if answer.status >= 400:
        error = answer.json()
        assert set(error) == {"error", "detail"} and isinstance(error["error"], str), error
    return answer


def upload_id_of(location: str | None) -> str:
    match = LOCATION.fullmatch(location or "")
    assert match, location
    return match.group(1)


def listed_ids(app: InProcessApp) -> list[str]:
    return [item["id"] for item in app.request("GET", "/uploads", query=b"limit=20").json()["items"]]


def held_on_disk(app: InProcessApp, upload_id: str) -> bytes | None:
    path = app.data_dir / "tus" / f"{upload_id}.bin"
    return path.read_bytes() if path.exists() else None


def check_state(app: InProcessApp, upload: Upload, *, listing: bool = True) -> None:
    """HEAD's offset is the size of the bytes on disk, which are those the model accepted; a
    complete upload is committed (by the HEAD at the latest: a client that sees offset ==
    length is done) and listed with its size, sha256, name, media type and metadata, its blob
    the bytes held; nothing unfinished is listed or has a blob."""
    head = send(app, "HEAD", upload.url, [field("tus-resumable", "1.0.0")])
    assert head.status == 200, head.body
    assert head.header("upload-offset") == str(len(upload.held))
    if upload.length is None:
        assert (head.header("upload-defer-length"), head.header("upload-length")) == ("1", None)
    else:
        assert head.header("upload-length") == str(upload.length)
    file_id = head.header("ingest-file-id")
    if upload.complete and not upload.partial:
        assert file_id is not None, "HEAD says the upload is complete, but it is not committed"
        if upload.file_id is None:
            upload.file_id = file_id  # first, so that `discard` deletes it even if a check fails
            stored = app.request("GET", f"/uploads/{file_id}").json()
            assert (stored["size"], stored["sha256"]) == (len(upload.held), sha256(upload.held)), stored
            assert (stored["filename"], stored["content_type"], stored["metadata"]) == upload.stored_as(), stored
            assert app.request("GET", f"/uploads/{file_id}/content").body == upload.held
            assert (app.data_dir / "files" / file_id[:2] / file_id).read_bytes() == upload.held
        assert file_id == upload.file_id
        assert held_on_disk(app, upload.upload_id) is None
    else:
        assert file_id is None
        assert held_on_disk(app, upload.upload_id) == upload.held
    if listing:
        assert listed_ids(app) == ([upload.file_id] if upload.file_id else [])
        assert blob_ids_on_disk(app) == ([upload.file_id] if upload.file_id else [])


def discard(app: InProcessApp, upload: Upload) -> None:
    if upload.file_id is not None:
        delete_stored(app, upload.file_id, statuses=frozenset({204, 404}))
    answer = app.request("DELETE", upload.url, headers=[field("tus-resumable", "1.0.0")])
    assert answer.status in {204, 404}, answer.body
