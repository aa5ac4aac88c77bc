"""ingest's real server with SHA-256 switched off, to measure what hashing costs (`python -m`
this module with `ingest serve`'s arguments).

For measurement only: ingest has no setting for this, because every file it stores carries
its sha256. Here, before the server starts, each `BlobSink` gets a hasher that does nothing, so
its worker lane only writes: the pipeline is ingest's minus the hashing step. The catalog
then records a placeholder digest (64 zeros); the harness never trusts it, it reads each
stored file back from disk and compares its sha256 with the input's, as for every contender.
"""

from __future__ import annotations

import sys
from typing import Any

from ingest import cli, sink

PLACEHOLDER_SHA256 = "0" * 64  # what the catalog records: plainly not a digest of the bytes


class _NoHash:
    """Stands in for `hashlib.sha256()`: takes the bytes, computes nothing."""

    def update(self, piece: bytes | bytearray) -> None:
        pass

    def hexdigest(self) -> str:
        return PLACEHOLDER_SHA256


def switch_hashing_off() -> None:
    original_init = sink.BlobSink.__init__

    def init_without_hashing(self: sink.BlobSink, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if kwargs.get("hashes") is None:  # a file's own SHA-256, not a tus upload's running hashes
            self._hashes = (_NoHash(),)

    sink.BlobSink.__init__ = init_without_hashing  # type: ignore[method-assign]


def main() -> int:
    switch_hashing_off()
    # `ingest serve` with one worker runs the app in this process, so the patch applies.
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
