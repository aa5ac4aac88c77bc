"""What the upload service may know about the HTTP request it is serving, without HTTP.

The access-log middleware (`accesslog.py`) builds one `RequestContext` per request and keeps
it in the ASGI scope (`RequestContext.of(scope)`); auth fills in who is asking. The HTTP
handlers hand it to the upload service, which labels metrics and events with it (protocol,
client address), applies the request's upload link, and counts finished files on it for live
progress. Code outside a request (the CLI, start-up recovery, sweeps, tests of the service)
passes None.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import Scope

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

    def keep_in(self, scope: Scope) -> None:
        """Make this the context of the request `scope` belongs to (the access log does)."""
        scope[SCOPE_KEY] = self

    @staticmethod
    def of(scope: Scope) -> RequestContext | None:
        """The request's context; None where no access log runs (an app without it)."""
        context = scope.get(SCOPE_KEY)
        assert context is None or isinstance(context, RequestContext)
        return context


SCOPE_KEY = "ingest.request"  # ASGI scope key


def new_request_id() -> str:
    return uuid.uuid4().hex

