"""Property-based fuzzing of POST /uploads with multipart bodies, in process.

Well-formed forms built from a model must be stored exactly as the model says; mutated
forms (truncated, bytes inserted, deleted or repeated, boundaries changed, headers broken)
must get a 4xx JSON error or a 201 whose files are exactly what an independent parser
(python-multipart) reads from the same bytes. A 201's files are stored byte for byte (size
and SHA-256 in the answer, the catalog and on disk) under the expected names and media
types; after every request no temporary file is left and only files a 201 listed exist in
the store and the catalog.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

from ingest.config import Settings
from ingest.models import clean_filename
from tests.fuzzing import (
    assert_error_or_created,
    assert_nothing_stored,
    check_and_remove_created,
    delete_stored,
    examples,
    guessed_media_type,
    oracle_parse,
)
from tests.inprocess import Answer, InProcessApp

BCHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=?"
SAFE_NAME = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
MEDIA_TYPES = [None, "text/plain", "application/octet-stream", "image/png", "application/x-thing"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    data_dir = tmp_path_factory.mktemp("fuzz-multipart") / "data"
    settings = Settings(data_dir=data_dir, fsync=False, max_parts=64, max_field_size=4096,
                        max_part_header_size=2048, block_size=4096)
    with InProcessApp(settings) as running:
        yield running
        assert_nothing_stored(running)


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None: a text field
    content: bytes
    media_type: str | None = None

    def header_block(self) -> bytes:
        disposition = f'Content-Disposition: form-data; name="{self.name}"'
        if self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        lines = [disposition] + ([f"Content-Type: {self.media_type}"] if self.media_type else [])
        return "".join(line + "\r\n" for line in lines).encode()


def build_body(boundary: bytes, parts: list[Part]) -> bytes:
    body = b""
    for part in parts:
        body += b"--" + boundary + b"\r\n" + part.header_block() + b"\r\n" + part.content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


boundaries = st.builds(
    lambda head, tail: head + tail,
    st.text(alphabet=BCHARS + " ", max_size=40),
    st.text(alphabet=BCHARS, min_size=1, max_size=29),
)


@st.composite
def contents(draw: st.DrawFn, boundary: str) -> bytes:
    """Bytes that look like framing: CR, LF, dashes, the boundary and its prefixes."""
    pieces = [b"\r", b"\n", b"\r\n", b"--", b"-", b"\r\n\r\n", boundary.encode(),
              b"--" + boundary.encode(), b"\r\n--" + boundary.encode()[:-1],
              b"\r\n--" + boundary.encode() + b"x", b"\x00", b"\xff"]
    tokens = draw(st.lists(st.one_of(st.sampled_from(pieces), st.binary(max_size=24)), max_size=24))
    content = b"".join(tokens)
    # RFC 2046 §5.1.1: a delimiter is CRLF "--" boundary; the content cannot hold one.
    assume(b"\r\n--" + boundary.encode() not in b"\r\n" + content)
    return content


@st.composite
def forms(draw: st.DrawFn) -> tuple[bytes, list[Part]]:
    boundary = draw(boundaries)
    count = draw(st.integers(min_value=1, max_value=6))
    parts = []
    for _ in range(count):
        name = draw(st.text(alphabet=SAFE_NAME, min_size=1, max_size=12))
        if draw(st.booleans()):
            filename = draw(st.text(alphabet=SAFE_NAME + ".", min_size=1, max_size=20).filter(
                lambda n: n not in {".", ".."}))
            parts.append(Part(name, filename, draw(contents(boundary)), draw(st.sampled_from(MEDIA_TYPES))))
        else:
            value = draw(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40))
            assume(b"\r\n--" + boundary.encode() not in b"\r\n" + value.encode())
            parts.append(Part(name, None, value.encode()))
    return boundary.encode(), parts


def split_points(body_length: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(min_value=0, max_value=body_length), max_size=6).map(sorted)


def chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges) if b > a]


def post(app: InProcessApp, content_type: bytes, chunks: list[bytes], *, disconnect: bool = False) -> Answer:
    size = sum(map(len, chunks))
    return app.request("POST", "/uploads", chunks=chunks, disconnect=disconnect,
                       headers=[(b"content-type", content_type), (b"content-length", str(size).encode())])


def expected_media_type(part: Part) -> str:
    """The part's Content-Type when it says something, else a guess from its filename."""
    assert part.filename is not None
    if part.media_type is None or part.media_type == "application/octet-stream":
        return guessed_media_type(part.filename)
    return part.media_type


def expected_fields(parts: list[Part]) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {}
    for part in parts:
        if part.filename is None:
            value = part.content.decode()
            existing = fields.get(part.name)
            if existing is None:
                fields[part.name] = value
            elif isinstance(existing, list):
                existing.append(value)
            else:
                fields[part.name] = [existing, value]
    return fields


