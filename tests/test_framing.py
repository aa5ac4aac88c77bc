"""ingest/multipart/framing.py: the guard in front of streaming-form-data.

Its own API first (what it hands the parser, what it parses itself, when a body is complete),
then the hazards it exists for, through the whole multipart path so that "nothing is kept"
is checked too: preamble and epilogue, truncation, header blocks that are overlong, not
UTF-8, malformed or in an unusual order, boundary parameters, Content-Transfer-Encoding.
"""

from __future__ import annotations

import time

import pytest

from ingest.config import Settings
from ingest.errors import IngestError, MalformedMultipart, TooManyParts
from ingest.multipart.framing import MultipartFraming, PartHeaders, boundary_from_content_type, parse_part_headers
from ingest.uploads import UploadService
from tests.conftest import (
    FORM,
    FORM_CONTENT,
    assert_nothing_kept,
    file_part,
    multipart_body,
    read_stored,
    receive_multipart,
    sha256,
)

pytestmark = pytest.mark.anyio
BOUNDARY = b"b0undary"


def framing(*, max_header_size: int = 1024, max_parts: int = 16) -> MultipartFraming:
    return MultipartFraming(BOUNDARY, max_header_size=max_header_size, max_parts=max_parts)


# --- the framing guard's own API ---------------------------------------------------------------

def test_the_parser_gets_exactly_the_bytes_from_the_first_delimiter_through_the_closing_one() -> None:
    guard = framing()
    segments = list(guard.feed(b"a preamble\r\n" + FORM + b"an epilogue"))
    assert b"".join(segment.data for segment in segments) == FORM.removesuffix(b"\r\n")
    assert guard.complete


def test_the_body_is_complete_only_once_the_closing_delimiter_arrived() -> None:
    guard = framing()
    list(guard.feed(FORM[:-5]))
    assert not guard.complete
    list(guard.feed(FORM[-5:]))
    assert guard.complete


def test_each_header_block_goes_out_whole_with_its_parsed_headers_and_its_body_opening() -> None:
    guard = framing()
    segments = [segment for chunk in (FORM[i:i + 7] for i in range(0, len(FORM), 7)) for segment in guard.feed(chunk)]
    headed = [segment for segment in segments if segment.headers is not None]
    assert [segment.headers for segment in headed] == [
        PartHeaders(name="note", filename=None, content_type=None, content_digest=None),
        PartHeaders(name="file", filename="a.txt", content_type="text/plain", content_digest=None),
        PartHeaders(name="file", filename="b.bin", content_type="application/x-thing", content_digest=None)]
    opening = len(b"--" + BOUNDARY) + 2
    assert headed[1].data.endswith(b"Content-Type: text/plain\r\n\r\n" + FORM_CONTENT[:opening])
    assert headed[2].data.endswith(b"\r\n\r\n" + (b"\x00\r\n" * 50)[:opening])


def test_body_bytes_counts_every_parts_body_and_no_delimiter() -> None:
    guard = framing()
    list(guard.feed(FORM))
    assert guard.body_bytes == len(b"hello") + len(FORM_CONTENT) + len(b"\x00\r\n" * 50)
    assert guard.parts_seen == 3


def test_passthrough_takes_only_chunks_that_cannot_hold_or_start_a_delimiter() -> None:
    guard = framing()
    assert not guard.passthrough(b"plain bytes")  # before the first delimiter: preamble
    list(guard.feed(multipart_body([file_part("f", "a.bin", b"x" * 100)])[:90]))
    assert guard.passthrough(b"plain bytes")
    assert guard.passthrough(b"--b0undary with no CR before it is data")
    assert not guard.passthrough(b"data\r\n--b0undary\r\nmore")
    assert not guard.passthrough(b"data ending in a delimiter's start\r\n--b0un")


def test_parts_beyond_max_parts_are_refused_as_they_begin() -> None:
    guard = framing(max_parts=2)
    with pytest.raises(TooManyParts):
        list(guard.feed(FORM))
    assert guard.parts_seen == 3


