"""Property-based fuzzing of the tus protocol (ingest/tus, https://tus.io/protocols/resumable-upload).

Creation with every header wrong or hostile (lengths, defer, metadata, concat, checksums,
versions, creation-with-upload cut short); sequences of PATCHes with wrong offsets, media
types, checksums and lengths, over-long bodies and disconnects; concatenation of wrong,
foreign, repeated and unfinished parts; any upload id. A model (tests/tus_model.py) says
which statuses each request may get and which bytes the upload must hold after it.

For every case: the answer is one the model allows (never a 5xx, a hang or a traceback; a
JSON error body; Tus-Resumable on it); the offset HEAD reports is the size of the upload's
bytes on disk, and those bytes are exactly the ones the model accepted; a complete upload
is committed and listed by GET /uploads with its size, sha256, name, media type and
metadata, its blob byte for byte the bytes accepted; nothing unfinished ever is listed or
has a blob; a refused request leaves no upload, row, blob or temporary file behind; the
data dir holds only ingest's own names.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from ingest.config import Settings
from tests.fuzzing import (
    assert_no_temp_files,
    assert_nothing_stored,
    assert_only_ingest_paths,
    blob_ids_on_disk,
    examples,
)
from tests.inprocess import InProcessApp
from tests.tus_model import (
    ALGORITHMS,
    BLOCK_SIZE,
    MAX_FILE_SIZE,
    OFFSET_TYPE,
    Creation,
    Patch,
    Upload,
    b64,
    check_state,
    discard,
    expected_creation,
    expected_final,
    expected_patch,
    field,
    listed_ids,
    send,
    spec_metadata,
    upload_id_of,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    root = tmp_path_factory.mktemp("fuzz-tus")
    settings = Settings(data_dir=root / "data", fsync=False, block_size=BLOCK_SIZE, max_file_size=MAX_FILE_SIZE)
    with InProcessApp(settings) as running:
        yield running
        assert_no_temp_files(running)
        assert list((running.data_dir / "tus").iterdir()) == []
        assert [p for p in (running.data_dir / "files").glob("*/*") if p.is_file()] == []
        assert listed_ids(running) == []
    assert [path.name for path in root.iterdir()] == ["data"], "a file was made beside the data dir"


def assert_clean(app: InProcessApp) -> None:
    """Between cases: every upload of the last case was removed; nothing else was made."""
    assert list((app.data_dir / "tus").iterdir()) == []
    assert_nothing_stored(app)
    assert_only_ingest_paths(app.data_dir)


def bytes_of(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    """The body in the chunks a client's writes might arrive in."""
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    return [body[start:end] for start, end in zip([0, *points], [*points, len(body)], strict=True)]


# --- header values: right ones, wrong ones and hostile ones ---------------------------------
# Each request starts right; up to three of its parts are then replaced by wrong or hostile
# values, so that every fault is met both alone and beside others.

WRONG_VERSIONS = st.sampled_from([None, "", "0.2.2", "1.0", "1.0.0 ", "1.0.0,0.2.2", "\x00", "1.0.0\x00"])
NUMBERS = st.one_of(
    st.integers(0, MAX_FILE_SIZE).map(str), st.integers(MAX_FILE_SIZE + 1, 2**70).map(str),
    st.integers(-2**40, -1).map(str),
    st.sampled_from(["", " ", "1.5", "+1", "0x10", "1e3", "\u00b2", "\u0661\u0662", "\uff11", "9" * 5000,
                     "0" * 60 + "7", " 5", "5 ", "NaN", "5,5"]),
    st.text(max_size=10))
# Metadata values: hostile file names (traversal, NUL, controls, bidi, overlong), arbitrary
# bytes (mostly not UTF-8), and one big value.
NAMES = ["../../x", "..", "/etc/passwd", "..\\..\\x", "a\x00b", "\x01", "\x1f", "\x7f", "\u202etxt.exe",
         "C:\\x\\y.txt", "x" * 300, "ok.txt", "\u00e9t\u00e9.bin", " ", "", "%2e%2e%2f", "\ufeff"]
