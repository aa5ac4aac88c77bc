"""deploy/compose.scale-out.yml, checked by parsing it (CI has no Docker engine); nginx's
scale-out config runs for real in tests/test_scale_out.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.config import Settings
from tests.test_deploy_files import compose_schema_errors

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@pytest.fixture(scope="module")
def scale_out() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.scale-out.yml").read_text())
    return parsed


def test_scale_out_compose_follows_the_compose_specification(scale_out: dict[str, Any]) -> None:
    assert compose_schema_errors(scale_out) == []


def test_every_node_uses_s3_and_the_shared_postgresql_catalog(scale_out: dict[str, Any]) -> None:
    services = scale_out["services"]
    environment = services["ingest"]["environment"]
    assert set(environment) <= {f"INGEST_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert environment["INGEST_STORAGE"] == "s3"
    assert environment["INGEST_S3_ENDPOINT"] == "http://minio:9000"
    assert environment["INGEST_CATALOG_URL"].startswith("postgresql://")
    assert environment["INGEST_CATALOG_URL"].rsplit("@", 1)[1].startswith("postgres:")
    assert "ports" not in services["ingest"]  # reachable through nginx only
    assert services["ingest"]["build"]["context"] == ".."  # the project's Dockerfile
    assert services["ingest"]["build"]["args"]["EXTRAS"] == "s3,postgres"  # with both backends
    # The bucket is made by the same image, before any node starts.
    assert services["make-bucket"]["build"] == services["ingest"]["build"]
    assert services["make-bucket"]["image"] == services["ingest"]["image"]
    assert services["make-bucket"]["command"] == ["ingest", "create-bucket"]
    assert services["ingest"]["depends_on"]["make-bucket"]["condition"] == "service_completed_successfully"


def test_nginx_mounts_the_scale_out_config_and_points_at_the_nodes(scale_out: dict[str, Any]) -> None:
    volumes = scale_out["services"]["nginx"]["volumes"]
    source, target = volumes[0].split(":")[:2]
    assert target == "/etc/nginx/conf.d/default.conf"
    config = (DEPLOY / source).read_text()
    assert "server ingest:8000" in config and "proxy_request_buffering off;" in config
