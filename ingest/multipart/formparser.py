"""streaming-form-data, imported without the smart_open transports ingest never uses.

streaming-form-data 2.1.0 imports smart_open for its S3 and SmartOpen targets, and smart_open
imports boto3 and requests at import time to register its S3 and HTTP transports: about
12 MiB of resident memory in every worker, for targets ingest does not use. While
streaming-form-data is imported, those packages are made unimportable (smart_open skips a
transport whose import fails), then importable again, so ingest's own S3 backend still loads
boto3 when it is configured.
"""

from __future__ import annotations

import sys

_UNUSED_TRANSPORT_PACKAGES = ("boto3", "botocore", "requests")

_blocked = [name for name in _UNUSED_TRANSPORT_PACKAGES if name not in sys.modules]
for _name in _blocked:
    sys.modules[_name] = None  # type: ignore[assignment]  # makes `import _name` raise ImportError
try:
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.parser import ParseFailedException, parse_content_boundary
    from streaming_form_data.targets import BaseTarget
finally:
    for _name in _blocked:
        if sys.modules.get(_name, "") is None:
            del sys.modules[_name]

__all__ = ["BaseTarget", "ParseFailedException", "StreamingFormDataParser", "parse_content_boundary"]