VALUES = st.one_of(st.sampled_from(NAMES).map(str.encode), st.binary(max_size=40),
                   st.just(b"v" * 20_000), st.text(max_size=30).map(str.encode))
ENCODINGS = st.sampled_from(["base64"] * 5 + ["unpadded", "urlsafe", "garbage", "non-ascii", "key-only", "key-space"])
KEYS = st.one_of(st.sampled_from(["filename", "name", "filetype", "type", "note", "relativePath", "a=b", "x:y"]),
                 st.sampled_from(["", "k\u00e9", "a\x00", "a\tb", "(k)", "\x7f"]),
                 st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-_~!#", min_size=1, max_size=8))


def metadata_pair(key: str, value: bytes, encoding: str) -> str:
    encoded = {"base64": b64(value), "unpadded": b64(value).rstrip("="),
               "urlsafe": b64(value).replace("+", "-").replace("/", "_"), "garbage": "!!" + b64(value),
               "non-ascii": "\u00e9" + b64(value), "key-only": "", "key-space": ""}[encoding]
    if encoding == "key-only":
        return key
    return f"{key} {encoded}"


def joined(pairs: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    return pairs.flatmap(lambda items: st.sampled_from([",", ", ", " , "]).map(lambda sep: sep.join(items)))


GOOD_METADATA = st.one_of(st.none(), joined(st.lists(
    st.builds(lambda key, name: f"{key} {b64(name.encode())}", st.sampled_from(["filename", "filetype", "note"]),
              st.sampled_from(["a.bin", "report.pdf", "\u00e9t\u00e9.txt", "image/png"])),
    max_size=3, unique_by=lambda pair: pair.split()[0])))
HOSTILE_METADATA = st.one_of(
    joined(st.lists(st.builds(metadata_pair, KEYS, VALUES, ENCODINGS), min_size=1, max_size=4)), st.text(max_size=60))
HOSTILE_CONCATS = st.one_of(
    st.sampled_from(["partial;", " partial ", "final", "final;", "Final;x", "PARTIAL"]),
    st.builds(lambda ids: "final;" + " ".join(ids),
              st.lists(st.sampled_from(["/files/" + "a" * 32, "http://evil.example/files/" + "b" * 32, "../../x",
                                        "/files/../tus/x", "c" * 40]), max_size=3)),
    st.text(max_size=20))
WRONG_CONTENT_TYPES = st.one_of(
    st.sampled_from([f"{OFFSET_TYPE}; charset=x", OFFSET_TYPE.upper(), None, "application/octet-stream", "text/plain",
                     "", "application/offset+octet-stream-x", f" {OFFSET_TYPE} "]),
    st.text(max_size=30))
GOOD_CHECKSUMS = st.one_of(st.none(), st.tuples(st.just("right"), st.sampled_from([*ALGORITHMS, "SHA1"])))
# ("wrong", algorithm) is a well-formed header over other bytes; strings are sent as they stand.
HOSTILE_CHECKSUMS = st.one_of(
    st.tuples(st.just("wrong"), st.sampled_from(list(ALGORITHMS))),
    st.sampled_from(["sha3-256 " + b64(b"x" * 32), "crc32 AAAAAA==", "sha1", "sha1 ", "sha1 !!!",
                     "sha1 " + b64(b"short"), "md5 " + "\u00e9" * 24, " sha256 " + b64(b"y" * 32),
                     "sha256  " + b64(b"y" * 32), "sha1 " + b64(b"z" * 20) + "="]),
    st.text(max_size=40))
FAULTS = st.lists(st.sampled_from(["version", "length", "defer", "metadata", "concat", "content_type", "checksum",
                                   "too_long", "cut"]), max_size=3, unique=True)


# --- creation --------------------------------------------------------------------------------

@st.composite
def creations(draw: st.DrawFn) -> Creation:
    faults = draw(FAULTS)
    size = draw(st.integers(0, 1500))
    deferred = draw(st.booleans())
    with_body = draw(st.booleans())
    values = {"version": "1.0.0", "length": None if deferred else str(size), "defer": "1" if deferred else None,
              "metadata": draw(GOOD_METADATA), "concat": draw(st.sampled_from([None, None, "partial"])),
              "content_type": OFFSET_TYPE if with_body else None, "checksum": draw(GOOD_CHECKSUMS), "cut": None}
    body = bytes_of(size, draw(st.integers(0, size)))
    hostile = {"version": WRONG_VERSIONS, "length": st.one_of(st.none(), NUMBERS),
               "defer": st.sampled_from([None, "1", "0", "2", "", "true", " 1"]), "metadata": HOSTILE_METADATA,
               "concat": HOSTILE_CONCATS, "content_type": WRONG_CONTENT_TYPES, "checksum": HOSTILE_CHECKSUMS,
               "cut": st.integers(0, 2000)}
    for fault in faults:
        if fault == "too_long":
            body = bytes_of(size, size + draw(st.sampled_from([1, 2, MAX_FILE_SIZE])))
        else:
            values[fault] = draw(hostile[fault])
    return Creation(**values, body=body, chunk_cuts=draw(st.lists(st.integers(0, 10_000), max_size=3)))


def test_any_creation_request_gets_an_allowed_answer_and_holds_what_it_accepted(app: InProcessApp) -> None:
    outcomes: Counter[int] = Counter()

    @given(creation=creations())
    @examples(1000)
    def case(creation: Creation) -> None:
        assert_clean(app)
        expected = expected_creation(creation)
        note(f"expected {expected}")
        answer = send(app, "POST", "/files/", creation.headers(), chunks=split(creation.sent, creation.chunk_cuts),
                      disconnect=creation.cut is not None)
        outcomes[answer.status] += 1
        assert answer.status in expected.statuses, (answer.status, answer.body[:300])
        location = answer.header("location")
        assert (location is not None) == expected.created, location
        if location is None:
            assert list((app.data_dir / "tus").iterdir()) == [], "a refused creation left an upload behind"
            assert_nothing_stored(app)
            return
        upload = Upload(upload_id_of(location), length=expected.length, held=expected.held,
                        partial=expected.partial, metadata=spec_metadata(creation.metadata or "") or {})
        try:
            if answer.status == 201 and upload.complete and not upload.partial:
                assert answer.header("ingest-file-id") is not None
            check_state(app, upload)
        finally:
            discard(app, upload)
        assert_nothing_stored(app)

    case()
    print(f"tus creation: {sum(outcomes.values())} cases, statuses {dict(sorted(outcomes.items()))}")


# --- PATCH sequences ----------------------------------------------------------------------------

@st.composite
def patch_requests(draw: st.DrawFn) -> Patch:
    faults = draw(FAULTS)
    values: dict[str, object] = {
        "version": "1.0.0", "content_type": OFFSET_TYPE, "offset": ("right",),
        "body": draw(st.one_of(st.just(("rest", 0)), st.tuples(st.just("some"), st.integers(0, 700)))),
        "checksum": draw(GOOD_CHECKSUMS), "length": draw(st.sampled_from([None, None, ("right",)])), "cut": None}
    hostile = {"version": WRONG_VERSIONS, "content_type": WRONG_CONTENT_TYPES, "checksum": HOSTILE_CHECKSUMS,
               "length": st.tuples(st.just("raw"), NUMBERS),
               "cut": st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)),
               "too_long": st.tuples(st.just("rest"), st.sampled_from([1, 2, 100, MAX_FILE_SIZE])),
               "offset": st.one_of(st.tuples(st.just("delta"), st.integers(-5, 5).filter(bool)),
                                   st.tuples(st.just("raw"), NUMBERS), st.just(("missing",)))}
    for fault in faults:
        if fault in {"defer", "metadata", "concat"}:  # not PATCH headers: a wrong offset instead
            fault = "offset"
        values["body" if fault == "too_long" else fault] = draw(hostile[fault])
    return Patch(**values, chunk_cuts=draw(st.lists(st.integers(0, 10_000), max_size=3)))  # type: ignore[arg-type]


