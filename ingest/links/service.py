"""Upload links: a URL that lets whoever holds it upload, within limits, and do nothing else.

The secret (32 random bytes, URL-safe) is shown once, at creation; the catalog keeps its
SHA-256, so links survive restarts and every node sharing the catalog honours them. Limits
hold across every upload made with a link: each upload reserves its bytes and its file in the
catalog, atomically against every other reservation of the link (`Catalog.reserve`), before
its first byte is stored; the commit turns the reservation into use in the same transaction
that adds the file rows, and a failure releases it.

What is reserved: a raw body its Content-Length (refused at once when it does not fit), a tus
upload its Upload-Length, a multipart body its Content-Length or whatever is left, whichever is
smaller; a body of unknown length (chunked, tus deferred length) reserves all that is left.
An upload that holds a reservation may finish after the link expires or is revoked; nothing new
starts (README "Upload links").
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from ingest.catalog.base import Catalog
from ingest.content_rules import ContentRules
from ingest.edge.access import link_secret_hash
from ingest.errors import InvalidRequest, NotFound
from ingest.models import Link, utc_now

_LARGEST = 2**62  # fits the catalogs' 64-bit integers, with room for the sums
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(raw: str | int | float) -> float:
    """`90`, `90s`, `30m`, `12h`, `7d`, `2w` -> seconds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        match = _DURATION.match(str(raw).lower())
        if not match:
            raise InvalidRequest(f"not a duration: {raw!r} (say 90s, 30m, 12h or 7d)")
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    if not 0 < seconds <= 100 * 365 * 86400:
        raise InvalidRequest("a link's lifetime must be positive and under a century")
    return seconds


def iso_in(seconds: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class Links:
    def __init__(self, catalog: Catalog, *, request_hold_seconds: float) -> None:
        self.catalog = catalog
        # A single request's reservation outlives a crashed process by this much, no longer.
        self._request_hold_seconds = request_hold_seconds

    async def create(self, *, label: str = "", expires_in: float | None = None, max_size: int | None = None,
                     max_files: int | None = None, accept: tuple[str, ...] = (),
                     single_use: bool = False) -> tuple[Link, str]:
        """A new link and its secret (shown once; only its hash is kept)."""
        if (max_size is not None and not 0 <= max_size <= _LARGEST) or (
                max_files is not None and not 1 <= max_files <= _LARGEST):
            raise InvalidRequest("max_size must be 0 to 2^62 bytes and max_files 1 to 2^62")
        try:
            ContentRules(accept=accept)
        except ValueError as error:
            raise InvalidRequest(str(error)) from None
        secret = secrets.token_urlsafe(32)
        link = Link(id=secrets.token_hex(8), label=label, created_at=utc_now(),
                    expires_at=iso_in(expires_in) if expires_in is not None else None,
                    max_size=max_size, max_files=max_files, accept=accept, single_use=single_use)
        await self.catalog.add_link(link, link_secret_hash(secret))
        return link, secret

    async def find(self, secret: str) -> Link | None:
        return await self.catalog.find_link(link_secret_hash(secret), utc_now())

    async def get(self, link_id: str) -> Link:
        link = await self.catalog.get_link(link_id, utc_now())
        if link is None:
            raise NotFound(f"no upload link with id {link_id!r}")
        return link

    async def reserve(self, link: Link, key: str, *, size: int | None, exact: bool, files: int,
                      held_by_request: bool) -> int:
        """Bytes granted to reservation `key`; raises a link error when the link refuses."""
        hold_until = iso_in(self._request_hold_seconds) if held_by_request else None
        return await self.catalog.reserve(link.id, key, size=size, exact=exact, files=files,
                                          now=utc_now(), hold_until=hold_until)

    async def release(self, *keys: str) -> None:
        if keys:
            await self.catalog.release(keys)