def test_a_field_has_no_filename_and_an_empty_file_input_an_empty_one() -> None:
    field = parse_part_headers(b'Content-Disposition: form-data; name="note"\r\n')
    empty = parse_part_headers(b'content-disposition: form-data; name="f"; filename=""\r\n')
    assert (field.name, field.filename) == ("note", None)
    assert (empty.name, empty.filename) == ("f", "")


def test_content_type_and_content_digest_part_headers_are_recorded() -> None:
    headers = parse_part_headers(b'Content-Disposition: form-data; name="f"; filename="p.bin"\r\n'
                                 b"Content-Type:  image/png \r\nContent-Digest: sha-256=:AAAA:\r\n")
    assert (headers.content_type, headers.content_digest) == ("image/png", "sha-256=:AAAA:")


@pytest.mark.parametrize(("content_type", "boundary"), [
    ("multipart/form-data; boundary=b0undary", b"b0undary"),
    ('Multipart/Form-Data; BOUNDARY="with space"', b"with space"),
    ("multipart/form-data; charset=utf-8; boundary=x", b"x"),
    ("multipart/form-data; boundary=" + "y" * 70, b"y" * 70),
])
def test_the_boundary_parameter_is_read_case_blind_and_unquoted(content_type: str, boundary: bytes) -> None:
    assert boundary_from_content_type(content_type) == boundary


# --- its hazards, through the whole multipart path ---------------------------------------------

@pytest.mark.parametrize("epilogue", [b"", b"\r\n", b"\r\n\r\n--b0undary\r\n", b"garbage after the end" * 100])
async def test_epilogue_in_the_same_chunk_never_reaches_the_last_part(
        upload_service: UploadService, settings: Settings, epilogue: bytes) -> None:
    body = multipart_body([file_part("file", "a.bin", b"last part bytes")]) + epilogue
    _, stored = await receive_multipart(upload_service, [body])
    assert read_stored(settings, stored[0]) == b"last part bytes"


async def test_body_cut_anywhere_before_the_closing_boundary_is_rejected_and_leaves_nothing(
        upload_service: UploadService, settings: Settings) -> None:
    closing = len(FORM) - len(b"\r\n")  # the CRLF after "--b0undary--" is optional epilogue
    for cut in range(closing):
        with pytest.raises(IngestError) as caught:
            await receive_multipart(upload_service, [FORM[:cut]])
        assert caught.value.status == 400, cut
        assert_nothing_kept(settings.data_dir)


async def test_preamble_before_the_first_boundary_is_ignored(upload_service: UploadService, settings: Settings) -> None:
    body = b"This is a preamble.\r\n" + multipart_body([file_part("f", "x.txt", b"abc")])
    _, stored = await receive_multipart(upload_service, [body])
    assert read_stored(settings, stored[0]) == b"abc"


async def test_overlong_part_header_is_refused_quickly(upload_service: UploadService, settings: Settings) -> None:
    endless_line = b"--b0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"" + b"a" * (1024 * 1024)
    started = time.monotonic()
    with pytest.raises(MalformedMultipart, match="part headers are longer"):
        await receive_multipart(upload_service, [endless_line[i:i + 1024] for i in range(0, len(endless_line), 1024)])
    assert time.monotonic() - started < 5
    assert_nothing_kept(settings.data_dir)


async def test_non_utf8_part_headers_are_a_400(upload_service: UploadService, settings: Settings) -> None:
    body = multipart_body([(b'Content-Disposition: form-data; name="f"; filename="\xff\xfe.bin"\r\n', b"x")])
    with pytest.raises(MalformedMultipart, match="not valid UTF-8"):
        await receive_multipart(upload_service, [body])
    assert_nothing_kept(settings.data_dir)


async def test_content_type_before_content_disposition_is_recorded(upload_service: UploadService) -> None:
    body = multipart_body([(b'Content-Type: image/png\r\nContent-Disposition: form-data; name="f"; '
                            b'filename="pic"\r\n', b"\x89PNG")])
    _, stored = await receive_multipart(upload_service, [body])
    assert stored[0].content_type == "image/png"


async def test_each_file_of_a_repeated_field_keeps_its_own_name_and_type(upload_service: UploadService) -> None:
    _, stored = await receive_multipart(upload_service, [FORM])
    assert [(s.filename, s.content_type) for s in stored] == [
        ("a.txt", "text/plain"), ("b.bin", "application/x-thing")]


