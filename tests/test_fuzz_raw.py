"""Property-based fuzzing of raw uploads, names, digests and every read-side parameter.

Raw bodies (PUT /uploads/{name}, POST /uploads as octet-stream) with hostile names,
digests, media types and disconnects; ids, cursors, limits, ranges and conditional headers
on the read side; bearer tokens. Every answer is a 4xx JSON error or a correct success: a
stored file is the bytes sent (size and SHA-256 in the answer, the catalog and on disk),
under the name sent once cleaned and the media type its name suggests; after a refusal
nothing is cataloged or left under files/ or tmp/. No client name ever becomes a path, and
no response header can be split or injected.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from ingest.config import Settings
from ingest.errors import InvalidFilename
from ingest.models import clean_filename
from ingest.web import browser
from tests.conftest import stored_files, temp_files
from tests.fuzzing import (
    assert_error_or_created,
    assert_headers_clean,
    assert_nothing_stored,
    assert_only_ingest_paths,
    check_and_remove_created,
    delete_stored,
    examples,
    guessed_media_type,
    sha256,
)
from tests.inprocess import Answer, InProcessApp


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    data_dir = tmp_path_factory.mktemp("fuzz-raw") / "data"
    with InProcessApp(Settings(data_dir=data_dir, fsync=False, block_size=4096)) as running:
        yield running
        assert_nothing_stored(running)


# Path traversal and lookalikes: RFC 3986 dot segments, Windows separators and drives,
# percent-encodings, NUL and controls, bidi overrides, fullwidth and compatibility forms
# (NFKC would fold U+FF0E to "."), combining marks, reserved device names, overlong names.
NAME_PIECES = ["..", ".", "/", "\\", "%2e%2e", "%2f", "%5c", "%00", "\x00", "\x01", "\x1f", "\x7f", "\u202e",
               "\u200b", "\ufeff", "\u2028", "CON", "NUL", "aux.txt", "COM1", "LPT9.log", "\uff0e\uff0e", "\uff0f",
               "\u2025", "e\u0301", "\u00e9", "C:", "~", " ", "a", "file.txt", "\U0001f4be", "x" * 120]
names = st.lists(st.sampled_from(NAME_PIECES), min_size=1, max_size=6).map("".join)


def disposition_filename(header: str) -> str:
    """The name a browser reads from `attachment; filename="..."[; filename*=UTF-8''...]`
    (RFC 6266 §4.3: filename* wins); the whole header must be exactly that shape, so nothing
    could have been appended to it."""
    match = re.fullmatch(
        r'attachment; filename="([^"\\]*)"(?:; filename\*=UTF-8\'\'([A-Za-z0-9%._~!$&*+^`|#-]*))?', header)
    assert match, header
    return unquote(match.group(2), errors="strict") if match.group(2) is not None else match.group(1)


def cleaned(raw_name: str) -> str | None:
    """The name ingest must store a file under, when `raw_name` reached it unchanged; None
    when the shared name rules refuse it (fuzzed for themselves by the tests below)."""
    try:
        return clean_filename(raw_name)
    except InvalidFilename:
        return None


def has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def check_name_outcome(app: InProcessApp, answer: Answer, raw_name: str, content: bytes, *,
                       exact: bool = False) -> None:
    """`exact`: the name arrived as sent, so the stored name is its cleaned form, and a name
    the rules refuse is never stored."""
    assert_error_or_created(answer)
    assert_headers_clean(answer)
    if answer.status == 201:
        (stored,) = answer.json()["files"]
        name = stored["filename"]
        note(f"stored name {name!r}")
        assert name and name not in {".", ".."} and "/" not in name and "\\" not in name
        assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in name)
        assert unicodedata.is_normalized("NFC", name) and len(name.encode()) <= 255
        download = app.request("GET", f"/uploads/{stored['id']}/content")
        assert download.status == 200 and download.body == content
        assert_headers_clean(download)
        disposition = download.header("content-disposition")
        assert disposition is not None
        assert disposition_filename(disposition) == name, disposition
        if exact:
            assert name == cleaned(raw_name), (raw_name, name)
        check_and_remove_created(app, answer, [(name, content)], media_types=[guessed_media_type(name)])
    else:
        assert answer.json()["error"] in {"invalid_filename", "not_found", "method_not_allowed",
                                          "unsupported_media_type"}, answer.body
    assert_only_ingest_paths(app.data_dir)
    assert_nothing_stored(app)


@given(name=names, content=st.binary(max_size=64))
@examples(1200)
def test_hostile_names_in_the_path_never_reach_the_filesystem(app: InProcessApp, name: str, content: bytes) -> None:
    raw_path = b"/uploads/" + quote(name, safe="/%", encoding="utf-8", errors="surrogatepass").encode()
    answer = app.request("PUT", "/uploads/" + name, raw_path=raw_path, chunks=[content],
                         headers=[(b"content-length", str(len(content)).encode())])
    check_name_outcome(app, answer, name, content, exact=True)


@given(name=names, via=st.sampled_from(["query", "disposition", "disposition*"]), content=st.binary(max_size=64))
@examples(1000)
def test_hostile_names_in_query_or_content_disposition_never_reach_the_filesystem(
        app: InProcessApp, name: str, via: str, content: bytes) -> None:
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(content)).encode())]
    query = b""
    if via == "query":
        query = b"filename=" + quote(name, safe="", errors="surrogatepass").encode()
    elif via == "disposition":
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        headers.append((b"content-disposition", f'attachment; filename="{escaped}"'.encode("utf-8", "replace")))
    else:
        headers.append((b"content-disposition",
                        b"attachment; filename*=UTF-8''" + quote(name, safe="", errors="surrogatepass").encode()))
    answer = app.request("POST", "/uploads", query=query, headers=headers, chunks=[content])
    if answer.status == 400 and answer.json()["error"] == "malformed_multipart":
        assert_nothing_stored(app)
        return  # a Content-Disposition header that does not parse: refused, nothing kept
    # A quoted filename is read from a Latin-1 header: only ASCII arrives unchanged.
    check_name_outcome(app, answer, name, content,
                       exact=via != "disposition" or name.isascii())


@given(name=st.text(max_size=80), content=st.binary(max_size=32))
@examples(800)
def test_any_unicode_name_is_stored_safely_or_refused(app: InProcessApp, name: str, content: bytes) -> None:
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(content)).encode())]
    query = b"filename=" + quote(name, safe="", errors="surrogatepass").encode()
    answer = app.request("POST", "/uploads", query=query, headers=headers, chunks=[content])
    check_name_outcome(app, answer, name, content, exact=not has_surrogates(name))


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@given(content=st.binary(max_size=200), digest_header=st.one_of(
    st.text(max_size=60),
    st.builds(lambda algo, value: f"{algo}=:{value}:", st.sampled_from(["sha-256", "SHA-256", "sha-512", "md5", ""]),
              st.one_of(st.text(alphabet="ABCDEFGHIJabcdef0123456789+/=", max_size=50),
                        st.binary(min_size=32, max_size=32).map(b64))),
), correct=st.booleans(), cut=st.none() | st.integers(min_value=0, max_value=200))
@examples(1200)
def test_raw_bodies_with_any_digest_length_or_disconnect_are_stored_right_or_refused(
        app: InProcessApp, content: bytes, digest_header: str, correct: bool, cut: int | None) -> None:
    if correct:
        digest_header = f"sha-256=:{b64(hashlib.sha256(content).digest())}:"
    sent = content if cut is None else content[:cut]
    answer = app.request("PUT", "/uploads/blob.bin", chunks=[sent[:7], sent[7:]], disconnect=cut is not None,
                         headers=[(b"content-length", str(len(content)).encode()),
                                  (b"content-digest", digest_header.encode("utf-8", "surrogatepass"))])
    assert_error_or_created(answer)
    if answer.status == 201:
        try:
            assert cut is None, "a request whose client went away was stored"
            # RFC 9530 §2: algorithms a server does not support are ignored; sha-256 must match.
            if "sha-256" in digest_header.lower():
                match = re.fullmatch(r"\s*sha-256\s*=\s*:([A-Za-z0-9+/=]+):\s*", digest_header, re.IGNORECASE)
                assert match and base64.b64decode(match.group(1)) == hashlib.sha256(content).digest(), digest_header
            check_and_remove_created(app, answer, [("blob.bin", content)],
                                     media_types=[guessed_media_type("blob.bin")])
        finally:
            delete_stored(app, answer.json()["files"][0]["id"], statuses=frozenset({204, 404}))
    else:
        assert answer.json()["error"] in {"invalid_digest", "digest_mismatch", "client_disconnected"}, answer.body
    assert_nothing_stored(app)


@given(method=st.sampled_from(["GET", "DELETE", "HEAD", "PUT", "PATCH", "POST", "OPTIONS"]),
       path=st.one_of(
           st.builds(lambda s: f"/uploads/{s}", st.text(max_size=40)),
           st.builds(lambda s: f"/uploads/{s}/content", st.text(max_size=40)),
           st.sampled_from(["/uploads", "/uploads/", "/healthz", "/openapi.json", "/", "/uploads//content",
                            "/uploads/../healthz", "/files", "/%2e%2e/etc/passwd"])),
       query=st.lists(st.tuples(st.sampled_from(["limit", "cursor", "filename", "x"]), st.text(max_size=30)),
                      max_size=3))
@examples(1200)
def test_any_method_path_and_query_gets_an_answer_that_is_not_a_5xx(
        app: InProcessApp, method: str, path: str, query: list[tuple[str, str]]) -> None:
    query_string = "&".join(f"{quote(k)}={quote(v, errors='surrogatepass')}" for k, v in query).encode()
    answer = app.request(method, path, query=query_string, chunks=[b"x"],
                         headers=[(b"content-length", b"1")],
                         raw_path=quote(path, safe="/%", errors="surrogatepass").encode())
    assert answer.status < 500, (answer.status, answer.body[:300])
    assert_headers_clean(answer)
    if answer.status >= 400:
        assert set(answer.json()) == {"error", "detail"}
    if answer.status == 201:
        # Only PUT /uploads/<name> stores here (a POST without Content-Type is a 415): the
        # one byte sent, under the name's last segment.
        assert method == "PUT", (method, path)
        (stored,) = answer.json()["files"]
        assert stored["filename"] == cleaned(path.removeprefix("/uploads/")), (path, stored)
        check_and_remove_created(app, answer, [(None, b"x")])
    assert_only_ingest_paths(app.data_dir)
    assert_nothing_stored(app)


CONTENT = bytes(range(256)) * 4  # 1 KiB whose every byte says where it is


@pytest.fixture(scope="module")
def stored_id(app: InProcessApp) -> Iterator[str]:
    answer = app.request("PUT", "/uploads/range.bin", chunks=[CONTENT],
                         headers=[(b"content-length", str(len(CONTENT)).encode())])
    file_id: str = answer.json()["files"][0]["id"]
    yield file_id
    delete_stored(app, file_id)


def expected_single_range(header: str, size: int) -> tuple[int, int] | None:
    """RFC 9110 §14.1.2 for one `bytes=` range: (first, last) or None when not of that form."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        suffix = int(last_text)
        return (max(0, size - suffix), size - 1) if suffix else None
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    return (first, last) if first <= last and first < size else None


