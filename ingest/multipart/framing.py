"""A guard in front of streaming-form-data: finds part boundaries and header blocks itself.

streaming-form-data 2.1.0 parses bodies fast but is unsafe on its own (see README,
"Multipart guard"): a truncated body raises nothing, bytes after the closing delimiter can
leak into the last part, header lines are unbounded, non-UTF-8 headers raise a bare
UnicodeDecodeError and it records the wrong filename or media type for some parts.

`MultipartFraming` reads the same byte stream first, using `bytes.find` (C speed), and
- passes the parser only the bytes from the first delimiter through the closing one,
  dropping preamble and epilogue, so the parser never sees bytes after the end;
- bounds and parses each part's header block itself (strict RFC 7578), so filename,
  media type and digest come from here, never from the parser;
- cuts the stream into segments that each end a few bytes past a header block, so the
  caller can check that the parser started exactly the part the guard saw. Not at the
  block's end itself: streaming-form-data 2.1.0 fails ("internal errors") on a part after
  the first whose body opens with "--" and a prefix of the boundary when a call starts
  inside that opening; each header block therefore goes to the parser together with the
  first len("--boundary") + 2 bytes of its body;
- knows whether the closing delimiter arrived, so a truncated body is an error.
It knows nothing about HTTP or storage.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.errors import MalformedMultipart, TooManyParts

# RFC 2046 §5.1.1: 1 to 70 characters from bchars; no CR, so "\r" starts a delimiter only.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CRLF = b"\r\n"
_HEADERS_END = b"\r\n\r\n"
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})


@dataclass(frozen=True)
class PartHeaders:
    """What one part's header block says, parsed by us rather than by streaming-form-data."""

    name: str
    filename: str | None  # None: a text field; "" : a file input left empty by a browser
    content_type: str | None
    content_digest: str | None


@dataclass(frozen=True)
class Segment:
    """Bytes to feed the parser; `headers` is set when the segment holds the end of a part's
    header block (and the opening bytes of its body)."""

    data: bytes
    headers: PartHeaders | None