@pytest.mark.parametrize(("disposition", "expected"), [
    (b'filename="plain.txt"; filename*=UTF-8\'\'%C3%A9t%C3%A9.txt', "\u00e9t\u00e9.txt"),
    (b"filename*=UTF-8''na%C3%AFve.txt", "na\u00efve.txt"),
    (b'filename="C:\\evil\\x.txt"', "x.txt"),
    (b'filename="../../etc/passwd"', "passwd"),
    (b'filename="/etc/shadow"', "shadow"),
    (b'filename="caf\xc3\xa9.txt"', "caf\u00e9.txt"),
    (b'filename="quote\\"d.txt"', 'quote"d.txt'),
])
async def test_filename_is_taken_from_the_right_parameter_and_stripped_of_paths(
        upload_service: UploadService, disposition: bytes, expected: str) -> None:
    body = multipart_body([(b'Content-Disposition: form-data; name="f"; ' + disposition + b"\r\n", b"x")])
    _, stored = await receive_multipart(upload_service, [body])
    assert stored[0].filename == expected


@pytest.mark.parametrize("headers", [
    b"Content-Type: text/plain\r\n",  # no Content-Disposition
    b"Content-Disposition: attachment; name=\"f\"\r\n",
    b"Content-Disposition: form-data; filename=\"x\"\r\n",  # no name
    b"Content-Disposition: form-data; name=\"\"; filename=\"x\"\r\n",
    b"Content-Disposition: form-data; name=\"f\"\r\nContent-Disposition: form-data; name=\"g\"\r\n",
    b"Content-Disposition: form-data; name=\"f\"; name=\"g\"\r\n",
    b"Content-Disposition: form-data;\r\n name=\"f\"\r\n",  # folded line
    b"no colon here\r\n",
    b"Content-Disposition: form-data; name=\"f\"; filename*=latin9''x\r\n",
])
async def test_malformed_part_headers_are_a_400_and_leave_nothing(
        upload_service: UploadService, settings: Settings, headers: bytes) -> None:
    body = multipart_body([file_part("ok", "ok.txt", b"fine"), (headers, b"x")])
    with pytest.raises(IngestError) as caught:
        await receive_multipart(upload_service, [body])
    assert caught.value.status == 400
    assert_nothing_kept(settings.data_dir)


@pytest.mark.parametrize("content_type", [
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=\"" + "x" * 71 + "\"",
    "multipart/form-data; boundary=a\rb",
    "text/plain; boundary=b0undary",
])
async def test_bad_boundary_parameter_is_a_400(upload_service: UploadService, content_type: str) -> None:
    with pytest.raises(MalformedMultipart):
        await receive_multipart(upload_service, [FORM], content_type=content_type)


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable", "x-uuencode", "BASE64", ""])
@pytest.mark.parametrize("on_field", [False, True])
async def test_content_transfer_encoding_other_than_identity_is_a_400_and_leaves_nothing(
        upload_service: UploadService, settings: Settings, encoding: str, on_field: bool) -> None:
    disposition = 'form-data; name="f"' if on_field else 'form-data; name="f"; filename="a.txt"'
    headers = f"Content-Disposition: {disposition}\r\nContent-Transfer-Encoding: {encoding}\r\n".encode()
    body = multipart_body([file_part("ok", "ok.txt", b"fine"), (headers, b"aGVsbG8=")])
    with pytest.raises(MalformedMultipart, match="Content-Transfer-Encoding"):
        await receive_multipart(upload_service, [body])
    assert_nothing_kept(settings.data_dir)


@pytest.mark.parametrize("encoding", ["7bit", "8bit", "binary", " Binary "])
async def test_identity_content_transfer_encodings_are_accepted(upload_service: UploadService, encoding: str) -> None:
    headers = (f'Content-Disposition: form-data; name="f"; filename="a.bin"\r\n'
               f"Content-Transfer-Encoding: {encoding}\r\n").encode()
    _, [stored] = await receive_multipart(upload_service, [multipart_body([(headers, b"\x00\xffbytes")])])
    assert stored.sha256 == sha256(b"\x00\xffbytes")

