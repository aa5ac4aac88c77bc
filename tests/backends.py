"""Real scale-out backends for the tests: a single-host Ceph cluster (S3 via radosgw) and a
throwaway PostgreSQL, each started once per session on free loopback ports and torn down after.

Ceph comes from deploy/ceph/ceph-up.sh (Debian packages ceph-mon ceph-osd radosgw
ceph-common); PostgreSQL from Debian's `postgresql` (initdb + pg_ctl, no service manager).
Under CI=true a missing one fails the tests that need it (tests.conftest.require_tool).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, require_tool, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
CEPH_UP = ROOT / "deploy" / "ceph" / "ceph-up.sh"
CEPH_DOWN = ROOT / "deploy" / "ceph" / "ceph-down.sh"
RGW_INSTANCES = 2  # two gateways on one cluster: two "nodes" of the object store


def _ports_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    for _ in range(200):
        first = random.randrange(20000, 60000 - count)
        if _ports_free(first, count):
            return first
    raise AssertionError(f"no {count} consecutive free ports")


# --- Ceph -----------------------------------------------------------------------------------

@dataclass
class Ceph:
    endpoints: list[str]
    access_key: str
    secret_key: str
    directory: Path

    def client(self, endpoint: str | None = None) -> Any:
        from ingest.storage.s3 import make_client

        return make_client(endpoint=endpoint or self.endpoints[0], region="us-east-1",
                           access_key=self.access_key, secret_key=self.secret_key)

    def settings_env(self, bucket: str, node: int = 0) -> dict[str, str]:
        return {"INGEST_STORAGE": "s3", "INGEST_S3_ENDPOINT": self.endpoints[node % len(self.endpoints)],
                "INGEST_S3_BUCKET": bucket, "INGEST_S3_ACCESS_KEY": self.access_key,
                "INGEST_S3_SECRET_KEY": self.secret_key}


@pytest.fixture(scope="session")
def ceph() -> Iterator[Ceph]:
    with running_ceph() as cluster:
        yield cluster


@contextlib.contextmanager
def running_ceph(gateways: int = RGW_INSTANCES) -> Iterator[Ceph]:
    """A fresh single-host Ceph cluster with `gateways` radosgw gateways, purged on exit."""
    for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph-authtool", "monmaptool",
                 "ceph", "uuidgen", "bc", "curl"):
        require_tool(tool)
    # Short path: Ceph's admin sockets live in it and socket paths are limited to ~107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="ceph-", dir="/tmp"))
    mon_port = free_port_block(2)
    ms_first = free_port_block(100)
    rgw_port = free_port_block(gateways)
    env = {**os.environ, "CEPH_DIR": str(directory), "CEPH_MON_PORT": str(mon_port),
           "CEPH_MS_PORTS": f"{ms_first} {ms_first + 99}", "CEPH_RGW_PORT": str(rgw_port),
           "CEPH_RGW_INSTANCES": str(gateways), "CEPH_STORE_GB": "6",
           "S3_ACCESS_KEY": "ingestaccess", "S3_SECRET_KEY": secrets.token_hex(16)}
    try:
        result = subprocess.run(["bash", str(CEPH_UP)], env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        if result.returncode != 0:
            raise AssertionError(f"ceph-up.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
        values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        yield Ceph(endpoints=values["S3_ENDPOINTS"].split(","), access_key=values["S3_ACCESS_KEY"],
                   secret_key=values["S3_SECRET_KEY"], directory=directory)
    finally:
        subprocess.run(["bash", str(CEPH_DOWN), "--purge"], env=env, capture_output=True,
                       timeout=120, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def bucket(ceph: Ceph) -> Iterator[str]:
    """A fresh, empty bucket; emptied and removed afterwards."""
    name = f"t-{secrets.token_hex(6)}"
    client = ceph.client()
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


def multipart_uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def object_keys(client: Any, bucket: str) -> list[str]:
    return [obj["Key"] for obj in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def object_sha256(client: Any, bucket: str, key: str) -> str:
    """Read the stored object back and hash it."""
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in body.iter_chunks(4 * 1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


# --- PostgreSQL -----------------------------------------------------------------------------

@dataclass
class Postgres:
    port: int
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    return Path(require_tool("pg_ctl")).parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        require_tool("pg_ctl")
    bindir = _postgres_bin()
    directory = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: run the server as the postgres user, in a dir it owns.
        require_tool("runuser")
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    port = free_port_block(1)

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120,
                                check=False)
        if result.returncode != 0:
            raise AssertionError(f"{command[0]} failed:\n{result.stdout}\n{result.stderr}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync",
            "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-w", "-D", str(data), "-l", str(directory / "log"), "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off "
            "-c max_connections=200", "start")
        yield Postgres(port=port, socket_dir=directory)
    finally:
        with contextlib.suppress(AssertionError):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: Postgres) -> str:
    """A fresh database of its own for one test."""
    return postgres.new_database()


# --- ingest nodes -----------------------------------------------------------------------------

NODE_PART_SIZE = 8 * 1024 * 1024
NODE_PARTS_IN_FLIGHT = 4


@pytest.fixture
def nodes(tmp_path: Path, ceph: Ceph, bucket: str, postgres_url: str) -> Iterator[list[LiveServer]]:
    """Two nodes, each talking to its own radosgw gateway, one bucket, one catalog."""
    servers: list[LiveServer] = []
    try:
        for node in range(2):
            env = {**ceph.settings_env(bucket, node), "INGEST_CATALOG_URL": postgres_url,
                   "INGEST_S3_PART_SIZE": str(NODE_PART_SIZE),
                   "INGEST_S3_PARTS_IN_FLIGHT": str(NODE_PARTS_IN_FLIGHT)}
            servers.append(start_server(tmp_path / f"node{node}", "--no-fsync", env=env))
        yield servers
    finally:
        for server in servers:
            stop_server(server)
