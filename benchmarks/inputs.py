"""Input files of random bytes, made once and cached under benchmarks/.cache between runs."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class InputFile:
    path: Path
    size: int
    sha256: str


def random_input(size: int, cache_dir: Path = CACHE_DIR) -> InputFile:
    """A file of `size` random bytes and its sha256; reused when already made.

    The digest is kept beside the file and written last, so a half-made file (interrupted
    run) has no digest and is made again.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"random-{size}.bin"
    digest_path = path.with_suffix(".sha256")
    if path.exists() and digest_path.exists() and path.stat().st_size == size:
        return InputFile(path, size, digest_path.read_text().strip())
    digest_path.unlink(missing_ok=True)
    digest = hashlib.sha256()
    seed = os.urandom(_BLOCK)
    with path.open("wb") as out:
        written = 0
        index = 0
        while written < size:
            # A fresh 8-byte counter at the front of every 4 MiB block: no two blocks alike,
            # at the cost of one urandom call per file, not per block.
            block = (index.to_bytes(8, "big") + seed[8:])[: size - written]
            digest.update(block)
            out.write(block)
            written += len(block)
            index += 1
    digest_path.write_text(digest.hexdigest() + "\n")
    return InputFile(path, size, digest.hexdigest())


def crlf_dense_body(size: int, boundary: bytes, cache_dir: Path = CACHE_DIR) -> tuple[InputFile, str]:
    """A multipart/form-data body whose one file part is `size` bytes of boundary near-misses.

    Every line is CRLF + "--" + the boundary with its last byte changed: the worst case for a
    parser that looks for the delimiter at each CR (RFC 2046 §5.1.1 delimiters start with
    CRLF "--"). Returns the body file (its sha256 is the *file part's*) and the Content-Type.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    near_miss = b"\r\n--" + boundary[:-1] + (b"Y" if boundary[-1:] != b"Y" else b"Z")
    unit = near_miss * (65536 // len(near_miss) + 1)
    content_digest = hashlib.sha256()
    path = cache_dir / f"crlf-dense-{size}.body"
    digest_path = path.with_suffix(".sha256")
    content_type = "multipart/form-data; boundary=" + boundary.decode()
    if path.exists() and digest_path.exists():
        return InputFile(path, path.stat().st_size, digest_path.read_text().strip()), content_type
    with path.open("wb") as out:
        out.write(b"--" + boundary + b"\r\n"
                  b'Content-Disposition: form-data; name="file"; filename="dense.bin"\r\n'
                  b"Content-Type: application/octet-stream\r\n\r\n")
        written = 0
        while written < size:
            piece = unit[: size - written]
            content_digest.update(piece)
            out.write(piece)
            written += len(piece)
        out.write(b"\r\n--" + boundary + b"--\r\n")
    digest_path.write_text(content_digest.hexdigest() + "\n")
    return InputFile(path, path.stat().st_size, content_digest.hexdigest()), content_type


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