def test_any_sequence_of_patches_keeps_head_offset_equal_to_the_bytes_held(app: InProcessApp) -> None:
    outcomes: Counter[int] = Counter()
    requests = 0

    @given(length=st.one_of(st.none(), st.integers(0, 1500)),
           patches=st.lists(patch_requests(), min_size=1, max_size=6), seed=st.integers(0, 2**32))
    @examples(300)
    def case(length: int | None, patches: list[Patch], seed: int) -> None:
        nonlocal requests
        assert_clean(app)
        headers = [field("tus-resumable", "1.0.0"),
                   field("upload-length", str(length)) if length is not None else field("upload-defer-length", "1")]
        created = send(app, "POST", "/files/", headers)
        assert created.status == 201, created.body
        upload = Upload(upload_id_of(created.header("location")), length=length)
        try:
            for index, patch in enumerate(patches):
                body = patch.body_for(upload, bytes_of(seed + index, 2 * MAX_FILE_SIZE))
                expected = expected_patch(upload, patch, body)
                note(f"PATCH {index}: held {len(upload.held)}, length {upload.length}, {patch}, expected {expected}")
                answer = send(app, "PATCH", upload.url, patch.headers(upload, body),
                              chunks=split(patch.sent(body), patch.chunk_cuts), disconnect=patch.cut is not None)
                requests += 1
                outcomes[answer.status] += 1
                assert answer.status in expected.statuses, (answer.status, answer.body[:300])
                upload.held += expected.kept
                upload.length = expected.length
                if answer.status in {204, 409}:
                    assert answer.header("upload-offset") == str(len(upload.held))
                check_state(app, upload)
            # The client gets the upload right in the end: it completes with the bytes held.
            if not upload.complete:
                rest = bytes_of(seed, (upload.length or len(upload.held) + 10) - len(upload.held))
                headers = [field("tus-resumable", "1.0.0"), field("content-type", OFFSET_TYPE),
                           field("upload-offset", str(len(upload.held)))]
                if upload.length is None:
                    upload.length = len(upload.held) + len(rest)
                    headers.append(field("upload-length", str(upload.length)))
                done = send(app, "PATCH", upload.url, headers, chunks=[rest])
                assert done.status == 204, done.body
                upload.held += rest
            check_state(app, upload)
            assert upload.file_id is not None
        finally:
            discard(app, upload)
        assert_nothing_stored(app)

    case()
    print(f"tus PATCH sequences: {requests} PATCHes, statuses {dict(sorted(outcomes.items()))}")


