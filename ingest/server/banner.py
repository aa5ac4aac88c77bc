"""The start-up banner: what a person starting the server needs to know, as log lines.

Each line is one log record with its facts also in `fields`, so the JSON log format carries
them as keys (`{"banner": "storage", "storage": "local", ...}`). Secrets never appear: tokens
are counted, passwords in the catalog URL are replaced by `***`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ingest.config import Settings, format_size

log = logging.getLogger("ingest")

_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`postgresql://me:secret@db/ingest?password=x` -> `postgresql://me:***@db/ingest?password=***`;
    also a libpq `key=value` string's password."""
    if "://" not in url:
        return _DSN_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def base_url(settings: Settings) -> str:
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere; this address at least reaches it from here
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def banner(settings: Settings) -> list[tuple[int, str, dict[str, object]]]:
    """(level, message, fields) for each line, in order."""
    data_dir = settings.data_dir.resolve()
    lines: list[tuple[int, str, dict[str, object]]] = [
        (logging.INFO, f"data directory: {data_dir}", {"banner": "data_dir", "data_dir": str(data_dir)})]
    if settings.storage == "s3":
        endpoint = redact_url(settings.s3_endpoint) if settings.s3_endpoint else "AWS"
        lines.append((logging.INFO, f"storage: s3, bucket {settings.s3_bucket} at {endpoint} "
                      f"(region {settings.s3_region})",
                      {"banner": "storage", "storage": "s3", "bucket": settings.s3_bucket,
                       "endpoint": endpoint}))
    else:
        lines.append((logging.INFO, f"storage: local files in {data_dir / 'files'}",
                      {"banner": "storage", "storage": "local", "path": str(data_dir / "files")}))
    if settings.catalog_url:
        catalog = redact_url(settings.catalog_url)
        lines.append((logging.INFO, f"catalog: PostgreSQL {catalog}",
                      {"banner": "catalog", "catalog": "postgresql", "url": catalog}))
    else:
        path = settings.catalog_path.resolve()
        lines.append((logging.INFO, f"catalog: SQLite {path}",
                      {"banner": "catalog", "catalog": "sqlite", "path": str(path)}))
    tokens = len(settings.tokens)
    if tokens:
        lines.append((logging.INFO, f"auth: on, {tokens} bearer token{'s' if tokens > 1 else ''}",
                      {"banner": "auth", "auth": True, "tokens": tokens}))
    else:
        lines.append((logging.INFO, "auth: off (no --tokens): anyone who reaches the port can upload, "
                      "read and delete", {"banner": "auth", "auth": False, "tokens": 0}))
        if not is_loopback(settings.host):
            lines.append((logging.WARNING,
                          f"listening on {settings.host} with no tokens: anyone on the network can upload, "
                          "read and delete files; set --tokens (INGEST_TOKENS) or listen on 127.0.0.1",
                          {"banner": "auth_warning", "host": settings.host}))
    concurrent = settings.max_concurrent_uploads or "unlimited"
    lines.append((logging.INFO,
                  f"limits: file {format_size(settings.max_file_size)}, request "
                  f"{format_size(settings.max_request_size)}, {concurrent} uploads at once per worker, "
                  f"{settings.max_parts} multipart parts, body idle {settings.body_idle_timeout} s, "
                  f"unfinished tus uploads kept {_duration(settings.tus_expiry)}",
                  {"banner": "limits", "max_file_size": settings.max_file_size,
                   "max_request_size": settings.max_request_size,
                   "max_concurrent_uploads": settings.max_concurrent_uploads,
                   "max_parts": settings.max_parts, "body_idle_timeout": settings.body_idle_timeout,
                   "tus_expiry": settings.tus_expiry}))
    root = base_url(settings)
    urls = {"page": f"{root}/", "tus": f"{root}/files/", "openapi": f"{root}/openapi.json",
            "docs": f"{root}/docs"}
    lines.append((logging.INFO, f"upload page {urls['page']}  tus {urls['tus']}  "
                  f"OpenAPI {urls['openapi']}  API docs {urls['docs']}", {"banner": "urls", **urls}))
    return lines


def log_banner(settings: Settings) -> None:
    for level, message, fields in banner(settings):
        log.log(level, "%s", message, extra={"fields": fields})


def _duration(seconds: int) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