@given(form=forms(), data=st.data())
@examples(1500)
def test_well_formed_forms_are_stored_exactly_in_any_chunking(app: InProcessApp, form: tuple[bytes, list[Part]],
                                                              data: st.DataObject) -> None:
    boundary, parts = form
    body = build_body(boundary, parts)
    quoted = data.draw(st.booleans())
    content_type = b"multipart/form-data; boundary=" + (b'"' + boundary + b'"' if quoted or b" " in boundary
                                                        else boundary)
    answer = post(app, content_type, chunked(body, data.draw(split_points(len(body)))))
    files = [p for p in parts if p.filename is not None]
    # Fields the service interprets (digests, metadata) are not generated here.
    assert all(not p.name.endswith(".sha256") and p.name != "metadata" for p in parts)
    if not files:
        assert (answer.status, answer.json()["error"]) == (400, "no_files")
    else:
        assert answer.status == 201, answer.body
        assert answer.json()["fields"] == expected_fields(parts)
        check_and_remove_created(app, answer, [(p.filename, p.content) for p in files],
                                 media_types=[expected_media_type(p) for p in files])
    assert_nothing_stored(app)


MUTATION_TOKENS = [b"\r\n", b"\r", b"\n", b"--", b"\x00", b"\xff\xfe", b" ", b"\t", b";", b'"',
                   b"Content-Disposition: form-data; name=x; filename=y\r\n",
                   b"Content-Type: text/plain\r\n", b"\r\n\r\n", b"filename*=UTF-8''%E2%82%AC.txt"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes, list[bytes], bool]:
    """(boundary, content type, chunks, disconnect) after 1-4 random edits of a good form."""
    boundary, parts = draw(forms())
    body = build_body(boundary, parts)
    delimiters = [b"--" + boundary, b"\r\n--" + boundary, b"\r\n--" + boundary + b"--",
                  b"\r\n--" + boundary + b"\r\n", b"--" + boundary + b"--\r\n"]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(body)))
        edit = draw(st.sampled_from(["truncate", "insert", "delete", "repeat", "replace", "strip_crlf"]))
        if edit == "truncate":
            body = body[:at]
        elif edit == "insert":
            token = draw(st.one_of(st.sampled_from(MUTATION_TOKENS + delimiters), st.binary(max_size=16)))
            body = body[:at] + token + body[at:]
        elif edit == "delete":
            body = body[:at] + body[at + draw(st.integers(min_value=1, max_value=40)):]
        elif edit == "repeat":
            end = at + draw(st.integers(min_value=1, max_value=80))
            body = body[:end] + body[at:end] + body[end:]
        elif edit == "replace" and at < len(body):
            body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]
        elif edit == "strip_crlf":
            index = body.find(b"\r\n", at)
            if index >= 0:
                body = body[:index] + body[index + 2:]
    content_type = b"multipart/form-data; boundary=" + draw(st.sampled_from(
        [boundary, b'"' + boundary + b'"', boundary[:-1] or b"x", boundary + b"x",
         boundary + b"; boundary=" + boundary, b""]))
    if b" " in boundary and content_type.endswith(boundary):
        content_type = content_type[: -len(boundary)] + b'"' + boundary + b'"'
    disconnect = draw(st.integers(min_value=0, max_value=9)) == 0
    return boundary, content_type, chunked(body, draw(split_points(len(body)))), disconnect


def sent_boundary(content_type: bytes) -> bytes | None:
    match = re.fullmatch(rb'multipart/form-data; boundary=("?)([^";]+)\1', content_type)
    return match.group(2) if match else None


@given(case=mutated())
@examples(3000)
def test_mutated_forms_get_a_4xx_or_exactly_what_an_independent_parser_reads(
        app: InProcessApp, case: tuple[bytes, bytes, list[bytes], bool]) -> None:
    _boundary, content_type, chunks, disconnect = case
    note(f"content type {content_type!r}, body {b''.join(chunks)!r}, disconnect {disconnect}")
    answer = post(app, content_type, chunks, disconnect=disconnect)
    assert_error_or_created(answer)
    if answer.status == 201:
        note(f"stored: {answer.json()}")
        try:
            assert not disconnect, "a request whose client went away was stored"
            boundary = sent_boundary(content_type)
            assert boundary is not None, content_type
            oracle = oracle_parse(boundary, b"".join(chunks))
            assert oracle is not None, "ingest stored a body python-multipart finds incomplete or malformed"
            files = [p for p in oracle if p.filename is not None and (p.filename or p.content)]
            assert len(answer.json()["files"]) == len(files)
            check_and_remove_created(app, answer, [(clean_filename(p.filename), p.content) for p in files])
        finally:
            # Delete what was stored even when an assertion failed, so that one failure does
            # not make every following example fail as well.
            for stored in answer.json()["files"]:
                delete_stored(app, stored["id"], statuses=frozenset({204, 404}))
    assert_nothing_stored(app)