# --- concatenation ---------------------------------------------------------------------------

@dataclass
class Concatenation:
    parts: list[tuple[str, int, int]]  # (partial | plain | deferred, Upload-Length, bytes sent)
    references: list[tuple[Any, ...]]  # ("part", index, URL style) or ("unknown", URL)
    with_length: bool = False
    filename: str | None = "joined.bin"


URL_STYLES = ["absolute", "path", "bare", "foreign-host", "trailing-slash"]
UNKNOWN_URLS = ["/files/" + "d" * 32, "e" * 32, "/files/..", "../../etc/passwd", "/files/" + "f" * 33, "", "%00"]


@st.composite
def concatenations(draw: st.DrawFn) -> Concatenation:
    """Complete partial uploads named in some order and URL style; then up to two faults."""
    count = draw(st.integers(1, 4))
    lengths = [draw(st.integers(0, 1000)) for _ in range(count)]
    plan = Concatenation(parts=[("partial", length, length) for length in lengths],
                         references=[("part", index, draw(st.sampled_from(URL_STYLES)))
                                     for index in draw(st.permutations(range(count)))])
    for fault in draw(st.lists(st.sampled_from(["unfinished", "plain", "deferred", "repeated", "unknown", "unparsable",
                                                "no-urls", "length", "filename", "too-big"]), max_size=2, unique=True)):
        index = draw(st.integers(0, count - 1))
        kind, length, sent = plan.parts[index]
        if fault == "unfinished" and length:
            plan.parts[index] = (kind, length, draw(st.integers(0, length - 1)))
        elif fault in {"plain", "deferred"}:
            plan.parts[index] = (fault, length, sent)
        elif fault == "too-big":
            plan.parts = [(kind, MAX_FILE_SIZE - 1, MAX_FILE_SIZE - 1) for kind, _, _ in plan.parts]
        elif fault == "repeated":
            plan.references.insert(draw(st.integers(0, len(plan.references))),
                                   ("part", index, draw(st.sampled_from(URL_STYLES))))
        elif fault == "unknown":
            plan.references.append(("unknown", draw(st.sampled_from(UNKNOWN_URLS))))
        elif fault == "unparsable":
            plan.references.append(("part", index, draw(st.sampled_from(["query", "upper"]))))
        elif fault == "no-urls":
            plan.references = []
        elif fault == "length":
            plan.with_length = True
        elif fault == "filename":
            plan.filename = draw(st.sampled_from(["../../j", "a\x00b", "", None]))
    return plan