def boundary_from_content_type(content_type: str) -> bytes:
    """The boundary parameter of a multipart/form-data Content-Type, validated."""
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "multipart/form-data":
        raise MalformedMultipart("Content-Type is not multipart/form-data")
    parsed = _parse_params(params, header="Content-Type")
    boundary = parsed.get("boundary")
    if boundary is None:
        raise MalformedMultipart("multipart Content-Type has no boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        raise MalformedMultipart("boundary must be 1-70 characters of RFC 2046 bchars")
    return boundary.encode("ascii")


class MultipartFraming:
    _PREAMBLE, _HEADERS, _BODY, _DONE = range(4)

    def __init__(self, boundary: bytes, *, max_header_size: int, max_parts: int) -> None:
        self._dash_boundary = b"--" + boundary
        self._delimiter = _CRLF + self._dash_boundary  # starts every delimiter inside the body
        self._max_header_size = max_header_size
        self._max_parts = max_parts
        self._state = self._PREAMBLE
        self._carry = b""  # unclassified bytes: a possible delimiter start, or preamble
        self._header_block = bytearray()
        self._held = b""  # header bytes not yet handed to the parser
        self._pending: PartHeaders | None = None  # a complete block held for its body's opening
        self._opening_size = len(self._dash_boundary) + len(_CRLF)
        self._opening_missing = 0  # body bytes still to add to the held block
        self.parts_seen = 0
        self.body_bytes = 0  # bytes classified as part bodies so far (all parts)

    @property
    def complete(self) -> bool:
        """True once the closing delimiter has been seen."""
        return self._state == self._DONE

    def passthrough(self, chunk: bytes) -> bool:
        """True when `chunk` is wholly body of the current part: it holds no delimiter, and
        nothing before it or at its end may start one. Such a chunk changes nothing here or in
        the parser; the caller hands it on to the part's sink itself (see multipart.py).
        Two searches at C speed, and no state changes: the fast path for almost every chunk.
        """
        if (self._state != self._BODY or self._carry or self._pending is not None
                or chunk.find(self._delimiter) >= 0):
            return False
        # A delimiter starts with CR and holds no other: only the last CR may start one.
        last_cr = chunk.rfind(b"\r", max(0, len(chunk) - len(self._delimiter) + 1))
        return last_cr < 0 or not self._delimiter.startswith(chunk[last_cr:])

    def feed(self, chunk: bytes) -> Iterator[Segment]:
        """Split `chunk` into the segments to feed the parser, in order.

        Header bytes are held back until their block is complete and valid, so the parser
        only ever sees header lines we accepted, each block in one piece.
        """
        position = 0  # bytes of `chunk` already classified
        if self._state == self._PREAMBLE:
            chunk, position = self._skip_preamble(chunk)
        cursor = 0  # bytes of `chunk` already handed out
        if self._pending is not None:
            cursor, segment = self._hold_opening(chunk, 0)
            if segment is not None:
                yield segment
        header_start = position  # where the current header block's bytes begin in `chunk`
        while position < len(chunk) and self._state != self._DONE:
            if self._state == self._HEADERS:
                position, headers = self._read_headers(chunk, position)
                if headers is None:
                    break
                self._held += chunk[cursor:position]
                self._pending, self._opening_missing = headers, self._opening_size
                cursor, segment = self._hold_opening(chunk, position)
                if segment is not None:
                    yield segment
            else:
                position = self._read_body(chunk, position)
                header_start = position
        if self._state == self._HEADERS:
            self._held += chunk[header_start:]
            end = header_start
        else:
            end = position if self._state == self._DONE else len(chunk)
        if end > cursor:
            yield Segment(chunk[cursor:end], None)

    def _hold_opening(self, chunk: bytes, cursor: int) -> tuple[int, Segment | None]:
        """Add the body's opening bytes from `chunk[cursor:]` to the held header block;
        return the new cursor and, once the opening is complete, the segment to feed.

        A delimiter and the CRLF or "--" after it are longer than the opening, so the next
        part never starts inside it.
        """
        taken = chunk[cursor:cursor + self._opening_missing]
        self._held += taken
        self._opening_missing -= len(taken)
        if self._opening_missing:
            return cursor + len(taken), None
        segment = Segment(self._held, self._pending)
        self._held, self._pending = b"", None
        return cursor + len(taken), segment

    def _skip_preamble(self, chunk: bytes) -> tuple[bytes, int]:
        """Drop any preamble; return the body from its first "--boundary" and the position
        just past that opening delimiter (the parser gets the delimiter, we classify past it).
        """
        window = self._carry + chunk
        start = 0 if window.startswith(self._dash_boundary) else window.find(self._delimiter)
        if start < 0:
            if len(window) > self._max_header_size:
                raise MalformedMultipart("no multipart boundary found at the start of the body")
            self._carry = window
            return b"", 0
        if start > 0:
            start += len(_CRLF)  # the parser wants the body to open with "--boundary"
        after = start + len(self._dash_boundary)
        if len(window) < after + 2:
            self._carry = window
            return b"", 0
        if window[after:after + 2] == b"--":
            raise MalformedMultipart("multipart body has no parts")
        if window[after:after + 2] != _CRLF:
            raise MalformedMultipart("first boundary is not followed by CRLF")
        self._carry = b""
        self._begin_part()
        return window[start:], after + 2 - start

    def _begin_part(self) -> None:
        self.parts_seen += 1
        if self.parts_seen > self._max_parts:
            raise TooManyParts(f"more than {self._max_parts} parts in one request")
        self._state = self._HEADERS
        self._header_block.clear()

    def _read_headers(self, chunk: bytes, position: int) -> tuple[int, PartHeaders | None]:
        room = self._max_header_size - len(self._header_block) + len(_HEADERS_END)
        taken = chunk[position:position + room]
        search_from = max(0, len(self._header_block) - len(_HEADERS_END) + 1)
        self._header_block += taken
        if self._header_block.startswith(_CRLF):
            end = 0
        else:
            found = self._header_block.find(_HEADERS_END, search_from)
            end = found + len(_CRLF) if found >= 0 else -1  # the lines, each with its CRLF
        if end < 0:
            if len(self._header_block) > self._max_header_size:
                raise MalformedMultipart(
                    f"part headers are longer than {self._max_header_size} bytes")
            return position + len(taken), None
        consumed = end + len(_CRLF) - (len(self._header_block) - len(taken))
        headers = parse_part_headers(bytes(self._header_block[:end]))
        self._header_block.clear()
        self._state = self._BODY
        return position + consumed, headers

    def _read_body(self, chunk: bytes, position: int) -> int:
        """Classify body bytes from `position`; stop after a delimiter or at the chunk end."""
        carry = self._carry
        window = carry + chunk[position:] if carry else chunk[position:] if position else chunk
        offset = position - len(carry)  # window index + offset = chunk index
        search_from = 0
        while True:
            found = window.find(self._delimiter, search_from)
            if found < 0:
                self._carry = _possible_delimiter_start(window, self._delimiter)
                self.body_bytes += len(window) - len(self._carry)
                return len(chunk)
            after = found + len(self._delimiter)
            if len(window) < after + 2:
                self._carry = window[found:]
                self.body_bytes += found
                return len(chunk)
            follows = window[after:after + 2]
            if follows == _CRLF:
                self._carry = b""
                self.body_bytes += found
                self._begin_part()
                return after + 2 + offset
            if follows == b"--":
                self._carry = b""
                self.body_bytes += found
                self._state = self._DONE
                return after + 2 + offset
            search_from = found + 1  # "--boundaryX": data that only looks like a boundary


def _possible_delimiter_start(window: bytes, delimiter: bytes) -> bytes:
    """The suffix of `window` that may begin a delimiter completed by the next chunk.

    A delimiter starts with CR and holds no other CR, so only the last CR can start one, and
    only if what follows it starts the delimiter. Checking that keeps the carry (and the copy
    of the next chunk it costs) for the few chunks that end in a real delimiter prefix,
    rather than for every chunk with a CR among its last bytes (one in six of random data).
    """
    last_cr = window.rfind(b"\r", max(0, len(window) - len(delimiter) + 1))
    if last_cr < 0 or not delimiter.startswith(window[last_cr:]):
        return b""
    return window[last_cr:]


def parse_part_headers(block: bytes) -> PartHeaders:
    """Parse one part's header block (lines ending in CRLF) strictly, per RFC 7578."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMultipart("part headers are not valid UTF-8") from None
    disposition: str | None = None
    content_type: str | None = None
    content_digest: str | None = None
    for line in text.split("\r\n")[:-1] if text else []:
        if "\r" in line or "\n" in line:
            raise MalformedMultipart("part header line contains a bare CR or LF")
        if line[:1] in (" ", "\t"):
            raise MalformedMultipart("folded part header lines are not allowed")
        field_name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(field_name):
            raise MalformedMultipart(f"malformed part header line {line[:80]!r}")
        lowered = field_name.lower()
        if lowered == "content-disposition":
            if disposition is not None:
                raise MalformedMultipart("part has more than one Content-Disposition")
            disposition = value.strip()
        elif lowered == "content-type":
            if content_type is not None:
                raise MalformedMultipart("part has more than one Content-Type")
            content_type = value.strip()
        elif lowered == "content-digest":
            content_digest = value.strip()
        elif lowered == "content-transfer-encoding":
            # RFC 7578 §4.7: deprecated for form-data; a part's bytes are its content. Storing
            # base64 or quoted-printable text as the file would be the one wrong answer.
            encoding = value.strip().lower()
            if encoding not in _IDENTITY_ENCODINGS:
                raise MalformedMultipart(
                    f"part has Content-Transfer-Encoding {value.strip()[:40]!r}; only 7bit, 8bit "
                    "or binary are accepted (RFC 7578 §4.7): send the bytes themselves")
    if disposition is None:
        raise MalformedMultipart("part has no Content-Disposition header")
    kind, _, params_text = disposition.partition(";")
    if kind.strip().lower() != "form-data":
        raise MalformedMultipart("part Content-Disposition is not form-data")
    params = _parse_params(params_text, header="Content-Disposition")
    name = params.get("name")
    if not name:
        raise MalformedMultipart("part Content-Disposition has no name")
    filename = params.get("filename")
    extended = params.get("filename*")
    if extended is not None:
        # RFC 7578 §4.2 forbids filename* in form-data, but some clients send it alone or
        # beside an ASCII fallback; as RFC 6266 §4.3 says for both present, it wins.
        filename = _decode_ext_value(extended)
    return PartHeaders(name=name, filename=filename, content_type=content_type,
                       content_digest=content_digest)


_PARAM = re.compile(r'\s*;\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;"\s]*))\s*')


def _parse_params(text: str, *, header: str) -> dict[str, str]:
    """`; key=value; key="quoted"` -> dict; keys lower-cased, duplicates refused.

    In quoted values only `\\"` and `\\\\` are escapes: browsers send Windows paths with bare
    backslashes (`C:\\dir\\x.txt`), which must survive to have their path stripped.
    """
    params: dict[str, str] = {}
    position = 0
    text = text.rstrip()
    if text and not text.lstrip().startswith(";"):
        text = ";" + text
    while position < len(text):
        match = _PARAM.match(text, position)
        if not match:
            raise MalformedMultipart(f"malformed {header} parameters")
        key = match.group(1).lower()
        if key in params:
            raise MalformedMultipart(f"{header} repeats the parameter {key!r}")
        quoted, bare = match.group(2), match.group(3)
        params[key] = re.sub(r'\\(["\\])', r"\1", quoted) if quoted is not None else bare
        position = match.end()
    return params


def _decode_ext_value(value: str) -> str:
    """RFC 8187 ext-value: charset'language'percent-encoded bytes."""
    charset, quote1, rest = value.partition("'")
    _language, quote2, encoded = rest.partition("'")
    if not quote1 or not quote2 or charset.lower() not in {"utf-8", "iso-8859-1"}:
        raise MalformedMultipart("filename* is not a valid RFC 8187 value")
    try:
        return urllib.parse.unquote(encoded, encoding=charset.lower(), errors="strict")
    except UnicodeDecodeError:
        raise MalformedMultipart("filename* does not decode in its charset") from None
