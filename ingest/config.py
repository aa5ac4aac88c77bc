"""Settings: one frozen object, built from defaults, `INGEST_*` environment variables and flags.

Every field carries its own help text, so the CLI flags, the environment variables and the
README table all come from this one declaration.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "INGEST_"

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _size(default: int, help: str) -> Any:
    """A setting in bytes: it takes `64GiB`-style values and its help shows them that way."""
    return field(default=default, metadata={"help": help, "size": True})


@dataclass(frozen=True, kw_only=True)
class Settings:
    data_dir: Path = _setting(Path("data"), "directory holding stored files, temp files and the catalog")
    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8000, "port to listen on")
    workers: int = _setting(1, "uvicorn worker processes sharing the data dir and catalog")
    max_file_size: int = _size(64 * GiB, "largest accepted file")
    max_request_size: int = _size(64 * GiB, "largest accepted request body")
    max_parts: int = _setting(1000, "most parts (files + fields) in one multipart request")
    max_field_size: int = _size(64 * KiB, "largest text field of a multipart request")
    max_part_header_size: int = _size(16 * KiB, "largest header block of one multipart part")
    fsync: bool = _setting(True, "fsync each file and its directory before it is committed")
    block_size: int = _size(1 * MiB, "bytes gathered before one hash+write step in a worker thread")
    write_behind: int = _size(
        8 * MiB, "local disk: bytes per write-behind window (start writeback, drop written pages); 0 = off")
    tokens: tuple[str, ...] = _setting(
        (), "bearer tokens as name:secret:scope+scope (upload, read, delete, admin), comma-separated; empty = no auth")
    proxy_headers: bool = _setting(False, "trust X-Forwarded-* headers from --forwarded-allow-ips")
    forwarded_allow_ips: str = _setting("127.0.0.1", "proxy addresses/networks trusted for X-Forwarded-*")
    temp_max_age: int = _setting(24 * 3600, "seconds after which an abandoned temp file is swept")
    # Scale-out backends (README "Scaling out"): object storage and a shared catalog.
    storage: str = _setting("local", "where file bytes go: local (data dir) or s3 (an S3-compatible store)")
    s3_endpoint: str = _setting("", "S3 endpoint URL (Ceph RGW, MinIO...); empty = AWS")
    s3_region: str = _setting("us-east-1", "S3 region used for request signing")
    s3_bucket: str = _setting("ingest", "S3 bucket holding the files (must exist)")
    s3_access_key: str = _setting("", "S3 access key; empty = boto3's default credential chain")
    s3_secret_key: str = _setting("", "S3 secret key; empty = boto3's default credential chain")
    s3_part_size: int = _size(8 * MiB, "S3 multipart part size, at least 5MiB (raised to fit 10,000 parts)")
    s3_parts_in_flight: int = _setting(4, "S3 parts uploaded at once per file; memory <= part size x (this + 1)")
    s3_presign_seconds: int = _setting(0, "downloads from S3: 0 = streamed by ingest, N = redirect to a URL valid N s")
    accel_redirect_prefix: str = _setting(
        "", "URL path of an internal nginx location on <data dir>/files (e.g. /_ingest_files/): local "
            "downloads answer with X-Accel-Redirect and nginx sends the bytes; empty = ingest sends them")
    catalog_url: str = _setting("", "postgresql://... for a shared PostgreSQL catalog; empty = SQLite in the data dir")
    multipart_min_parse_rate: int = _size(
        256 * MiB, "bytes per CPU-second a multipart body must parse at, after the grace; 0 = no limit")
    multipart_parse_grace_ms: int = _setting(250, "CPU milliseconds of multipart parsing free of the rate limit")
    header_timeout: int = _setting(30, "seconds a client gets to send a request's line and headers (slowloris)")
    body_idle_timeout: int = _setting(60, "seconds a request body may send nothing before it is dropped (408)")
    body_min_rate: int = _size(
        1 * KiB, "bytes/s an upload body must average once it has lasted body_idle_timeout (408); 0 = no limit")
    max_concurrent_uploads: int = _setting(
        256, "uploads received at once per worker; more get 503 + Retry-After; 0 = no limit")
    shutdown_grace: int = _setting(30, "seconds in-flight uploads get to finish after SIGTERM")
    metrics: bool = _setting(True, "serve Prometheus metrics at GET /metrics")
    metrics_port: int = _setting(0, "serve /metrics on this port of --host instead, without auth; 0 = main port")
    hook_url: str = _setting("", "URL that receives upload events as JSON POSTs; empty = no webhook")
    hook_events: tuple[str, ...] = _setting((), "events sent to --hook-url, comma-separated; empty = all")
    hook_timeout: float = _setting(5.0, "seconds one hook delivery may take; a pre-* hook past it fails")
    hook_retries: int = _setting(3, "extra attempts for a failed post-* delivery")
    hook_backoff: float = _setting(0.5, "seconds before the first retry, doubling after each")
    hook_max_response_size: int = _size(64 * KiB, "largest answer read from the webhook")
    hook_forward_headers: tuple[str, ...] = _setting((), "request headers passed on to the webhook, comma-separated")
    hook_queue_size: int = _setting(1000, "post-* events waiting for delivery; beyond, events are dropped")
    hook_fail_open: bool = _setting(False, "let uploads through when a pre-* hook fails or times out")
    hook_progress_interval: float = _setting(1.0, "seconds between post-receive events of one upload")
    log_format: str = _setting("text", "log format: text (for a terminal) or json (one object per line)")
    access_log: bool = _setting(True, "log one line per request (replaces uvicorn's access log)")
    tus_expiry: int = _setting(24 * 3600, "seconds an unfinished tus upload is kept after its last PATCH")
    cors_origins: tuple[str, ...] = _setting((), "browser origins allowed by CORS, comma-separated; * = any")
    accept: tuple[str, ...] = _setting(
        (), "media types a file's bytes must be, comma-separated (image/*,application/pdf); empty = any")
    on_type_mismatch: str = _setting(
        "accept", "a file whose bytes contradict its declared type: accept (record both) or refuse (415)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `INGEST_<NAME>` variables, then explicit keyword overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            raw = environ.get(env_name(setting.name))
            if raw is not None:
                values[setting.name] = parse_value(setting, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The settings as `INGEST_*` variables, for worker processes that rebuild them."""
        return {env_name(s.name): format_value(getattr(self, s.name)) for s in fields(self)}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def temp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite3"


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def parse_value(setting: dataclasses.Field[Any], raw: str) -> Any:
    kind = setting.type if isinstance(setting.type, str) else setting.type.__name__
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"{env_name(setting.name)}: not a boolean: {raw!r}")
    if kind == "int":
        return parse_size(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw)
    if kind.startswith("tuple"):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