# --- part headers: Content-Disposition, filename*, Content-Type, Content-Digest --------------

HEADER_PIECES = [*list("ab=;\"\\ '*%/\t.:,-_"), "\u00e9", "\u202e", "\x00", "\x7f", "\r", "\n", "name",
                 "filename", "filename*", "UTF-8''", "%C3%A9", "%FF", "form-data", "../", "..\\", "C:\\"]
header_text = st.lists(st.sampled_from(HEADER_PIECES),
                       max_size=30).map("".join)


@given(disposition=header_text, extra=st.lists(st.tuples(
    st.sampled_from(["Content-Type", "Content-Digest", "Content-Disposition", "X-Thing", "content-type", "Bad Name",
                     ""]), header_text), max_size=3), content=st.binary(max_size=64))
@examples(1500)
def test_arbitrary_part_headers_get_a_4xx_or_a_correct_201(app: InProcessApp, disposition: str,
                                                           extra: list[tuple[str, str]], content: bytes) -> None:
    lines = [f"Content-Disposition: form-data; name=\"f\"; {disposition}"] + [f"{k}: {v}" for k, v in extra]
    head = "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogatepass")
    body = b"--XyZ\r\n" + head + b"\r\n" + content + b"\r\n--XyZ--\r\n"
    answer = post(app, b"multipart/form-data; boundary=XyZ", [body])
    assert_error_or_created(answer)
    if answer.status == 201:
        (stored,) = answer.json()["files"]
        name = stored["filename"]
        assert name and "/" not in name and "\\" not in name and name not in {".", ".."}
        assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
        check_and_remove_created(app, answer, [(name, content)])
    else:
        assert answer.json()["error"] in {"malformed_multipart", "invalid_filename", "invalid_digest",
                                          "digest_mismatch", "no_files"}, answer.body
    assert_nothing_stored(app)


PARAMETER_PIECES = [*list('; ="\\,'), "boundary", "BOUNDARY", "charset=utf-8", "XyZ", "x" * 71, "\u00e9", "\t"]


@given(parameters=st.lists(st.sampled_from(PARAMETER_PIECES),
                           max_size=12).map("".join))
@examples(500)
def test_any_content_type_parameters_get_a_4xx_or_a_201(app: InProcessApp, parameters: str) -> None:
    body = b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nabc\r\n--XyZ--\r\n'
    answer = post(app, b"multipart/form-data" + parameters.encode(), [body])
    assert_error_or_created(answer)
    if answer.status == 201:
        check_and_remove_created(app, answer, [("a", b"abc")], media_types=["application/octet-stream"])
    else:
        assert answer.json()["error"] in {"malformed_multipart", "unsupported_media_type"}, answer.body
    assert_nothing_stored(app)


# --- exhaustive and large cases -----------------------------------------------------------

EVERY_POSITION_BODY = build_body(b"b0undary", [
    Part("note", None, b"hello"),
    Part("file", "a.txt", b"one\r\n--b0undar\r\ntwo\r", "text/plain"),
    Part("file", "b.bin", b"\r\n\r\n--\r\n"),
])


@pytest.mark.parametrize("disconnect", [False, True])
def test_a_body_cut_at_every_position_is_refused_and_leaves_nothing(app: InProcessApp, disconnect: bool) -> None:
    # The closing delimiter is "--b0undary--"; the CRLF after it is epilogue (RFC 2046 §5.1.1),
    # so only cuts before its last byte make the body incomplete.
    for end in range(len(EVERY_POSITION_BODY) - 2):
        answer = post(app, b"multipart/form-data; boundary=b0undary", [EVERY_POSITION_BODY[:end]],
                      disconnect=disconnect)
        assert 400 <= answer.status < 500, (end, answer.body)
        assert answer.json()["error"] in {"malformed_multipart", "client_disconnected", "no_files"}
        assert_nothing_stored(app)


def test_the_whole_body_in_one_byte_chunks_is_stored_exactly(app: InProcessApp) -> None:
    body = EVERY_POSITION_BODY
    answer = post(app, b"multipart/form-data; boundary=b0undary", [body[i:i + 1] for i in range(len(body))])
    assert answer.status == 201
    check_and_remove_created(app, answer, [("a.txt", b"one\r\n--b0undar\r\ntwo\r"), ("b.bin", b"\r\n\r\n--\r\n")])
    assert_nothing_stored(app)


