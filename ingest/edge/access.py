"""Who may do what: named bearer tokens with scopes, and upload links, checked per request.

A token is configured as `name:secret:scope+scope` (`upload`, `read`, `delete`, `admin`); a
plain `secret` still works, with every scope (deprecated). Secrets are compared in constant
time against every token; only names reach logs and events. A request that holds no token
may hold an upload link (`Authorization: Bearer <link secret>` or `?link=<secret>`), which
grants `upload` only, within the link's limits (ingest/links/service.py).

`Auth` resolves the request's principal, refuses what its scope does not allow (401 without
a valid credential, 403 `forbidden` with one that lacks the scope) and puts the token name or
link on the request context (in the scope), which the handlers hand to the upload service and
the access log reads.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.edge.errors import error_response
from ingest.errors import Forbidden, IngestError, LinkExpired, LinkRevoked, Unauthorized
from ingest.models import Link, utc_now
from ingest.observe.context import RequestContext
from ingest.web import browser

log = logging.getLogger("ingest.auth")

UPLOAD, READ, DELETE, ADMIN = "upload", "read", "delete", "admin"
SCOPES = (UPLOAD, READ, DELETE, ADMIN)
ANY_SCOPE = frozenset(SCOPES)  # any valid credential will do
PUBLIC: frozenset[str] = frozenset()  # no credential needed
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Token:
    name: str
    secret: bytes
    scopes: frozenset[str]


def parse_tokens(entries: Sequence[str]) -> list[Token]:
    """`name:secret:scope+scope` entries (the secret may hold colons); a bare `secret` is a
    deprecated all-scopes token named `token-<position>`."""
    tokens: list[Token] = []
    for position, entry in enumerate(entries, start=1):
        if ":" not in entry:
            log.warning("INGEST_TOKENS: token %d is a bare secret with every scope; this form is "
                        "deprecated, write it as name:secret:%s", position, "+".join(SCOPES))
            tokens.append(Token(f"token-{position}", entry.encode(), ANY_SCOPE))
            continue
        name, _, rest = entry.partition(":")
        secret, _, scope_text = rest.rpartition(":")
        scopes = frozenset(scope_text.split("+"))
        if not _NAME.fullmatch(name) or not secret or not scopes <= ANY_SCOPE:
            raise ValueError(f"INGEST_TOKENS: token {position} is not name:secret:scope+scope with a name "
                             f"of letters, digits, '_.-' and scopes from {', '.join(SCOPES)}")
        tokens.append(Token(name, secret.encode(), scopes))
    names = [token.name for token in tokens]
    if len(set(names)) < len(names):
        raise ValueError("INGEST_TOKENS: two tokens have the same name")
    return tokens


def required_scopes(method: str, path: str) -> frozenset[str]:
    """The scopes of which a request needs one; PUBLIC for what holds no data."""
    if path == "/healthz" or browser.is_page_path(path):
        return PUBLIC
    if path == "/files" or path.startswith("/files/"):
        return frozenset({UPLOAD})
    if path in ("/openapi.json", "/docs"):
        return ANY_SCOPE
    if path == "/links/current":
        return frozenset({UPLOAD})  # a link's holder reads what is left of it
    if path == "/links" or path.startswith("/links/"):
        return frozenset({ADMIN})
    if path.startswith("/uploads/progress/"):
        return frozenset({UPLOAD, READ})
    if path == "/uploads":
        return frozenset({UPLOAD}) if method == "POST" else frozenset({READ})
    if path.startswith("/uploads/"):
        if method == "PUT":
            return frozenset({UPLOAD})
        if method == "DELETE":
            return frozenset({DELETE})
        return frozenset({READ})
    if path == "/metrics":
        return frozenset({READ})
    return frozenset({ADMIN})  # anything else: the most trusted only


def link_secret_hash(secret: str) -> str:
    """What the catalog keeps of a link's secret: its SHA-256 (the secret is 32 random bytes,
    so no slow hash is needed to make guessing from the hash hopeless)."""
    return hashlib.sha256(secret.encode()).hexdigest()


# A link's holder may go on with a tus upload it started before the link expired.
_RESUMABLE_METHODS = frozenset({"PATCH", "HEAD"})


class Auth:
    """Outside the routes, inside the access log (which reads the principal it sets)."""

    def __init__(self, app: ASGIApp, *, tokens: Sequence[Token],
                 find_link: Callable[[str], Awaitable[Link | None]]) -> None:
        self.app = app
        self._tokens = list(tokens)
        self._find_link = find_link

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_scopes(scope["method"], scope["path"])
        if not needed:
            await self.app(scope, receive, send)
            return
        try:
            await self._admit(scope, needed)
        except IngestError as error:
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _admit(self, scope: Scope, needed: frozenset[str]) -> None:
        supplied = _credential(scope)
        token = self._token(supplied)
        request = RequestContext.of(scope)
        if token is not None:
            if request is not None:
                request.token = token.name
            if not token.scopes & needed and ADMIN not in token.scopes:  # admin: everything
                raise Forbidden(f"token {token.name!r} lacks the {' or '.join(sorted(needed))} scope")
            return
        link = await self._find_link(supplied) if supplied else None
        if link is None:
            if not self._tokens:
                return  # no tokens configured: the server is open, as it always was
            raise Unauthorized("a valid 'Authorization: Bearer <token>' header (or upload link) is required",
                               headers={"www-authenticate": 'Bearer realm="ingest"'})
        if request is not None:
            request.link = link
        if link.revoked_at is not None:
            raise LinkRevoked(f"upload link {link.id} was revoked at {link.revoked_at}")
        if UPLOAD not in needed:
            raise Forbidden("an upload link grants uploads only")
        if link.expired(utc_now()):
            if scope["method"] in _RESUMABLE_METHODS and scope["path"].startswith("/files/"):
                return  # the tus service lets only an upload made with this link go on
            raise LinkExpired(f"upload link {link.id} expired at {link.expires_at}")

    def _token(self, supplied: str) -> Token | None:
        if not supplied:
            return None
        offered = supplied.encode()
        found = None
        for token in self._tokens:  # every token, in constant time: timing tells nothing
            if hmac.compare_digest(offered, token.secret):
                found = token
        return found


def _credential(scope: Scope) -> str:
    """The bearer credential, else a `link` query parameter (browser forms, plain links)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    if "link=" in query:
        values = urllib.parse.parse_qs(query).get("link")
        if values:
            return str(values[0])
    return ""
