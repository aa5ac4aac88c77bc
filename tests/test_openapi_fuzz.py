"""schemathesis against /openapi.json on a real server: no 5xx and no answer that
contradicts the schema (status codes, content types, response bodies)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import LiveServer

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_no_5xx_and_no_answer_contradicting_the_schema(live_server: LiveServer,
                                                                         tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).parent / "st"
    assert schemathesis.exists(), "schemathesis is in the test extra"
    result = subprocess.run(
        [str(schemathesis), "run", live_server.url + "/openapi.json", "--checks", CHECKS,
         "--max-examples", "40", "--seed", "6", "--request-timeout", "30",
         # An event stream waits up to a minute for its upload to start: a request/response
         # fuzzer cannot judge it, and tests/test_progress.py covers it.
         "--exclude-path", "/uploads/progress/{token}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache goes there, not in the tree
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
             "PYTHONPATH": str(Path(__file__).parents[1])})
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.lower().split("summary")[-1]
