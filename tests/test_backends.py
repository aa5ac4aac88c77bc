"""ingest/backends.py: `ingest serve` refuses, in one line, a scale-out backend it cannot use
(missing bucket, missing database), and `ingest create-bucket` makes the bucket."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.backends import BackendUnavailable, redacted, require_extra
from tests.backends import Ceph, Postgres
from tests.conftest import free_port
from tests.test_packaging import clean_env


def _ingest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest", *args], capture_output=True, text=True,
                          timeout=120, env={**clean_env(), **(env or {})}, check=False)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_redacted_hides_only_the_password() -> None:
    assert redacted("postgresql://ingest:s3cret@db:5432/ingest") == "postgresql://ingest:***@db:5432/ingest"
    assert redacted("postgresql://ingest@db/ingest") == "postgresql://ingest@db/ingest"


def test_require_extra_names_the_extra_for_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "boto3" else real_find_spec(name, *a))
    with pytest.raises(BackendUnavailable, match=r"pip install 'ingest\[s3\]'"):
        require_extra("s3")
    require_extra("postgres")


def test_serve_on_a_missing_bucket_exits_with_one_line_naming_it(ceph: Ceph, tmp_path: Path) -> None:
    missing = f"absent-{secrets.token_hex(4)}"
    result = _ingest("serve", "--data-dir", str(tmp_path), "--port", str(free_port()),
                     env=ceph.settings_env(missing))
    line = _one_line_error(result)
    assert f"S3 bucket {missing!r} does not exist" in line
    assert "ingest create-bucket" in line


def test_create_bucket_makes_the_bucket_once(ceph: Ceph) -> None:
    name = f"made-{secrets.token_hex(4)}"
    env = ceph.settings_env(name)
    first = _ingest("create-bucket", env=env)
    assert first.returncode == 0, first.stderr
    assert f"bucket {name!r} created" in first.stdout
    ceph.client().head_bucket(Bucket=name)
    again = _ingest("create-bucket", env=env)
    assert again.returncode == 0, again.stderr
    assert f"bucket {name!r} already exists" in again.stdout
    ceph.client().delete_bucket(Bucket=name)


def test_serve_on_a_missing_database_fails_within_seconds_naming_it(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.url(f"absent_{secrets.token_hex(4)}")
    started = time.monotonic()
    result = _ingest("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), "--catalog-url", url)
    elapsed = time.monotonic() - started
    line = _one_line_error(result)
    assert f"PostgreSQL catalog {url} unreachable" in line
    assert "does not exist" in line
    assert elapsed < 10, f"took {elapsed:.1f} s"
