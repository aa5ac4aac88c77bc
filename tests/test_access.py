"""Scoped tokens: every scope against every endpoint (tus included), in process; then
hypothesis over random token sets, scopes, links and requests, finding none that does more
than its credential allows."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ingest.config import Settings
from ingest.edge.access import ADMIN, DELETE, READ, SCOPES, UPLOAD, parse_tokens
from tests.conftest import file_part, multipart_body
from tests.inprocess import Answer, InProcessApp

TOKENS = ("root:root-secret:admin", "up:up-secret:upload", "rd:rd-secret:read", "del:del-secret:delete",
          "ur:ur-secret:upload+read")
ROOT = [(b"authorization", b"Bearer root-secret")]
TUS = [(b"tus-resumable", b"1.0.0")]
OCTETS = [*TUS, (b"content-type", b"application/offset+octet-stream"), (b"upload-offset", b"0")]
MULTIPART = [(b"content-type", b"multipart/form-data; boundary=b0undary")]


@dataclass
class Fixtures:
    """Things the requests act on, made with the admin token."""

    app: InProcessApp

    def file_id(self) -> str:
        answer = self.app.request("PUT", "/uploads/f.txt", headers=[*ROOT, *length([b"hello"])], chunks=[b"hello"])
        assert answer.status == 201, answer.body
        return str(answer.json()["files"][0]["id"])

    def tus_path(self) -> str:
        answer = self.app.request("POST", "/files/", headers=[*ROOT, *TUS, (b"upload-length", b"5")])
        assert answer.status == 201, answer.body
        return (answer.header("location") or "").removeprefix("http://testserver")

    def link_id(self) -> str:
        return str(self.app.request("POST", "/links", headers=ROOT, chunks=[b"{}"]).json()["link"]["id"])


Request = tuple[str, str, list[tuple[bytes, bytes]], list[bytes]]
# endpoint -> (scopes of which one is needed (empty: public), how to build the request)
ENDPOINTS: dict[str, tuple[frozenset[str], Callable[[Fixtures], Request]]] = {
    "GET /healthz": (frozenset(), lambda f: ("GET", "/healthz", [], [])),
    "GET /": (frozenset(), lambda f: ("GET", "/", [], [])),
    "POST /uploads": (frozenset({UPLOAD}), lambda f: (
        "POST", "/uploads", MULTIPART, [multipart_body([file_part("f", "a.txt", b"abc")])])),
    "PUT /uploads/<name>": (frozenset({UPLOAD}), lambda f: ("PUT", "/uploads/a.txt", [], [b"abc"])),
    "GET /uploads": (frozenset({READ}), lambda f: ("GET", "/uploads", [], [])),
    "GET /uploads/<id>": (frozenset({READ}), lambda f: ("GET", f"/uploads/{f.file_id()}", [], [])),
    "GET /uploads/<id>/content": (frozenset({READ}), lambda f: ("GET", f"/uploads/{f.file_id()}/content", [], [])),
    "HEAD /uploads/<id>/content": (frozenset({READ}), lambda f: (
        "HEAD", f"/uploads/{f.file_id()}/content", [], [])),
    "DELETE /uploads/<id>": (frozenset({DELETE}), lambda f: ("DELETE", f"/uploads/{f.file_id()}", [], [])),
    "OPTIONS /files/": (frozenset({UPLOAD}), lambda f: ("OPTIONS", "/files/", [], [])),
    "POST /files/": (frozenset({UPLOAD}), lambda f: ("POST", "/files/", [*TUS, (b"upload-length", b"3")], [])),
    "HEAD /files/<id>": (frozenset({UPLOAD}), lambda f: ("HEAD", f.tus_path(), TUS, [])),
    "PATCH /files/<id>": (frozenset({UPLOAD}), lambda f: ("PATCH", f.tus_path(), OCTETS, [b"hello"])),
    "DELETE /files/<id>": (frozenset({UPLOAD}), lambda f: ("DELETE", f.tus_path(), TUS, [])),
    "POST /links": (frozenset({ADMIN}), lambda f: ("POST", "/links", [], [b'{"label": "x"}'])),
    "GET /links": (frozenset({ADMIN}), lambda f: ("GET", "/links", [], [])),
    "GET /links/<id>": (frozenset({ADMIN}), lambda f: ("GET", f"/links/{f.link_id()}", [], [])),
    "DELETE /links/<id>": (frozenset({ADMIN}), lambda f: ("DELETE", f"/links/{f.link_id()}", [], [])),
    "GET /metrics": (frozenset({READ}), lambda f: ("GET", "/metrics", [], [])),
    "GET /openapi.json": (frozenset(SCOPES), lambda f: ("GET", "/openapi.json", [], [])),
}
PRINCIPALS = {"admin": b"root-secret", "upload": b"up-secret", "read": b"rd-secret", "delete": b"del-secret",
              "upload+read": b"ur-secret", "wrong secret": b"nope", "none": None}


def scopes_of(principal: str) -> frozenset[str]:
    return frozenset(principal.split("+")) & frozenset(SCOPES)


def allowed(needed: frozenset[str], scopes: frozenset[str]) -> bool:
    return not needed or bool(needed & scopes) or ADMIN in scopes


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InProcessApp]:
    with InProcessApp(Settings(data_dir=tmp_path / "data", fsync=False, tokens=TOKENS)) as running:
        yield running


def send(app: InProcessApp, request: Request, secret: bytes | None, query: bytes = b"") -> Answer:
    method, path, headers, chunks = request
    auth = [(b"authorization", b"Bearer " + secret)] if secret is not None else []
    return app.request(method, path, headers=[*headers, *auth, *length(chunks)], chunks=chunks, query=query)


def length(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(sum(map(len, chunks))).encode())]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_each_scope_reaches_exactly_its_endpoints(app: InProcessApp, endpoint: str) -> None:
    needed, build = ENDPOINTS[endpoint]
    fixtures = Fixtures(app)
    for principal, secret in PRINCIPALS.items():
        answer = send(app, build(fixtures), secret)
        if allowed(needed, scopes_of(principal)):
            assert answer.status < 400, (principal, answer.status, answer.body)
        elif secret in (None, b"nope"):
            assert (answer.status, answer.json()["error"]) == (401, "unauthorized"), principal
        else:
            assert (answer.status, answer.json()["error"]) == (403, "forbidden"), principal
            assert needed & frozenset(SCOPES) and any(s in answer.json()["detail"] for s in needed)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_an_upload_link_reaches_only_uploads(app: InProcessApp, endpoint: str) -> None:
    needed, build = ENDPOINTS[endpoint]
    secret = app.request("POST", "/links", headers=ROOT, chunks=[b"{}"]).json()["secret"].encode()
    answer = send(app, build(Fixtures(app)), secret)
    if not needed or endpoint in ("POST /uploads", "PUT /uploads/<name>", "OPTIONS /files/", "POST /files/",
                                  "GET /openapi.json"):
        assert answer.status < 400, (answer.status, answer.body)
    else:  # tus resources made with a token are not the link's to touch
        assert (answer.status, answer.json()["error"]) == (403, "forbidden"), answer.body


def test_a_link_in_the_query_string_works_like_the_header(app: InProcessApp) -> None:
    secret = app.request("POST", "/links", headers=ROOT, chunks=[b"{}"]).json()["secret"]
    answer = app.request("PUT", "/uploads/q.txt", query=f"link={secret}".encode(), chunks=[b"abc"],
                         headers=length([b"abc"]))
    assert answer.status == 201
    assert app.request("GET", "/uploads", query=f"link={secret}".encode()).status == 403


def test_stored_files_and_the_access_log_name_the_token_never_the_secret(
        app: InProcessApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.access")
    answer = app.request("PUT", "/uploads/a.txt", headers=[(b"authorization", b"Bearer up-secret"), *length([b"x"])],
                         chunks=[b"x"])
    assert (answer.json()["files"][0]["token"], answer.json()["files"][0]["link"]) == ("up", None)
    assert any("token=up" in record.getMessage() for record in caplog.records)
    assert not any("up-secret" in record.getMessage() for record in caplog.records)


def test_token_entries_are_parsed_and_bad_ones_refused(caplog: pytest.LogCaptureFixture) -> None:
    [plain, scoped] = parse_tokens(["s3cret", "ci:a:b:c:upload+read"])
    assert (plain.name, plain.scopes) == ("token-1", frozenset(SCOPES))
    assert "deprecated" in caplog.text
    assert (scoped.name, scoped.secret, scoped.scopes) == ("ci", b"a:b:c", frozenset({UPLOAD, READ}))
    for bad in (["x:y:write"], ["bad name:y:read"], ["x::read"], ["a:1:read", "a:2:read"]):
        with pytest.raises(ValueError):
            parse_tokens(bad)


# --- hypothesis: random token sets and requests ------------------------------------------

CHEAP = ["GET /healthz", "POST /uploads", "PUT /uploads/<name>", "GET /uploads", "OPTIONS /files/",
         "POST /files/", "GET /links", "POST /links", "GET /metrics", "GET /openapi.json"]
_scope_sets = st.frozensets(st.sampled_from(SCOPES), min_size=1)


@st.composite
def token_sets(draw: st.DrawFn) -> list[tuple[str, str, frozenset[str]]]:
    scope_sets = draw(st.lists(_scope_sets, min_size=1, max_size=4))
    return [(f"t{n}", f"secret-{n}-{draw(st.integers(0, 99))}", scopes) for n, scopes in enumerate(scope_sets)]


@given(tokens=token_sets(), picks=st.lists(st.tuples(st.sampled_from(CHEAP), st.integers(-2, 3)),
                                           min_size=1, max_size=6),
       link_state=st.sampled_from(["fresh", "expired", "revoked"]))
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_random_credential_does_more_than_its_scopes_allow(
        tmp_path_factory: pytest.TempPathFactory, tokens: list[tuple[str, str, frozenset[str]]],
        picks: list[tuple[str, int]], link_state: str) -> None:
    entries = tuple(f"{name}:{secret}:{'+'.join(sorted(scopes))}" for name, secret, scopes in tokens)
    data_dir = tmp_path_factory.mktemp("access") / "data"
    with InProcessApp(Settings(data_dir=data_dir, fsync=False, tokens=entries)) as app:
        admin = next((secret for _, secret, scopes in tokens if ADMIN in scopes), None)
        link_secret = None
        if admin is not None:
            created = app.request("POST", "/links", headers=[(b"authorization", f"Bearer {admin}".encode())],
                                  chunks=[b'{"max_files": 2}']).json()
            link_secret = created["secret"]
            if link_state != "fresh":
                column = "expires_at" if link_state == "expired" else "revoked_at"
                with sqlite3.connect(app.settings.catalog_path) as connection:
                    connection.execute(f"UPDATE links SET {column} = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
                                       (created["link"]["id"],))
        for endpoint, which in picks:
            needed, build = ENDPOINTS[endpoint]
            if which == -2:  # the upload link (when there is one), else a made-up secret
                secret, scopes = (link_secret or "made-up"), frozenset({UPLOAD} if link_secret else ())
            elif which == -1 or which >= len(tokens):
                secret, scopes = "not-a-token", frozenset()
            else:
                secret, scopes = tokens[which][1], tokens[which][2]
            answer = send(app, build(Fixtures(app)), secret.encode())
            if secret == link_secret and secret is not None:
                may = not needed or (link_state == "fresh" and endpoint in (
                    "POST /uploads", "PUT /uploads/<name>", "OPTIONS /files/", "POST /files/", "GET /openapi.json"))
                if answer.status == 403 and answer.json()["error"] == "link_used_up":
                    continue  # the link's two files are spent: refused, as it must be
            else:
                may = allowed(needed, scopes)
            assert (answer.status < 400) is may, (endpoint, scopes, answer.status, answer.body)
            if not may:
                assert answer.status in (401, 403)
