"""`jobctl serve`: the seed's HTTP contract against a real server process,
on SQLite and on the live PostgreSQL. Jobs are submitted with httpx as the
seed's users submit them with curl; the rows are read straight from the
database; the server is killed with SIGKILL and started again.

What these tests cannot prove: TLS in front of a real network (only the
refusal to listen off loopback without it is tested), and many servers on
many hosts (two servers on one host share one database here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from servehelp import Served, create_token

SEED_BODY = {"name": "SUMA_SIMPLE", "params": [{"name": "vA", "value": 10}]}


@pytest.fixture
def serve_env(env):
    if env.backend != "sqlite":
        env.sql("DELETE FROM JOB_TOKENS")  # the shared server database: no token of another test
    return env


def _served(env, *args, **kw) -> Served:
    return Served(env.tmp / f"serve-{time.monotonic_ns()}.log", *args, **kw)


def _wait_job(client, job_id: str, predicate, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job}"
        time.sleep(0.1)


def test_the_seeds_steps_survive_kill_9_of_the_server(serve_env):
    """Create a job, see it in the table, kill -9 the API, start it again,
    read the job: it completed meanwhile, and the restarted server said how
    many jobs of the last 24 h it holds."""
    env = serve_env
    token = create_token(env, "seed", "submit", "read")
    server = _served(env).start()
    try:
        with server.client(token) as http:
            r = http.post("/procedure/async", json=SEED_BODY)
            assert r.status_code == 202, r.text
            seed = r.json()
            assert seed["status"] == "queued" and len(seed["job_id"]) == 32
            assert r.headers["location"] == f"/jobs/{seed['job_id']}"
            # a job that is still running when the server dies
            r = http.post("/procedure/async", json={"name": "DEMO_SLEEP",
                                                    "params": [{"name": "p_seconds", "value": 6}]})
            assert r.status_code == 202, r.text
            slow = r.json()["job_id"]
        # step 2: the row is in the table, submitted by the token's name
        rows = {r["job_id"]: r for r in env.rows()}
        assert set(rows) == {seed["job_id"], slow}
        assert rows[seed["job_id"]]["submitted_by"] == "seed"
        env.wait_for(slow, lambda j: j["status"] == "running")
    finally:
        server.kill9()
    # the server is gone; the job runs on
    assert env.status(slow)["status"] == "running"
    again = _served(env).start()
    try:
        assert "2 job(s) of the last 24 h" in again.log()
        with again.client(token) as http:
            done = _wait_job(http, seed["job_id"][:6], lambda j: j["status"] == "completed")
            assert done["result"] == {"vresult": 10}
            assert done["job_id"] == seed["job_id"]
            finished = _wait_job(http, slow, lambda j: j["status"] != "running")
            assert finished["status"] == "completed" and finished["progress"] == 100
            # the job exactly as `jobctl status ID -f json` prints it (same renderer)
            cli = env.cli("status", seed["job_id"], "--format", "json")
            assert http.get(f"/jobs/{seed['job_id']}").text == cli.stdout
    finally:
        again.stop()


def test_tokens_401_403_revoked_expired_and_nothing_written(serve_env):
    env = serve_env
    reader = create_token(env, "reader", "read")
    demo_only = create_token(env, "demo-only", "submit", "read", procedures="DEMO_*")
    revoked = create_token(env, "gone", "submit", "read")
    expiring = create_token(env, "brief", "submit", "read", expires="1s")
    canceller = create_token(env, "canceller", "cancel", "read")
    assert env.cli("token", "revoke", "gone").exit_code == 0
    assert env.cli("token", "revoke", "nosuch").exit_code == 3
    time.sleep(1.2)
    server = _served(env).start()
    try:
        def post(token, body=SEED_BODY):
            with server.client(token) as http:
                return http.post("/procedure/async", json=body)

        cases = [
            (None, 401, "a token is required"),
            ("jct_0123456789abcdef_" + "x" * 43, 401, "unknown token"),
            ("not-a-token", 401, "unknown token"),
            (reader, 403, "lacks the submit scope"),
            (demo_only, 403, "may not run SUMA_SIMPLE"),
            (revoked, 401, "token gone is revoked"),
            (expiring, 401, "token brief is expired"),
        ]
        for token, status, text in cases:
            r = post(token)
            assert r.status_code == status, (token, r.text)
            body = r.json()
            assert text.lower() in body["error"].lower() and body["code"] == 2
            if status == 401:
                assert r.headers["www-authenticate"].startswith("Bearer")
        assert env.rows() == []  # nothing written by any of them
        # a Basic header is no Bearer token
        with server.client() as http:
            r = http.get("/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
            assert r.status_code == 401
        # the pattern admits DEMO_SLEEP
        r = post(demo_only, {"name": "demo_sleep", "params": {"p_seconds": 5}})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        # cancel: scope, then procedure, then done
        with server.client(demo_only) as http:
            assert http.post(f"/jobs/{job_id}/cancel").status_code == 403
        with server.client(canceller) as http:
            r = http.post(f"/jobs/{job_id[:8]}/cancel")
            assert r.status_code == 200, r.text
            assert r.json()["action"] in ("cancelled", "requested")
        env.wait_for(job_id, lambda j: j["status"] == "cancelled")
        # last use is recorded; the token itself is never listed
        listed = {t["name"]: t for t in env.json("token", "list")}
        assert listed["demo-only"]["last_used_at"] and listed["reader"]["last_used_at"]
        assert listed["gone"]["state"] == "revoked" and listed["brief"]["state"] == "expired"
        assert demo_only not in env.cli("token", "list", "--format", "json").stdout
        # no token in the server's log
        log = server.log()
        for secret in (reader, demo_only, revoked, expiring, canceller):
            assert secret not in log and secret[21:] not in log
    finally:
        server.stop()


def test_bad_input_is_a_clear_json_error_and_writes_nothing(serve_env):
    env = serve_env
    token = create_token(env, "ci", "submit", "read", "cancel")
    server = _served(env, "--body-limit", "4096").start()
    try:
        with server.client(token) as http:
            def check(response, status, text, code=2):
                assert response.status_code == status, response.text
                body = response.json()
                assert text.lower() in body["error"].lower(), body
                assert body["code"] == code
                assert "\n" not in body["error"]

            send = lambda raw: http.post("/procedure/async", content=raw,  # noqa: E731
                                         headers={"Content-Type": "application/json"})
            check(send(b'{"name": "SUMA_SIMPLE", "params": ['), 400, "invalid JSON")
            check(send(b""), 400, "empty")
            check(send(b"\xff\xfe"), 400, "not UTF-8")
            check(send(b'[1, 2]'), 400, "expected a JSON object")
            check(send(b'{"name": "SUMA_SIMPLE", "params": [{"name": "vA", "value": NaN}]}'),
                  400, "NaN")
            check(http.post("/procedure/async", json={"params": []}), 400, '"name"')
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "bogus": 1}),
                  400, "unknown field 'bogus'")
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "params": "vA=1"}),
                  400, '"params" must be')
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "params": [
                {"name": "vA", "value": 1}, {"name": "VA", "value": 2}]}), 400, "given twice")
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "retries": "x"}),
                  400, '"retries" has the wrong type')
            # the library's own refusals: the CLI's messages, 404 and 422
            check(http.post("/procedure/async", json={"name": "NO_SUCH_PROC"}), 404,
                  "NO_SUCH_PROC", code=3)
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "params": [
                {"name": "vA", "value": "ten"}]}), 422, "vA")
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "params": [
                {"name": "vZ", "value": 1}]}), 422, "vZ")
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "timeout": "soon",
                                                      "params": {"vA": 1}}), 422, "timeout")
            # over the limit: refused from the declared length, and when streamed without one
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE",
                                                      "params": {"vA": "1" * 5000}}),
                  413, "over the limit of 4096 bytes")
            check(http.post("/procedure/async", content=iter([b"{" + b" " * 3000, b" " * 3000])),
                  413, "over the limit")
            # injection attempts: refused as names, never run as SQL
            for name in ("SUMA_SIMPLE; DROP TABLE ASYNC_JOBS", "SUMA_SIMPLE(1); --",
                         "x' OR '1'='1", "SUMA_SIMPLE\u0000"):
                r = http.post("/procedure/async", json={"name": name, "params": {"vA": 1}})
                assert r.status_code in (404, 422), (name, r.text)
                assert r.json()["code"] in (2, 3)
            check(http.post("/procedure/async", json={"name": "SUMA_SIMPLE", "params": [
                {"name": "vA) ; DROP TABLE ASYNC_JOBS; --", "value": 1}]}), 422, "DROP TABLE")
            for ref in ("abcd' OR 1=1 --", "zzzz", "ab"):
                r = http.get(f"/jobs/{ref}")
                assert r.status_code == 422 and "invalid job id" in r.json()["error"], r.text
            check(http.get("/jobs/abcdef12"), 404, "no job abcdef12", code=3)
            check(http.post("/jobs/abcdef12/cancel"), 404, "no job", code=3)
            check(http.get("/jobs", params={"status": "weird"}), 422, "unknown status")
            check(http.get("/jobs", params={"limit": "many"}), 400, "limit")
            check(http.get("/jobs", params={"order": "x"}), 400, "unknown query parameter")
            check(http.get("/stats", params={"since": "forever"}), 422, "since")
            check(http.get("/procedures/NO_SUCH_PROC"), 404, "NO_SUCH_PROC", code=3)
            check(http.get("/nowhere"), 404, "no such endpoint", code=3)
            check(http.get("/procedure/async"), 405, "not allowed")
        assert env.rows() == []
        assert len(env.rows()) == 0  # ASYNC_JOBS is still there, and empty
    finally:
        server.stop()


def test_the_reads_answer_as_the_cli_does(serve_env):
    env = serve_env
    token = create_token(env, "ops", "submit", "read")
    ok = env.submit("SUMA_SIMPLE", "-p", "vA=1", "-p", "vB=2")
    bad = env.submit("DEMO_FAIL", "-p", "p_message=broken on purpose")
    env.wait_for(ok, lambda j: j["status"] == "completed")
    env.wait_for(bad, lambda j: j["status"] == "failed")
    server = _served(env).start()
    try:
        with server.client(token) as http:
            listed = http.get("/jobs", params={"status": "failed"}).json()
            assert [j["job_id"] for j in listed] == [bad]
            assert listed == env.json("list", "--status", "failed")
            assert http.get("/stats").json() == env.json("stats")
            queues = http.get("/queues").json()
            assert queues == env.json("queue", "list")
            described = http.get("/procedures/suma_simple").json()
            assert described == env.json("describe", "SUMA_SIMPLE")
            overview = http.get("/overview").json()
            assert overview["failures"][0]["job_id"] == bad
            assert "broken on purpose" in overview["failures"][0]["first_line"]
            procs = {p["procedure"].upper(): p for p in overview["procedures"]}
            assert procs["SUMA_SIMPLE"]["completed"] == 1 and procs["SUMA_SIMPLE"]["p50_s"] is not None
            doc = http.get("/openapi.json").json()
            assert doc["openapi"].startswith("3.") and "/procedure/async" in doc["paths"]
            metrics = http.get("/metrics")
            assert metrics.status_code == 200
            text = metrics.text
            assert 'jobctl_jobs{queue="default",status="completed"} 1.0' in text
            assert 'jobctl_jobs{queue="default",status="failed"} 1.0' in text
            assert re.search(r'jobctl_job_duration_seconds_count\{procedure="(SUMA_SIMPLE|suma_simple)"\} 1.0', text)
            assert "jobctl_jobs_running 0.0" in text and "jobctl_pools_alive 0.0" in text
        with server.client() as http:
            assert http.get("/metrics").status_code == 401
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/readyz").json() == {"status": "ready"}
    finally:
        server.stop()


def test_readyz_is_503_while_the_schema_is_not_there(serve_env, empty_dsn, tmp_path):
    if serve_env.backend == "sqlite":
        pytest.skip("SQLite: jobctl creates the schema on its first connection to the file")
    server = Served(tmp_path / "serve.log", env={"JOBCTL_DSN": empty_dsn}).start()
    try:
        with server.client() as http:
            assert http.get("/healthz").status_code == 200
            r = http.get("/readyz")
            assert r.status_code == 503 and r.json()["code"] == 4
            assert "db init" in r.json()["error"]
            r = http.get("/jobs", headers={"Authorization": "Bearer jct_0123456789abcdef_" + "y" * 43})
            assert r.status_code == 503 and r.json()["code"] == 4
        assert "jobctl db init" in server.log()  # said at start too
    finally:
        server.stop()


def test_readyz_is_503_while_the_database_is_unreachable_and_the_password_stays_out(tmp_path,
                                                                                   monkeypatch):
    """A closed port: the server starts, says so, and answers 503; the DSN's
    password appears nowhere in its log."""
    from servehelp import free_port

    dsn = f"postgresql://jobctl:s3cr3t-pw@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    server = Served(tmp_path / "serve.log", env={"JOBCTL_DSN": dsn}).start()
    try:
        with server.client() as http:
            r = http.get("/readyz")
            assert r.status_code == 503 and r.json()["code"] == 4
            assert "s3cr3t" not in r.text
        log = server.log()
        assert "127.0.0.1" in log and "s3cr3t" not in log
    finally:
        server.stop()


@pytest.mark.parametrize("args, text", [
    (["--host", "0.0.0.0"], "--insecure-tokens-in-cleartext"),
    (["--host", "192.0.2.1", "--certfile", "/nonexistent.pem", "--keyfile", "/nonexistent.key"],
     "not a readable file"),
    (["--certfile", "/etc/hostname"], "go together"),
    (["--body-limit", "10"], "--body-limit"),
    (["--metrics-window", "0"], "--metrics-window"),
    (["--metrics-window", "soon"], "--metrics-window"),
    (["--log-level", "chatty"], "--log-level"),
    (["--port", "70000"], "--port"),
])
def test_serve_refuses_unsafe_or_bad_options_with_exit_2(sqlite_env, args, text):
    result = sqlite_env.cli("serve", *args)
    assert result.exit_code == 2, result.stderr
    assert text in result.stderr


def test_token_create_prints_only_the_token_and_refuses_bad_input(sqlite_env):
    env = sqlite_env
    result = env.cli("token", "create", "a", "--scope", "read,submit")
    assert result.exit_code == 0 and result.stdout.count("\n") == 1
    token = result.stdout.strip()
    import hashlib

    from jobctl.backends import get_backend
    from jobctl.config import parse_dsn

    backend = get_backend(parse_dsn(env.dsn))
    conn = backend.connect()
    try:
        stored = backend.execute(conn, "SELECT token_hash, scopes FROM JOB_TOKENS").fetchall()
    finally:
        conn.close()
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(), "read,submit")]
    for args, code, text in [
        (["token", "create", "a", "--scope", "read"], 2, "exists"),
        (["token", "create", "b", "--scope", "write"], 2, "unknown scope 'write'"),
        (["token", "create", "b"], 2, "--scope"),
        (["token", "create", "bad name", "--scope", "read"], 2, "invalid token name"),
        (["token", "create", "b", "--scope", "read", "--expires", "soon"], 2, "--expires"),
        (["token", "create", "b", "--scope", "read", "--procedures", " , "], 2, "--procedures"),
    ]:
        result = env.cli(*args)
        assert result.exit_code == code, (args, result.stderr)
        assert text in result.stderr
    assert env.cli("token", "revoke", "a").exit_code == 0
    assert env.cli("token", "create", "a", "--scope", "read").exit_code == 0  # the name is free again


def test_procedure_patterns_match_whole_names_case_insensitively():
    from jobctl.tokens import procedure_matcher

    m = procedure_matcher("ETL_*,suma_simple")
    assert m("ETL_LOAD") and m("etl_x") and m("SUMA_SIMPLE") and m("SCOTT.ETL_LOAD")
    assert not m("XETL_LOAD") and not m("SUMA_SIMPLEX") and not m("DEMO_FAIL")
    assert procedure_matcher(None)("anything")
    assert procedure_matcher("PKG.?")("SCOTT.PKG.A") and not procedure_matcher("PKG.?")("PKG.AB")


def test_other_commands_never_import_the_server_libraries(sqlite_env):
    """The serve extra loads only for `jobctl serve`: the fast path and the
    typer app start as before."""
    for args in (["status", "abcd1234"], ["list"], ["submit", "--help"], ["token", "list"]):
        run = subprocess.run([sys.executable, "-X", "importtime", "-m", "jobctl", *args],
                             capture_output=True, text=True, timeout=60)
        for lib in ("starlette", "uvicorn", "prometheus_client", "anyio", "httpx"):
            assert f" {lib}" not in run.stderr.replace("|", " "), (args, lib)
    loaded = subprocess.run([sys.executable, "-c", "import jobctl.cli, jobctl.api, sys; "
                             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                             "('starlette', 'uvicorn', 'prometheus_client')))"],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(loaded.stdout.replace("'", '"')) == []


def test_two_servers_share_one_database_and_its_tokens(serve_env):
    """Stateless: a job submitted through one server is read through the
    other; a token revoked with the CLI is refused by both at once."""
    env = serve_env
    token = create_token(env, "shared", "submit", "read")
    one, two = _served(env).start(), _served(env).start()
    try:
        with one.client(token) as a, two.client(token) as b:
            job_id = a.post("/procedure/async", json=SEED_BODY).json()["job_id"]
            assert _wait_job(b, job_id, lambda j: j["status"] == "completed")["submitted_by"] == "shared"
            assert env.cli("token", "revoke", "shared").exit_code == 0
            assert a.get(f"/jobs/{job_id}").status_code == 401
            assert b.get(f"/jobs/{job_id}").status_code == 401
    finally:
        one.stop()
        two.stop()


def test_the_page_cookie_reads_but_never_writes(sqlite_env):
    """POST /login takes a read token once and sets it HttpOnly and
    SameSite=Strict; the cookie serves GETs only, so no other site and no
    script on the page can submit or cancel with it."""
    env = sqlite_env
    reader = create_token(env, "page", "read")
    writer = create_token(env, "writer", "submit")
    everything = create_token(env, "all", "read", "submit", "cancel")
    server = _served(env).start()
    try:
        with server.client() as http:
            page = http.get("/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert "default-src 'self'" in page.headers["content-security-policy"]
            for asset in ("/assets/app.js", "/assets/app.css"):
                assert http.get(asset).status_code == 200
            assert http.post("/login", json={"token": writer}).status_code == 403
            assert http.post("/login", json={"nope": 1}).status_code == 400
            r = http.post("/login", json={"token": reader})
            assert r.status_code == 200, r.text
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
            assert http.get("/overview").status_code == 200  # the cookie reads
            http.cookies.set("jobctl_token", everything)
            assert http.post("/procedure/async", json=SEED_BODY).status_code == 401
            assert http.post("/logout").status_code == 200
        assert env.rows() == []
    finally:
        server.stop()


def test_a_scrape_is_one_statement_and_counts_only_live_pools(serve_env):
    """/metrics' data: one statement per scrape, whatever the tables hold;
    a pool of another host counts while its heartbeat is fresh, not after."""
    import datetime as dt

    from jobctl import store
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings
    from jobctl.model import utcnow

    env = serve_env
    ok = env.submit("SUMA_SIMPLE", "-p", "vA=1")
    env.wait_for(ok, lambda j: j["status"] == "completed")
    with Jobctl(resolve_settings(env.dsn, None), create=False) as jc:
        conn = jc.conn
        now = jc.lifecycle.clock(conn)
        for worker_id, beat in (("a" * 32, now), ("b" * 32, now - dt.timedelta(hours=1))):
            store.register_worker(jc.backend, conn, worker_id=worker_id, host="elsewhere", pid=1,
                                  queues=(), concurrency=2, now=utcnow())
            jc.backend.execute(conn, "UPDATE JOB_WORKERS SET heartbeat_at = :t WHERE worker_id = :w",
                               {"t": jc.backend.to_db_time(beat), "w": worker_id})
        conn.commit()
        seen = []
        execute = jc.backend.execute

        def counting(conn, sql, binds=None):
            seen.append(sql)
            return execute(conn, sql, binds)

        jc.backend.execute = counting
        data = jc.server_reads.metrics(86400)
    assert len(seen) == 1, seen
    assert data["pools_alive"] == 1
    assert data["jobs"] == {("completed", "default"): 1}
    assert data["running"] == 0 and data["queued"] == 0
    [(name, hist)] = data["durations"].items()
    assert name.upper() == "SUMA_SIMPLE" and sum(hist["counts"]) == 1


def test_a_database_made_before_serve_says_to_run_db_init(serve_env, empty_dsn):
    """ASYNC_JOBS without JOB_TOKENS (an upgrade not yet run): the token
    commands and readiness say `jobctl db init`; db init adds the table."""
    env = serve_env
    if env.backend == "sqlite":
        pytest.skip("SQLite: jobctl creates the schema on its first connection to the file")
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings
    from jobctl.errors import DatabaseError

    assert env.cli("--dsn", empty_dsn, "db", "init").exit_code == 0
    with Jobctl(resolve_settings(empty_dsn, None)) as jc:
        jc.backend.execute(jc.conn, "DROP TABLE JOB_TOKENS")
        jc.conn.commit()
        with pytest.raises(DatabaseError, match="JOB_TOKENS is missing: run jobctl db init"):
            jc.server_reads.ready()
    result = env.cli("--dsn", empty_dsn, "token", "list")
    assert result.exit_code == 4 and "run jobctl db init" in result.stderr
    assert env.cli("--dsn", empty_dsn, "db", "init").exit_code == 0
    assert env.cli("--dsn", empty_dsn, "token", "create", "x", "--scope", "read").exit_code == 0


def test_tls_serves_https_and_the_cookie_is_secure(sqlite_env, tmp_path):
    """--certfile/--keyfile: https on the port (a self-signed certificate
    made here with openssl), and the page's cookie is Secure."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    token = create_token(sqlite_env, "tls", "read")
    server = Served(tmp_path / "serve.log", "--certfile", str(cert), "--keyfile", str(key),
                    tls=True).start()
    import httpx

    try:
        with server.client() as http:
            r = http.post("/login", json={"token": token})
            assert r.status_code == 200 and "Secure" in r.headers["set-cookie"]
        with pytest.raises((httpx.HTTPError, ValueError)):  # plain http on the TLS port: no answer
            httpx.get(server.url.replace("https://", "http://") + "/healthz", timeout=5).json()
        assert "listening on https://127.0.0.1" in server.log()
    finally:
        server.stop()
