"""Start-up checks for the optional scale-out backends: the extra that provides each one is
installed, the S3 bucket exists, the PostgreSQL catalog answers; and the S3 client they use.

Each failure is a `BackendUnavailable` with a one-line message saying what to do; the CLI
prints it and exits 1 before any worker starts (a worker that fails prints a traceback).
Nothing here imports boto3 or psycopg unless that backend was chosen.
"""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ingest.config import Settings

# backend -> (the modules it imports, the extra that installs them, what chooses it)
EXTRAS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "s3": (("boto3", "botocore"), "s3", "--storage s3"),
    "postgres": (("psycopg", "psycopg_pool"), "postgres", "a postgresql:// --catalog-url"),
}
DATABASE_CONNECT_TIMEOUT = 5  # seconds before an unreachable PostgreSQL is reported


class BackendUnavailable(ValueError):
    """A chosen backend cannot be used; the message is one line and says what to do."""


def require_extra(backend: str) -> None:
    """Raise unless the modules of `backend` ("s3", "postgres") can be imported."""
    modules, extra, chosen_by = EXTRAS[backend]
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailable(
            f"{chosen_by} needs the {extra!r} extra ({', '.join(missing)} not installed): "
            f"pip install 'ingest[{extra}]'")


def redacted(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_database(url: str) -> None:
    """One connection to the catalog's database, failing within DATABASE_CONNECT_TIMEOUT
    (psycopg's pool would retry for 30 s and then say only `PoolTimeout`)."""
    require_extra("postgres")
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=DATABASE_CONNECT_TIMEOUT):
            pass
    except psycopg.Error as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise BackendUnavailable(
            f"PostgreSQL catalog {redacted(url)} unreachable: {reason} "
            "(create the role and database first: README, \"Scaling out\")") from error


def check_backends(settings: Settings) -> None:
    """Everything `ingest serve` checks before it starts a worker."""
    if settings.storage == "s3":
        client = s3_client(settings)  # first: it says which extra is missing
        from ingest.storage.s3 import check_bucket

        check_bucket(client, settings.s3_bucket, endpoint=settings.s3_endpoint)
    if settings.catalog_url:
        check_database(settings.catalog_url)


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the `s3_*` settings (the `s3` extra must be installed)."""
    require_extra("s3")
    from ingest.storage.s3 import make_client

    return make_client(endpoint=settings.s3_endpoint, region=settings.s3_region,
                       access_key=settings.s3_access_key, secret_key=settings.s3_secret_key)