@given(range_header=st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", st.none().map(lambda _: "") | st.integers(0, 1100).map(str),
              st.none().map(lambda _: "") | st.integers(0, 1100).map(str)),
    st.text(alphabet="bytes=0123456789-, x", max_size=30)),
       conditional=st.sampled_from([None, ("if-none-match", "*"), ("if-none-match", '"nope"'),
                                    ("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT"),
                                    ("if-modified-since", "garbage"), ("if-range", '"nope"')]))
@examples(800)
def test_any_range_and_conditional_header_gets_the_right_bytes_or_a_4xx(
        app: InProcessApp, stored_id: str, range_header: str, conditional: tuple[str, str] | None) -> None:
    headers = [(b"range", range_header.encode())]
    if conditional:
        headers.append((conditional[0].encode(), conditional[1].encode()))
    answer = app.request("GET", f"/uploads/{stored_id}/content", headers=headers)
    assert answer.status in {200, 206, 304, 400, 416}, (answer.status, answer.body[:200])
    assert_headers_clean(answer)
    if answer.status in {400, 416}:
        assert answer.json()["error"] in {"invalid_range", "range_not_satisfiable"}
    if answer.status == 200:
        assert answer.body == CONTENT
    expected = expected_single_range(range_header, len(CONTENT))
    if answer.status == 206 and expected is not None:
        assert answer.body == CONTENT[expected[0]:expected[1] + 1], range_header
        assert answer.header("content-range") == f"bytes {expected[0]}-{expected[1]}/{len(CONTENT)}"


