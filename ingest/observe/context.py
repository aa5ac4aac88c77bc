"""What the upload service may know about the HTTP request it is serving, without HTTP.

The access-log middleware (`accesslog.py`) builds one `RequestContext` per request and sets it
in a context variable for the duration of the request; the upload service reads it to label
metrics and events (protocol, client address) and to count finished files for live progress.
Context variables follow the request's task through every `await`, so the protocol modules
need not pass it along. Code outside a request (the CLI, tests of the service) sees None.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.models import Link

@dataclass
class RequestContext:
    request_id: str
    client: str | None
    protocol: str
    content_length: int | None = None
    # Request headers a webhook receives as configured by `hook_forward_headers`.
    forwarded_headers: dict[str, str] = field(default_factory=dict)
    files_received: int = 0
    # Who is asking (ingest/edge/access.py): a bearer token's name, or the upload link used.
    token: str | None = None
    link: Link | None = None
    # Bytes this request holds of its link's limit, and how many of them its files used.
    link_bytes_reserved: int | None = None
    link_bytes_spent: int = 0


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "ingest_request", default=None)


def current_request() -> RequestContext | None:
    return _current.get()


def set_current_request(context: RequestContext | None) -> contextvars.Token[RequestContext | None]:
    return _current.set(context)


def reset_current_request(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex

