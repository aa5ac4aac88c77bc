"""What the client raises: one exception type, with the server's error code when there is one."""

from __future__ import annotations

import contextlib
import json

import httpx


class ClientError(Exception):
    """A request the server refused, or a result the client would not accept.

    `status` is the HTTP status (0 when no answer is involved) and `code` the server's stable
    error code (`"not_found"`, `"digest_mismatch"`...) or the client's own.
    """

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ChecksumMismatch(ClientError):
    """The bytes at one end do not hash to the sha256 the other end has."""


class DestinationExists(ClientError):
    """A download would overwrite a different file; pass `force=True` to allow it."""


def raise_for_status(response: httpx.Response, *expected: int) -> None:
    """Raise ClientError unless the answer has one of the `expected` statuses."""
    if response.status_code in expected:
        return
    code, detail = "", response.text[:200]
    with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError, ValueError, httpx.ResponseNotRead):
        body = response.json()
        code, detail = str(body["error"]), str(body["detail"])
    text = f"{response.status_code} {code}: {detail}" if code else f"{response.status_code} {detail}"
    raise ClientError(text, status=response.status_code, code=code)
