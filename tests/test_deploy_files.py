"""The Dockerfile and docker-compose.yml, checked by parsing them (CI has no Docker engine)."""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.validators import validator_for

from benchmarks.nginx_proxy import CONFIG_PATH, REPO, SITE_DIR, find_nginx
from ingest.config import Settings, parse_size
from tests.conftest import IN_CI, LiveServer, free_port

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return parsed


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def instruction(name: str) -> list[str]:
    return [arguments for keyword, arguments in dockerfile_instructions() if keyword == name]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes."""
    result = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        result[target] = source
    return result


def nginx_directive(name: str) -> str:
    (value,) = re.findall(rf"^\s*{name}\s+([^;]+);", CONFIG_PATH.read_text(), re.MULTILINE)
    return value.strip()


def test_compose_mounts_the_nginx_config_the_tests_run(compose: dict[str, Any]) -> None:
    nginx_mounts = mounts(compose["services"]["nginx"])
    (config_target,) = [t for t, s in nginx_mounts.items() if s.endswith("ingest.conf")]
    assert (REPO / nginx_mounts[config_target]).resolve() == CONFIG_PATH
    assert re.fullmatch(r"/etc/nginx/conf\.d/[\w.-]+\.conf", config_target)
    # ingest.conf includes its site snippets by a path relative to /etc/nginx.
    site_source = nginx_mounts[f"/etc/nginx/{SITE_DIR}"]
    assert sorted(p.name for p in (REPO / site_source).glob("*.conf")) == [
        "files.conf", "server.conf", "upstream.conf"]
    assert f"include {SITE_DIR}/upstream.conf;" in CONFIG_PATH.read_text()


def test_compose_gives_nginx_the_files_the_app_redirects_downloads_to(compose: dict[str, Any]) -> None:
    app, nginx = compose["services"]["app"], compose["services"]["nginx"]
    prefix = app["environment"]["INGEST_ACCEL_REDIRECT_PREFIX"]
    assert re.search(rf"^\s*location {re.escape(prefix)} {{\s*internal;", CONFIG_PATH.read_text(), re.MULTILINE)
    data_dir = app["environment"]["INGEST_DATA_DIR"]
    data_volume = next(v.split(":")[0] for v in app["volumes"] if v.split(":")[1] == data_dir)
    # nginx reads the same volume, read-only, where files.conf's alias points: <data dir>/files/.
    (nginx_data,) = [v for v in nginx["volumes"] if v.split(":")[0] == data_volume]
    target, mode = nginx_data.split(":")[1:]
    assert mode == "ro"
    alias = re.search(r"^alias (\S+);", (CONFIG_PATH.parent / "site" / "files.conf").read_text(), re.MULTILINE)
    assert alias is not None and alias.group(1) == f"{target}/files/"


def test_the_upstream_nginx_uses_is_the_app_service(compose: dict[str, Any]) -> None:
    upstream = (CONFIG_PATH.parent / "site" / "upstream.conf").read_text()
    port = compose["services"]["app"]["environment"]["INGEST_PORT"]
    assert re.search(rf"^server app:{port};$", upstream, re.MULTILINE)
    assert compose["services"]["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"


def test_the_app_has_a_health_check_on_healthz_in_compose_and_image(compose: dict[str, Any]) -> None:
    check = compose["services"]["app"]["healthcheck"]["test"]
    assert check[0] == "CMD" and "/healthz" in check[-1]
    (image_check,) = instruction("HEALTHCHECK")
    assert "/healthz" in image_check
    assert yaml.safe_load(image_check.partition("CMD ")[2]) == check[1:]


def health_command(compose: dict[str, Any]) -> list[str]:
    command: list[str] = compose["services"]["app"]["healthcheck"]["test"][1:]
    return [sys.executable if part == "python" else part for part in command]


def test_the_health_check_passes_against_a_live_server_and_fails_without_one(
        compose: dict[str, Any], live_server: LiveServer) -> None:
    up = subprocess.run(health_command(compose), env={"INGEST_PORT": str(live_server.port)},
                        capture_output=True, timeout=30)
    assert up.returncode == 0, up.stderr
    down = subprocess.run(health_command(compose), env={"INGEST_PORT": str(free_port())},
                          capture_output=True, timeout=30)
    assert down.returncode != 0


def test_only_nginx_is_trusted_for_forwarded_headers(compose: dict[str, Any]) -> None:
    app, nginx = compose["services"]["app"], compose["services"]["nginx"]
    environment = app["environment"]
    assert environment["INGEST_PROXY_HEADERS"] == "true"
    (network_name,) = nginx["networks"]
    nginx_address = nginx["networks"][network_name]["ipv4_address"]
    assert environment["INGEST_FORWARDED_ALLOW_IPS"] == nginx_address
    (subnet,) = [c["subnet"] for c in compose["networks"][network_name]["ipam"]["config"]]
    assert ipaddress.ip_address(nginx_address) in ipaddress.ip_network(subnet)
    assert network_name in app["networks"]
    assert "ports" not in app  # the app is reachable through nginx only


def test_data_lives_on_a_named_volume(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    data_dir = app["environment"]["INGEST_DATA_DIR"]
    source = mounts(app)[data_dir]
    assert source in compose["volumes"]  # a named volume, not a bind mount
    assert instruction("VOLUME") == [data_dir]


def test_compose_settings_are_real_settings_and_limits_agree_with_nginx(compose: dict[str, Any]) -> None:
    environment = compose["services"]["app"]["environment"]
    known = {f"INGEST_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert set(environment) <= known
    nginx_limit = nginx_directive("client_max_body_size")
    assert nginx_limit.endswith("g")  # nginx's g is GiB
    assert int(nginx_limit[:-1]) * 1024**3 == parse_size(environment["INGEST_MAX_REQUEST_SIZE"])
    assert parse_size(environment["INGEST_MAX_REQUEST_SIZE"]) == Settings().max_request_size


def test_the_image_is_slim_and_runs_as_a_user_other_than_root() -> None:
    (base,) = instruction("FROM")
    assert base == "${BASE}"  # the tests build on a local base (tests/test_container.py)
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    assert keywords[0] == "ARG"
    default = dict(argument.split("=", 1) for argument in instruction("ARG"))["BASE"]
    assert re.fullmatch(r"python:3\.1\d+-slim", default)
    users = instruction("USER")
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    (command,) = instruction("CMD")
    assert yaml.safe_load(command) == ["ingest", "serve"]


def test_every_nginx_directive_is_explained_by_a_comment() -> None:
    previous = ""
    for line in CONFIG_PATH.read_text().splitlines():
        stripped = line.strip()
        if stripped.endswith(";") and not stripped.startswith("#"):
            assert previous.startswith("#"), f"no comment for: {stripped}"
        elif ";" in stripped and not stripped.startswith("#"):
            assert "#" in stripped.partition(";")[2], f"no comment for: {stripped}"
        if stripped:
            previous = stripped


def compose_schema_errors(document: Any) -> list[str]:
    # The Compose Specification's JSON schema, as vendored by check-jsonschema.
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_schema_errors(compose) == []
    # The control: a misspelt key is caught.
    broken = yaml.safe_load(COMPOSE.read_text().replace("ipv4_address", "ipv4_adress", 1))
    assert compose_schema_errors(broken) != []


def test_nginx_accepts_the_config_with_the_compose_site_files(tmp_path: Path) -> None:
    nginx = find_nginx()
    if nginx is None:
        pytest.fail("nginx is not installed; .ci/run must install it") if IN_CI else pytest.skip("no nginx")
    # The compose files as they are, except the upstream's name `app`, which only Docker's DNS knows.
    site = tmp_path / SITE_DIR
    shutil.copytree(CONFIG_PATH.parent / "site", site)
    upstream = (site / "upstream.conf").read_text()
    (site / "upstream.conf").write_text(re.sub(r"server app:", "server 127.0.0.1:", upstream))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{ client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
        f"       include {CONFIG_PATH}; }}\n")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