_SIZE_UNITS = {"": 1, "b": 1, "k": KiB, "kib": KiB, "kb": KiB, "m": MiB, "mib": MiB, "mb": MiB,
               "g": GiB, "gib": GiB, "gb": GiB, "t": 1024 * GiB, "tib": 1024 * GiB, "tb": 1024 * GiB}


def parse_size(raw: str) -> int:
    """`4096`, `64KiB`, `10G`, `1.5GiB` -> bytes (binary units: sizes of files, not of disks)."""
    text = raw.strip().lower().replace("_", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = text[len(number):].strip()
    if unit not in _SIZE_UNITS or not number:
        raise ValueError(f"not a size: {raw!r}")
    return int(float(number) * _SIZE_UNITS[unit])


def format_size(size: int) -> str:
    """Bytes as people type them: `68719476736` -> `64GiB`; exact, else plain bytes."""
    for unit, factor in (("TiB", 1024 * GiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def human_size(size: int) -> str:
    """Bytes for reading, rounded: `3145728` -> `3.0 MiB`, `512` -> `512 B`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_setting(setting: dataclasses.Field[Any], value: Any) -> str:
    """A setting's value as its flag takes it: sizes in binary units."""
    if setting.metadata.get("size") and isinstance(value, int):
        return format_size(value)
    return format_value(value)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