TOKEN = "s3cret-token-" + "x" * 20


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    data_dir = tmp_path_factory.mktemp("fuzz-auth") / "data"
    with InProcessApp(Settings(data_dir=data_dir, fsync=False, tokens=(TOKEN, "other"))) as running:
        yield running


@given(authorization=st.one_of(
    st.text(max_size=60),
    st.builds(lambda scheme, value: f"{scheme} {value}", st.sampled_from(["Bearer", "bearer", "Basic", "Token", ""]),
              st.sampled_from([TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "", " ", "*", TOKEN + " extra",
                               base64.b64encode(TOKEN.encode()).decode()]))),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]),
       path=st.sampled_from(["/uploads", "/uploads/x.bin", "/uploads/" + "a" * 32, "/uploads/" + "a" * 32 + "/content",
                             "/openapi.json", "/anything", "/files", "/files/", "/files/" + "a" * 32]),
       tus_version=st.sampled_from([b"1.0.0", None, b"0.2.2", b""]))
@examples(600)
def test_no_endpoint_but_healthz_answers_a_request_without_a_valid_token(
        guarded_app: InProcessApp, authorization: str, method: str, path: str, tus_version: bytes | None) -> None:
    version = [(b"tus-resumable", tus_version)] if tus_version is not None else []
    answer = guarded_app.request(method, path, chunks=[b"abc"], headers=[
        (b"authorization", authorization.encode("utf-8", "surrogatepass")), (b"content-length", b"3"),
        (b"content-type", b"application/offset+octet-stream"), (b"upload-offset", b"0"), *version])
    assert (answer.status, answer.json()["error"]) == (401, "unauthorized")
    assert answer.header("www-authenticate") == 'Bearer realm="ingest"'
    assert TOKEN not in answer.body.decode()
    assert stored_files(guarded_app.data_dir) == [] and temp_files(guarded_app.data_dir) == []
    assert list((guarded_app.data_dir / "tus").iterdir()) == [], "an unauthorized request made a tus upload"
    assert guarded_app.request("GET", "/healthz", headers=[(b"authorization", authorization.encode(
        "utf-8", "surrogatepass"))]).status == 200


