"""streaming-form-data, imported without the smart_open transports ingest never uses.

streaming-form-data 2.1.0 (the newest release) imports smart_open for its S3 and SmartOpen
targets, from the module that defines `BaseTarget`, which its parser imports too; smart_open
imports boto3 and requests at import time to register its S3 and HTTP transports (it skips a
transport whose import fails, and has no setting to skip one): about 12 MiB of resident memory
in every worker, for targets ingest does not use.

So while this thread imports streaming-form-data, an import finder placed first on
`sys.meta_path` refuses those packages, to this thread only; imports made by any other thread
meanwhile go on as always, and the finder is gone once the import is done. Where one of them is
already loaded it is simply used. ingest's own S3 backend imports boto3 as usual when it is
configured. `sys.meta_path` is replaced, never changed in place, so a thread that is walking it
meanwhile sees the whole list it started with.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

_UNUSED_TRANSPORT_PACKAGES = frozenset({"boto3", "botocore", "requests"})


class _RefusedInThisThread(MetaPathFinder):
    """Refuses `packages` (and their submodules) to the imports of the thread that made it."""

    def __init__(self, packages: frozenset[str]) -> None:
        self._packages = packages
        self._thread = threading.get_ident()

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self._packages and threading.get_ident() == self._thread:
            raise ModuleNotFoundError(f"{fullname} is not loaded with streaming-form-data", name=fullname)
        return None


_refuse = _RefusedInThisThread(_UNUSED_TRANSPORT_PACKAGES)
sys.meta_path = [_refuse, *sys.meta_path]
try:
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.parser import ParseFailedException, parse_content_boundary
    from streaming_form_data.targets import BaseTarget
finally:
    sys.meta_path = [finder for finder in sys.meta_path if finder is not _refuse]
    del _refuse

__all__ = ["BaseTarget", "ParseFailedException", "StreamingFormDataParser", "parse_content_boundary"]