@pytest.mark.parametrize("where", ["disposition", "extra_header", "preamble"])
def test_a_header_line_of_one_mib_is_refused(app: InProcessApp, where: str) -> None:
    long_value = b"a" * (1024 * 1024)
    if where == "disposition":
        head = b'Content-Disposition: form-data; name="f"; filename="' + long_value + b'"\r\n'
        body = b"--XyZ\r\n" + head + b"\r\nabc\r\n--XyZ--\r\n"
    elif where == "extra_header":
        head = b'Content-Disposition: form-data; name="f"; filename="a"\r\nX-Long: ' + long_value + b"\r\n"
        body = b"--XyZ\r\n" + head + b"\r\nabc\r\n--XyZ--\r\n"
    else:
        body = long_value + b"\r\n--XyZ\r\n"
    answer = post(app, b"multipart/form-data; boundary=XyZ", [body[i:i + 65536] for i in range(0, len(body), 65536)])
    assert (answer.status, answer.json()["error"]) == (400, "malformed_multipart")
    assert_nothing_stored(app)


def test_thousands_of_parts_are_cut_off_at_max_parts(app: InProcessApp) -> None:
    parts = [Part(f"f{i}", f"n{i}", b"x") for i in range(5000)]
    body = build_body(b"XyZ", parts)
    answer = post(app, b"multipart/form-data; boundary=XyZ", [body[i:i + 65536] for i in range(0, len(body), 65536)])
    assert (answer.status, answer.json()["error"]) == (413, "too_many_parts")
    assert_nothing_stored(app)


def test_thousands_of_empty_fields_are_cut_off_at_max_parts(app: InProcessApp) -> None:
    body = build_body(b"XyZ", [Part("a", "a", b"")] + [Part("", None, b"")] * 3000)
    answer = post(app, b"multipart/form-data; boundary=XyZ", [body])
    assert (answer.status, answer.json()["error"]) == (400, "malformed_multipart")
    assert_nothing_stored(app)


def test_max_parts_parts_with_empty_contents_are_accepted(app: InProcessApp) -> None:
    parts = [Part("f", f"{i}.bin", b"") for i in range(32)] + [Part(f"k{i}", None, b"") for i in range(32)]
    answer = post(app, b"multipart/form-data; boundary=XyZ", [build_body(b"XyZ", parts)])
    assert answer.status == 201
    assert answer.json()["fields"] == {f"k{i}": "" for i in range(32)}
    check_and_remove_created(app, answer, [(f"{i}.bin", b"") for i in range(32)])
    assert_nothing_stored(app)


def test_a_declared_length_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync=False, max_request_size=1000)
    with InProcessApp(settings) as small:
        body = build_body(b"XyZ", [Part("f", "a", b"x" * 2000)])
        answer = small.request("POST", "/uploads", chunks=[body], headers=[
            (b"content-type", b"multipart/form-data; boundary=XyZ"), (b"content-length", b"999999")])
        assert (answer.status, answer.json()["error"]) == (413, "request_too_large")
        chunked_answer = small.request("POST", "/uploads", chunks=[body[:600], body[600:]], headers=[
            (b"content-type", b"multipart/form-data; boundary=XyZ"), (b"transfer-encoding", b"chunked")])
        assert (chunked_answer.status, chunked_answer.json()["error"]) == (413, "request_too_large")
        assert_nothing_stored(small)


@given(length=st.text(alphabet="0123456789-+ x.e", max_size=12))
@examples(200)
def test_any_content_length_value_gets_a_4xx_or_a_201(app: InProcessApp, length: str) -> None:
    body = b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nabc\r\n--XyZ--\r\n'
    answer = app.request("POST", "/uploads", chunks=[body], headers=[
        (b"content-type", b"multipart/form-data; boundary=XyZ"), (b"content-length", length.encode())])
    assert_error_or_created(answer)
    if answer.status == 201:
        check_and_remove_created(app, answer, [("a", b"abc")])
    else:
        assert answer.json()["error"] in {"invalid_request", "request_too_large", "length_required"}, answer.body
    assert_nothing_stored(app)


def test_metadata_and_digest_fields_that_are_garbage_get_400(app: InProcessApp) -> None:
    for name, value in [("metadata", "[1]"), ("metadata", "{"), ("f.sha256", "zz"), ("f.sha256", "")]:
        body = build_body(b"XyZ", [Part("f", "a", b"abc"), Part(name, None, value.encode())])
        answer = post(app, b"multipart/form-data; boundary=XyZ", [body])
        assert answer.status == 400, (name, value, answer.body)
        assert json.loads(answer.body)["error"] in {"invalid_metadata", "invalid_digest"}
        assert_nothing_stored(app)