def test_every_route_refuses_a_missing_token_and_accepts_a_valid_one(guarded_app: InProcessApp) -> None:
    routes = {(route.path, method) for route in guarded_app.app.routes  # type: ignore[attr-defined]
              for method in (getattr(route, "methods", None) or {"GET"})}
    assert len(routes) >= 9
    for path, method in sorted(routes):
        concrete = re.sub(r"\{[^}]+\}", "a" * 32, path)
        # Without the tus version header: auth answers before tus's own 412 (ingest/tus).
        answer = guarded_app.request(method, concrete, chunks=[b"abc"], headers=[
            (b"content-length", b"3"), (b"content-type", b"application/octet-stream")])
        if path == "/healthz" or browser.is_page_path(concrete):
            # The upload page's own static files are public (the page asks for the token);
            # they hold no stored data and no route serving stored data is among them
            # (/l/<secret> sends an upload link's holder to the page: 303).
            assert answer.status in {200, 303, 304, 404, 405}, (method, path)
            assert not concrete.startswith(("/uploads", "/files"))
        else:
            assert answer.status == 401, (method, path)
        # The progress stream waits for its upload to begin: only its status is read.
        authorized = guarded_app.request(method, concrete, chunks=[b"abc"], headers=[
            (b"authorization", f"Bearer {TOKEN}".encode()), (b"content-length", b"3"),
            (b"content-type", b"application/octet-stream"), (b"tus-resumable", b"1.0.0")],
            headers_only=path == "/uploads/progress/{token}")
        assert authorized.status != 401, (method, path)
        if authorized.status == 201:
            for stored in authorized.json()["files"]:
                assert (stored["size"], stored["sha256"]) == (3, sha256(b"abc")), (method, path, stored)
                guarded_app.request("DELETE", f"/uploads/{stored['id']}",
                                    headers=[(b"authorization", f"Bearer {TOKEN}".encode())])


def test_temp_files_are_never_named_after_the_client(app: InProcessApp) -> None:
    name = "../../etc/passwd"
    answer = app.request("PUT", "/uploads/" + name, chunks=[b"abc"], headers=[(b"content-length", b"3")],
                         raw_path=b"/uploads/..%2f..%2fetc%2fpasswd")
    assert answer.status == 201 and answer.json()["files"][0]["filename"] == "passwd"
    assert not (app.data_dir.parent / "etc").exists()
    assert os.listdir(app.data_dir / "tmp") == []
    assert_only_ingest_paths(app.data_dir)
    check_and_remove_created(app, answer, [("passwd", b"abc")])
