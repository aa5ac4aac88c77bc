"""The contract of a catalog: the durable index of committed files.

A file is visible to clients exactly when its row exists; rows are written only after the
bytes are committed to storage, so a row always points at complete bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from ingest.models import Link, StoredFile


class Catalog(Protocol):
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None: ...

    async def add(self, stored_files: Sequence[StoredFile], *, release: Sequence[str] = ()) -> None:
        """Insert all rows in one transaction: all become visible together or none does. In the
        same transaction, the files count towards their links' use, and the reservations
        `release` names are dropped (their bytes are now used, not held)."""

    async def get(self, file_id: str) -> StoredFile | None: ...

    async def page(self, *, limit: int, after: tuple[str, str] | None = None,
                   link: str | None = None) -> list[StoredFile]:
        """Newest first; `after` is the (created_at, id) of the last row of the previous page;
        `link`: only files that came by this upload link."""

    async def remove(self, file_id: str) -> StoredFile | None:
        """Delete the row and return it; None when there was none."""

    async def file_ids(self) -> set[str]: ...

    # --- upload links: limits shared by every node, reservations taken atomically ----------

    async def add_link(self, link: Link, secret_hash: str) -> None: ...

    async def find_link(self, secret_hash: str, now: str) -> Link | None:
        """The link whose secret has this hash, with what uploads in flight hold of it."""

    async def get_link(self, link_id: str, now: str) -> Link | None: ...

    async def links(self, now: str) -> list[Link]:
        """Every link, newest first."""

    async def revoke_link(self, link_id: str, now: str) -> Link | None: ...

    async def reserve(self, link_id: str, key: str, *, size: int | None, exact: bool, files: int,
                      now: str, hold_until: str | None) -> int:
        """Add to the reservation `key` of a link, in one transaction that sees every other
        reservation (`Link.grant` decides): the bytes granted, or a link error. Reservations
        past `hold_until` (None: held until released) no longer count."""

    async def release(self, keys: Sequence[str]) -> None: ...


def links_usage(stored_files: Sequence[StoredFile]) -> dict[str, tuple[int, int]]:
    """Bytes and files each link gains from these files."""
    usage: dict[str, tuple[int, int]] = {}
    for stored in stored_files:
        if stored.link is not None:
            size, count = usage.get(stored.link, (0, 0))
            usage[stored.link] = (size + stored.size, count + 1)
    return usage


def link_from_row(row: Sequence[Any]) -> Link:
    """A row of the links columns followed by the sums of its live reservations."""
    (link_id, label, created_at, expires_at, max_size, max_files, accept, single_use, revoked_at,
     bytes_used, files_used, bytes_reserved, files_reserved, in_flight) = row
    return Link(id=str(link_id), label=str(label), created_at=str(created_at), expires_at=expires_at,
                max_size=None if max_size is None else int(max_size),
                max_files=None if max_files is None else int(max_files),
                accept=tuple(json.loads(accept) if isinstance(accept, str) else accept),
                single_use=bool(single_use), revoked_at=revoked_at, bytes_used=int(bytes_used),
                files_used=int(files_used), bytes_reserved=int(bytes_reserved),
                files_reserved=int(files_reserved), uploads_in_flight=int(in_flight))
