"""deploy/compose.scale-out.yml brought up with podman-compose: the image built with
EXTRAS=s3,postgres, its bucket made by the `make-bucket` service (`ingest create-bucket`),
a node storing into the tests' Ceph and cataloguing in their PostgreSQL, nginx in front from
deploy/nginx/scale-out.conf.

The object store and the catalog are the tests' Ceph and PostgreSQL on the host's loopback
(no MinIO or PostgreSQL image can be pulled here), so the `postgres` and `minio` services are
left out and every container uses the host's network, where replicas of one service would all
bind the same port: one node runs, not `--scale ingest=N`. podman-compose 1.6 cannot take
those changes as an override file (`!reset` inside `depends_on` fails its normalisation), so
`scale_out_file` writes them into a copy of the compose file, each change commented there.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.backends import Ceph, Postgres, object_keys, object_sha256
from tests.conftest import free_port, require_tool, sha256_of, wait_until
from tests.containers import Deployment, base_image, build_app_image, podman, podman_env

ROOT = Path(__file__).resolve().parent.parent
SCALE_OUT = ROOT / "deploy" / "compose.scale-out.yml"
MiB = 1024 * 1024


def scale_out_file(directory: Path, *, image: str, nginx_image: str, nginx_conf: Path,
                   node_env: dict[str, str]) -> Path:
    """deploy/compose.scale-out.yml with the host's Ceph and PostgreSQL in place of MinIO and
    the postgres service, and every container on the host's network."""
    compose = yaml.safe_load(SCALE_OUT.read_text())
    services = compose["services"]
    del services["postgres"], services["minio"]  # the tests' own, on the host
    del services["make-bucket"]["depends_on"]  # it waited for minio
    del services["ingest"]["depends_on"]["postgres"]  # still waits for make-bucket
    for name in ("make-bucket", "ingest"):
        services[name]["image"] = image  # built by the test, on the local base
        services[name]["build"]["context"] = str(ROOT)
        services[name]["network_mode"] = "host"
        services[name]["environment"] = {**services[name]["environment"], **node_env}
    services["nginx"].update(image=nginx_image, network_mode="host")
    del services["nginx"]["ports"]  # it listens on a loopback port of the host (nginx_conf)
    services["nginx"]["volumes"] = [f"{nginx_conf}:/etc/nginx/conf.d/default.conf:ro"]
    path = directory / "compose.scale-out.yml"
    path.write_text(yaml.safe_dump(compose))
    return path


@pytest.fixture(scope="module")
def scale_out(ceph: Ceph, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_tool("podman")
    image = build_app_image(f"localhost/ingest-test-scale-out:{secrets.token_hex(4)}",
                            base_image("localhost/ingest-base:bookworm"), extras="s3,postgres")
    nginx_image = base_image("localhost/ingest-nginx:bookworm")
    app_port, nginx_port = free_port(), free_port()
    conf = (ROOT / "deploy" / "nginx" / "scale-out.conf").read_text()
    assert "    server ingest:8000 max_fails=0;" in conf and "    listen 80;" in conf
    conf_path = tmp_path_factory.mktemp("nginx") / "scale-out.conf"
    conf_path.write_text(conf.replace("    server ingest:8000", f"    server 127.0.0.1:{app_port}")
                         .replace("    listen 80;", f"    listen 127.0.0.1:{nginx_port};"))
    bucket = f"compose-{secrets.token_hex(4)}"
    node_env = {"INGEST_S3_ENDPOINT": ceph.endpoints[0], "INGEST_S3_BUCKET": bucket,
                "INGEST_S3_ACCESS_KEY": ceph.access_key, "INGEST_S3_SECRET_KEY": ceph.secret_key,
                "INGEST_CATALOG_URL": postgres.new_database(), "INGEST_HOST": "127.0.0.1",
                "INGEST_PORT": str(app_port), "INGEST_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    compose_file = scale_out_file(conf_path.parent, image=image.tag, nginx_image=nginx_image,
                                  nginx_conf=conf_path, node_env=node_env)
    deployed = Deployment(project=f"ingest-scale-{secrets.token_hex(3)}", env={**podman_env(), **node_env},
                          app_port=app_port, nginx_port=nginx_port, files=(compose_file,))
    try:
        deployed.compose("up", "--detach")
        assert wait_until(lambda: _answers(deployed.url), timeout=120), deployed.compose("logs").stdout[-4000:]
        yield deployed
    finally:
        # The nodes' /data is an anonymous volume (the image's VOLUME), which `down` leaves.
        containers = podman("ps", "--all", "--quiet", f"--filter=label=io.podman.compose.project={deployed.project}",
                            check=False).stdout.split()
        volumes = podman("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *containers,
                         check=False).stdout.split() if containers else []
        deployed.compose("down", "--volumes", "--timeout=5", check=False)  # the stack, then its objects
        if volumes:
            podman("volume", "rm", "--force", *volumes, check=False)
        client = ceph.client()
        with contextlib.suppress(client.exceptions.ClientError):
            for key in object_keys(client, bucket):
                client.delete_object(Bucket=bucket, Key=key)
            client.delete_bucket(Bucket=bucket)
        podman("rmi", "--force", image.tag, check=False)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_scale_out_profile_stores_through_nginx_into_s3_with_a_postgresql_catalog(
        scale_out: Deployment, ceph: Ceph, tmp_path: Path) -> None:
    bucket = scale_out.env["INGEST_S3_BUCKET"]
    client = ceph.client()
    client.head_bucket(Bucket=bucket)  # made by the make-bucket service
    made = podman("inspect", "--format", "{{.State.ExitCode}}", f"{scale_out.project}_make-bucket_1").stdout
    assert made.strip() == "0"

    source = tmp_path / "upload.bin"
    source.write_bytes(os.urandom(40 * MiB))
    expected = sha256_of(source)
    started = time.monotonic()
    result = subprocess.run(["curl", "-sS", "-T", str(source), scale_out.url + "/uploads/"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)["files"][0]
    assert stored["sha256"] == expected
    assert stored["url"].startswith(scale_out.url)
    key = f"files/{stored['id']}"
    assert object_keys(client, bucket) == [key]
    assert object_sha256(client, bucket, key) == expected
    listed = httpx.get(scale_out.url + "/uploads").json()["items"]
    assert [item["id"] for item in listed] == [stored["id"]]  # the PostgreSQL catalog
    print(f"\ncontainer figure: 40 MiB through the scale-out profile into Ceph: {time.monotonic() - started:.1f} s")
