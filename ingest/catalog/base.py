"""The contract of a catalog: the durable index of committed files.

A file is visible to clients exactly when its row exists; rows are written only after the
bytes are committed to storage, so a row always points at complete bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ingest.models import StoredFile


class Catalog(Protocol):
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None: ...

    async def add(self, stored_files: Sequence[StoredFile]) -> None:
        """Insert all rows in one transaction: all become visible together or none does."""

    async def get(self, file_id: str) -> StoredFile | None: ...

    async def page(self, *, limit: int, after: tuple[str, str] | None = None) -> list[StoredFile]:
        """Newest first; `after` is the (created_at, id) of the last row of the previous page."""

    async def remove(self, file_id: str) -> StoredFile | None:
        """Delete the row and return it; None when there was none."""

    async def file_ids(self) -> set[str]: ...