def part_url(upload: Upload, style: str) -> str:
    return {"absolute": f"http://testserver{upload.url}", "path": upload.url, "bare": upload.upload_id,
            "foreign-host": f"https://elsewhere.example{upload.url}", "trailing-slash": upload.url + "/",
            "query": upload.url + "?x=1", "upper": upload.url.upper()}[style]


def test_concatenation_of_any_parts_stores_their_bytes_in_order_or_changes_nothing(app: InProcessApp) -> None:
    outcomes: Counter[int] = Counter()

    @given(plan=concatenations(), seed=st.integers(0, 2**32))
    @examples(150)
    def case(plan: Concatenation, seed: int) -> None:
        assert_clean(app)
        uploads = []
        try:
            for index, (kind, length, sent) in enumerate(plan.parts):
                headers = [field("tus-resumable", "1.0.0")]
                headers.append(field("upload-defer-length", "1") if kind == "deferred"
                               else field("upload-length", str(length)))
                if kind != "plain":
                    headers.append(field("upload-concat", "partial"))
                content = bytes_of(seed + index, sent)
                if content:
                    headers.append(field("content-type", OFFSET_TYPE))
                answer = send(app, "POST", "/files/", headers, chunks=[content])
                assert answer.status == 201, answer.body
                uploads.append(Upload(upload_id_of(answer.header("location")), length=None if kind == "deferred"
                                      else length, held=content, partial=kind != "plain"))
            for upload in uploads:
                check_state(app, upload, listing=False)
            committed = [upload.file_id for upload in uploads if upload.file_id]
            assert sorted(listed_ids(app)) == sorted(committed)
            urls = [part_url(uploads[ref[1]], ref[2]) if ref[0] == "part" else ref[1] for ref in plan.references]
            expected = expected_final(uploads, urls, with_length=plan.with_length, filename=plan.filename)
            headers = [field("tus-resumable", "1.0.0"), field("upload-concat", "final;" + " ".join(urls))]
            if plan.with_length:
                headers.append(field("upload-length", "10"))
            if plan.filename is not None:
                headers.append(field("upload-metadata", "filename " + b64(plan.filename.encode())))
            note(f"final of {urls}: expected {expected}")
            answer = send(app, "POST", "/files/", headers)
            outcomes[answer.status] += 1
            assert answer.status in expected.statuses, (answer.status, answer.body[:300])
            if answer.status != 201:
                for upload in uploads:
                    check_state(app, upload, listing=False)
                assert sorted(listed_ids(app)) == sorted(committed)
                assert blob_ids_on_disk(app) == sorted(committed), "a refused concatenation stored a blob"
                assert_no_temp_files(app)
                return
            final = Upload(upload_id_of(answer.header("location")), length=len(expected.held), held=expected.held,
                           metadata={"filename": plan.filename} if plan.filename is not None else {},
                           default_name="upload")
            uploads.append(final)
            check_state(app, final, listing=False)
            assert sorted(listed_ids(app)) == sorted([*committed, final.file_id])
            assert final.file_id is not None
            assert blob_ids_on_disk(app) == sorted([*committed, final.file_id])
            for upload in uploads[:-1]:
                if upload.upload_id in " ".join(urls):  # concatenated parts are removed (as the spec allows)
                    assert send(app, "HEAD", upload.url, [field("tus-resumable", "1.0.0")]).status == 404
                else:
                    check_state(app, upload, listing=False)
            refused = send(app, "PATCH", final.url, [
                field("tus-resumable", "1.0.0"), field("content-type", OFFSET_TYPE),
                field("upload-offset", str(len(final.held)))])
            assert refused.status == 403
        finally:
            for upload in uploads:
                discard(app, upload)

    case()
    print(f"tus concatenation: {sum(outcomes.values())} final uploads, statuses {dict(sorted(outcomes.items()))}")


