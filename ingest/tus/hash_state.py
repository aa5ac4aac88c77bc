"""The running SHA-256 of a resumable upload, with a state that can be saved and restored.

A tus upload's SHA-256 is computed as its PATCHes arrive. hashlib cannot save a hash's state,
so a PATCH served by another process (a restart, another worker, another node of a scale-out
deployment) used to read the whole stored prefix back to rebuild it: 150 MiB from Ceph took
10.6 s. rehashes (RustCrypto's SHA-256 behind a Python API, maintained by CERT Polska for
the same purpose in MWDB) can serialize its state: 104 bytes, saved with the upload's state
after each PATCH, so any process continues where the last one stopped. It costs the same CPU
per byte as hashlib's OpenSSL and releases the GIL while hashing (measured; README
"Resumable uploads"). The older `rehash` package pickles OpenSSL's private structures and
refuses OpenSSL 3, so it is not an option.

rehashes ships wheels for Linux only; elsewhere hashlib is used and the prefix is re-read
when needed, as before. A saved state is tagged with the library version that wrote it
(rehashes only promises to read states of its own version) and ignored when it differs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from importlib import metadata
from typing import Any

try:
    from rehashes import PySha256
except ImportError:  # no wheel for this platform
    PySha256 = None

STATE_TAG = f"rehashes-{metadata.version('rehashes')}" if PySha256 is not None else ""


class UploadHash:
    """SHA-256 with hashlib's `update`/`hexdigest`/`copy`, and `saved` state where possible."""

    def __init__(self, inner: Any = None) -> None:
        if inner is None:
            inner = PySha256() if PySha256 is not None else hashlib.sha256()
        self._inner = inner
        self._resumable = PySha256 is not None and isinstance(inner, PySha256)

    def update(self, data: bytes | bytearray, /) -> None:
        if self._resumable and type(data) is not bytes:
            data = bytes(data)  # rehashes takes bytes only; large chunks already are
        self._inner.update(data)

    def hexdigest(self) -> str:
        if self._resumable:
            return str(self._inner.finalize())
        return str(self._inner.hexdigest())

    def copy(self) -> UploadHash:
        if self._resumable:
            return UploadHash(PySha256.deserialize(self._inner.serialize()))
        return UploadHash(self._inner.copy())

    def saved(self) -> str | None:
        """The state as text for the upload's saved state; None where it cannot be saved."""
        if not self._resumable:
            return None
        return f"{STATE_TAG}:{base64.b64encode(self._inner.serialize()).decode()}"

    @classmethod
    def restore(cls, saved: str | None) -> UploadHash | None:
        """The hash `saved` describes; None when there is none this process can read."""
        if not saved or PySha256 is None:
            return None
        tag, _, encoded = saved.partition(":")
        if tag != STATE_TAG:
            return None
        try:
            return cls(PySha256.deserialize(base64.b64decode(encoded, validate=True)))
        except (binascii.Error, ValueError):
            return None
