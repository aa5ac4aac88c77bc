"""README's "Scaling out" commands, run as written: the Ceph block (ceph-up.sh, the bucket, two
nodes, ceph-down.sh --purge), the role and database, and nginx from scale-out.conf outside
compose. Only what cannot be run here is replaced, each by a plain substitution listed in
`_substituted`: directories and ports (free ones, not the defaults), `sudo` (the test is the
superuser of its own PostgreSQL and nginx), and the placeholder comment between starting the
nodes and stopping them, which becomes README's nginx block followed by an upload."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.backends import Postgres, free_port_block
from tests.conftest import free_port, require_tool, write_random_file

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PLACEHOLDER = "# ... nginx in front (below), uploads ..."


def readme_block(first_line_start: str) -> str:
    """The fenced sh block of README's scaling-out section whose first line starts so."""
    section = README.read_text().split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(first_line_start)]
    return block


def _substituted(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"README no longer says {old!r}"
        text = text.replace(old, new)
    return text


def test_readme_scale_out_commands_work_as_written(postgres: Postgres, tmp_path: Path) -> None:
    for tool in ("ceph-mon", "radosgw", "psql", "curl", "nginx"):
        require_tool(tool)
    ceph_dir = tmp_path / "ceph"
    ports = {"8001": str(free_port()), "8002": str(free_port()), "8080": str(free_port())}
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n"
        f"  proxy_temp_path {prefix}/proxy;\n  include {prefix}/conf.d/*.conf;\n}}\n")
    (prefix / "conf.d").mkdir()
    upload = tmp_path / "big.iso"
    expected = write_random_file(upload, 64 * 1024 * 1024)
    out = tmp_path / "out"
    out.mkdir()

    database = _substituted(readme_block('sudo -u postgres psql'), {
        "sudo -u postgres psql": f"psql -h 127.0.0.1 -p {postgres.port} -U postgres"})
    nginx = _substituted(readme_block("sed -e"), {
        "| sudo tee /etc/nginx/conf.d/ingest.conf": f"> {prefix}/conf.d/ingest.conf",
        "sudo nginx -t && sudo nginx -s reload":
            f"nginx -t -p {prefix} -c {prefix}/nginx.conf && "
            f"{{ nginx -p {prefix} -c {prefix}/nginx.conf -g 'daemon off;' & NGINX=$!; }}",
        "curl -T big.iso": f"wait_for {ports['8080']}; curl -sS -o {out}/put.json -T {upload}",
        **{f"127.0.0.1:{port}": f"127.0.0.1:{ports[port]}" for port in ports},
    })
    checks = (
        f"wait_for() {{ for _ in $(seq 300); do curl -sf http://127.0.0.1:$1/healthz >/dev/null && return; "
        f"sleep 0.2; done; echo \"nothing on port $1\" >&2; exit 1; }}\n"
        f"wait_for {ports['8001']}; wait_for {ports['8002']}\n"
        f"{nginx}"
        f"curl -sS -o {out}/listed.json http://127.0.0.1:{ports['8002']}/uploads\n"
        f"kill $NGINX\n"
        # ceph-down.sh without CEPH_DIR (and no cluster in its default directory): it must find
        # this cluster, or, with other clusters running on the machine, fail naming them.
        f"env -u CEPH_DIR TMPDIR={tmp_path} deploy/ceph/ceph-down.sh > {out}/down.txt 2>&1 "
        f"&& echo 0 > {out}/down.rc || echo $? > {out}/down.rc\n")
    hand = _substituted(readme_block('eval "$(CEPH_DIR='), {
        "/tmp/ceph": str(ceph_dir),
        "postgresql://ingest:change-me@127.0.0.1/ingest":
            f"postgresql://ingest:change-me@127.0.0.1:{postgres.port}/ingest",
        "--port 8001": f"--port {ports['8001']}",
        "--port 8002": f"--port {ports['8002']}",
        PLACEHOLDER: checks,
        "kill %1 %2": "kill %1 %2; wait",
    })
    script = f"set -euo pipefail\n{database}{hand}"
    # Ceph's ports: free ones instead of the defaults (other clusters may be running).
    mon, ms, rgw = free_port_block(2), free_port_block(100), free_port_block(2)
    # README's commands set every INGEST_* setting they need; none may come from this process.
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("INGEST_")}
    env = {**inherited, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CEPH_MON_PORT": str(mon), "CEPH_MS_PORTS": f"{ms} {ms + 99}", "CEPH_RGW_PORT": str(rgw)}
    env.pop("CEPH_DIR", None)
    try:
        result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600, check=False)
        assert result.returncode == 0, \
            f"{script}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    finally:
        if ceph_dir.exists():  # the commands failed before their own ceph-down.sh --purge
            subprocess.run(["bash", "deploy/ceph/ceph-down.sh", "--purge"], cwd=ROOT,
                           env={**env, "CEPH_DIR": str(ceph_dir)}, capture_output=True, timeout=120, check=False)

    answer = json.loads((out / "put.json").read_text())
    assert "files" in answer, f"the upload through nginx was refused: {answer}\n{result.stderr[-3000:]}"
    stored = answer["files"][0]
    assert stored["sha256"] == expected
    assert stored["url"].startswith(f"http://127.0.0.1:{ports['8080']}/")  # the proxy's address: proxy headers on
    listed = json.loads((out / "listed.json").read_text())["items"]
    assert [item["id"] for item in listed] == [stored["id"]]  # the other node's catalog is the same
    down = (out / "down.txt").read_text()
    if (out / "down.rc").read_text().strip() == "0":
        assert f"found the cluster in {ceph_dir}" in down or not down, down
    else:
        assert "clusters running" in down and str(ceph_dir) in down, down
    assert not ceph_dir.exists()  # README's ceph-down.sh --purge removed it
    assert hashlib.sha256(upload.read_bytes()).hexdigest() == expected