# --- upload ids -----------------------------------------------------------------------------------

ID_PIECES = ["..", ".", "/", "\\", "%2e%2e", "%2f", "%00", "\x00", "\x1f", "\u202e", "a" * 32, "A" * 32, "0" * 31,
             "f" * 33, "x" * 300, "tus", "catalog.sqlite3", "files", ".json", ".bin", " ", "?", "#", ";"]


def test_any_upload_id_gets_a_404_or_another_4xx_and_touches_nothing(app: InProcessApp) -> None:
    outcomes: Counter[int] = Counter()
    created = send(app, "POST", "/files/", [field("tus-resumable", "1.0.0"), field("upload-length", "10"),
                                            field("content-type", OFFSET_TYPE)], chunks=[b"12345"])
    bystander = Upload(upload_id_of(created.header("location")), length=10, held=b"12345")

    @given(upload_id=st.one_of(st.lists(st.sampled_from(ID_PIECES), min_size=1, max_size=4).map("".join),
                               st.text(max_size=40), st.just(bystander.upload_id + "x"),
                               st.just(bystander.upload_id.upper())),
           method=st.sampled_from(["HEAD", "PATCH", "DELETE", "OPTIONS", "GET", "PUT", "POST"]),
           override=st.sampled_from([None, None, "PATCH", "DELETE", "HEAD", "GET", "patch"]))
    @examples(600)
    def case(upload_id: str, method: str, override: str | None) -> None:
        headers = [field("tus-resumable", "1.0.0"), field("content-type", OFFSET_TYPE), field("upload-offset", "0")]
        if override is not None:
            headers.append(field("x-http-method-override", override))
        path = "/files/" + upload_id
        answer = send(app, method, path, headers, chunks=[b"abc"],
                      raw_path=b"/files/" + quote(upload_id, safe="/%", errors="surrogatepass").encode())
        outcomes[answer.status] += 1
        assert (answer.status in {404, 405} or (answer.status, method) == (204, "OPTIONS")
                or (answer.status, path) == (400, "/files/")
                or (answer.status == 307 and path.endswith("/"))), (answer.status, answer.body[:200])
        if answer.status == 307:  # the router's redirect to the path without its trailing slash
            assert (answer.header("location") or "").startswith("http://testserver/files")
        check_state(app, bystander)
        assert_only_ingest_paths(app.data_dir)
        assert_no_temp_files(app)

    try:
        case()
    finally:
        discard(app, bystander)
    print(f"tus upload ids: {sum(outcomes.values())} cases, statuses {dict(sorted(outcomes.items()))}")
