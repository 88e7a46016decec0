"""Many hosts on one PostgreSQL database, proven (issue 16).

Each "host" is a network + UTS + PID + mount namespace of its own (`unshare`):
its own hostname, its own pids (they start at 1 on every host, as on real
machines), its own HOME and XDG directories, and one road to the server: a
`socat` on the host's 127.0.0.1:5432 that forwards to the server's unix
socket. Every jobctl process of a host runs inside it (`nsenter`), with a DSN
on 127.0.0.1. A host's network is cut by SIGSTOP of every socat of the host
(socat forks one per connection) and healed by SIGCONT; a host crashes by
SIGKILL of the namespace's init, which takes every process of the host with
it. Traffic stays on loopback and the unix socket.

Needs root, `unshare`, `nsenter`, `socat`, `ip` and the server's unix socket;
otherwise every test here is skipped, saying which is missing. Run with `-s`
to see the figures measured (they are printed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import PG_ADMIN_DSN

PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"

#: the timing knobs of every host: a lost worker shows within seconds
LOST_AFTER = 4.0
TIMING = {"JOBCTL_HEARTBEAT": "0.5", "JOBCTL_LOST_AFTER": f"{LOST_AFTER:g}",
          "JOBCTL_START_TIMEOUT": "20", "JOBCTL_POLL": "0.1", "JOBCTL_CANCEL_POLL": "0.5",
          "JOBCTL_RETRY_BACKOFF": "0.1"}

#: PID 1 of a host: brings up lo, names the host, starts its socat, says
#: "ready" once socat accepts, then reaps whatever the host's processes leave
#: to it (a detached worker's parent exits: init inherits it)
HOST_INIT = r"""
import os, socket, subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
socket.sethostname(sys.argv[1])
subprocess.Popen(["socat", "TCP-LISTEN:5432,bind=127.0.0.1,fork,reuseaddr",
                  "UNIX-CONNECT:" + sys.argv[2]])
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
print("ready", flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)
"""


def _why_not() -> str | None:
    """Why this machine cannot host the namespaces, or None."""
    if os.geteuid() != 0:
        return "needs root (network, PID and mount namespaces per host)"
    for tool in ("unshare", "nsenter", "socat", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not os.path.exists(PG_SOCKET):
        return f"needs the PostgreSQL server's unix socket at {PG_SOCKET}"
    probe = subprocess.run(["unshare", "--net", "--uts", "--pid", "--fork", "--mount-proc",
                            "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare refused: {probe.stderr.strip()}"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def _ns(pid: int, kind: str = "pid") -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


class Host:
    """One machine: its namespaces, its init, its socat, its jobctl processes."""

    def __init__(self, name: str, dsn: str, tmp: Path):
        self.name = name
        self.dsn = dsn
        self.dir = tmp / name
        for sub in ("home", "config", "data", "state"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.unshare = subprocess.Popen(
            ["unshare", "--net", "--uts", "--pid", "--fork", "--mount-proc",
             sys.executable, "-c", HOST_INIT, name, PG_SOCKET],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.init = 0
        self.procs: list[subprocess.Popen] = []

    def wait_ready(self, timeout: float = 20) -> None:
        line = self.unshare.stdout.readline()
        assert line.strip() == "ready", f"host {self.name} did not start: {self.unshare.stderr.read()}"
        deadline = time.monotonic() + timeout
        while not self.init:
            kids = [p for p in _all_pids() if self._ppid(p) == self.unshare.pid]
            if kids:
                self.init = kids[0]
            assert time.monotonic() < deadline, f"host {self.name}: no init found"
        self.pidns = _ns(self.init)

    @staticmethod
    def _ppid(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("PPid:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return -1

    # -- running things on the host ----------------------------------------------
    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JOBCTL_", "PG", "XDG_")) and k != "NO_COLOR"}
        env.update(HOME=str(self.dir / "home"), XDG_CONFIG_HOME=str(self.dir / "config"),
                   XDG_DATA_HOME=str(self.dir / "data"), XDG_STATE_HOME=str(self.dir / "state"),
                   JOBCTL_DSN=self.dsn, **TIMING)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", "-t", str(self.init), "-n", "-u", "-p", "-m", "--",
                sys.executable, "-m", "jobctl", *args]

    def run(self, *args: str, timeout: float = 60, input: str | None = None,
            **extra: str) -> subprocess.CompletedProcess:
        """`jobctl ARGS` on this host, to its end."""
        return subprocess.run(self.argv(*args), capture_output=True, text=True, input=input,
                              timeout=timeout, env=self.environ(**extra), cwd=self.dir)

    def ok(self, *args: str, **kw) -> str:
        done = self.run(*args, **kw)
        assert done.returncode == 0, f"{self.name}: jobctl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def json(self, *args: str, **kw):
        return json.loads(self.ok(*args, "--format", "json", **kw))

    def status(self, job_id: str) -> dict:
        found = self.json("status", job_id)
        return found[0] if isinstance(found, list) else found

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        """`jobctl ARGS` on this host, left running (its stderr in a file)."""
        log = open(self.dir / f"{args[0]}-{len(self.procs)}.log", "w")
        proc = subprocess.Popen(self.argv(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, text=True, env=self.environ(**extra), cwd=self.dir)
        log.close()
        self.procs.append(proc)
        return proc

    def worker_log(self) -> str:
        path = self.dir / "state" / "jobctl" / "worker.log"
        return path.read_text() if path.exists() else ""

    # -- what happens to hosts ---------------------------------------------------
    def members(self) -> list[int]:
        """Every process of this host (seen from outside: its global pids)."""
        return [p for p in _all_pids() if _ns(p) == self.pidns]

    def socats(self) -> list[int]:
        return [p for p in self.members() if _comm(p) == "socat"]

    def cut(self) -> None:
        """SIGSTOP every socat of the host, the listener's forks included:
        until none is left running (a fork made while stopping is found on
        the next look)."""
        stopped: set[int] = set()
        quiet = 0
        while quiet < 3:
            fresh = [p for p in self.socats() if p not in stopped]
            for pid in fresh:
                os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
            quiet = 0 if fresh else quiet + 1
            time.sleep(0.01)

    def heal(self) -> None:
        for pid in self.socats():
            os.kill(pid, signal.SIGCONT)

    def crash(self) -> None:
        """SIGKILL of the host's PID 1: the kernel kills every process of it."""
        os.kill(self.init, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while self.members():
            assert time.monotonic() < deadline, f"host {self.name} did not die"
            time.sleep(0.05)
        self.unshare.wait(timeout=10)

    def close(self) -> None:
        if self.unshare.poll() is None:
            self.heal()  # a stopped socat dies of SIGKILL all the same; be tidy
            self.crash()
        for proc in self.procs:
            with_timeout(proc.wait, 10)
        for stream in (self.unshare.stdout, self.unshare.stderr):
            stream.close()


def with_timeout(fn, timeout: float):
    try:
        return fn(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# -- the database the hosts share ------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS mh_effects (param text NOT NULL, at timestamptz DEFAULT clock_timestamp());
-- one side effect per job, then a short pause (the 300-job run)
CREATE OR REPLACE PROCEDURE mh_short(p text) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mh_effects (param) VALUES (p);
    PERFORM pg_sleep(0.05);
END $$;
-- a side effect, then a silent sleep: the server session executes the call
-- however long its client is gone
CREATE OR REPLACE PROCEDURE mh_quiet(p text, secs double precision) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mh_effects (param) VALUES (p);
    PERFORM pg_sleep(secs);
END $$;
-- a side effect, then a sleep that talks to its client every 0.2 s: the
-- server session ends soon after its client dies (its notice fails)
CREATE OR REPLACE PROCEDURE mh_chatty(p text, secs double precision) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    INSERT INTO mh_effects (param) VALUES (p);
    WHILE clock_timestamp() < t0 + make_interval(secs => secs) LOOP
        PERFORM pg_sleep(0.2);
        RAISE NOTICE 'tick';
    END LOOP;
END $$;
"""


class Db:
    """The test's own view of the shared database (from outside every host)."""

    def __init__(self, dsn: str):
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)

    def one(self, sql: str, *args):
        return self.conn.execute(sql, args or None).fetchone()

    def all(self, sql: str, *args):
        return self.conn.execute(sql, args or None).fetchall()

    def job(self, job_id: str) -> dict:
        cur = self.conn.execute("SELECT * FROM async_jobs WHERE job_id = %s", (job_id,))
        names = [d.name for d in cur.description]
        return dict(zip(names, cur.fetchone()))

    def effects(self, param: str) -> int:
        return self.one("SELECT count(*) FROM mh_effects WHERE param = %s", param)[0]

    def wait(self, what: str, predicate, timeout: float, pause: float = 0.05):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(pause)


@pytest.fixture(scope="module")
def mh_database(pg_database):
    """A database of this module's own (the suite's shared one may still
    hold detached workers and sessions of earlier tests), dropped afterwards."""
    import psycopg

    from conftest import _cli_ok

    name = f"jobctl_mh_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    try:
        _cli_ok(["--dsn", dsn, "db", "init", "--examples"])
        yield dsn
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def db(mh_database):
    """The module's throwaway database, emptied for each test: no job, no
    queue, no pool, and no server session left by the hosts of a test before."""
    d = Db(mh_database)
    d.conn.execute(SCHEMA)
    d.conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    for table in ("async_jobs", "job_queues", "job_workers", "mh_effects"):
        d.conn.execute(f"DELETE FROM {table}")
    d.dsn = mh_database
    yield d
    d.conn.close()


@pytest.fixture
def hosts(db, tmp_path):
    """hosts(n) -> n fresh hosts named after the test (no name is reused, so
    no row of an earlier test can be taken for one of theirs)."""
    made: list[Host] = []
    tag = uuid.uuid4().hex[:4]

    def make(n: int) -> list[Host]:
        new = [Host(f"mh{tag}h{len(made) + i + 1}", db.dsn, tmp_path) for i in range(n)]
        for host in new:
            host.wait_ready()
        made.extend(new)
        return new

    yield make
    for host in made:
        host.close()


def start_pool(host: Host, db: Db, queue: str, concurrency: int) -> subprocess.Popen:
    proc = host.start("worker", "--queue", queue, "--concurrency", str(concurrency))
    db.wait(f"the pool on {host.name}",
            lambda: db.one("SELECT count(*) FROM job_workers WHERE host = %s AND state = 'running'",
                           host.name)[0], timeout=30)
    return proc


def submit(host: Host, *args: str) -> str:
    return host.ok("submit", *args).strip()


# -- 1. three pools, one limit ----------------------------------------------------------

def test_three_hosts_share_one_limit_and_run_every_job_exactly_once(db, hosts):
    h = hosts(3)
    h[0].ok("queue", "set", "mhq", "--max-running", "3")
    for host in h:
        start_pool(host, db, "mhq", 4)

    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def sample():
        import psycopg

        with psycopg.connect(db.dsn, autocommit=True) as conn:
            while not done.is_set():
                samples.append(conn.execute(
                    "SELECT (SELECT count(*) FROM async_jobs WHERE queue = 'mhq' AND status = 'running'),"
                    "       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    "           AND state = 'active' AND query ILIKE '%%CALL%%mh_short%%'"
                    # the call is no longer a statement's first word (its job's name
                    # comes first, or a DO block): this query must not count itself
                    "           AND pid <> pg_backend_pid())").fetchone())
                time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    per_host = 100
    t0 = time.monotonic()
    shells = []
    for n, host in enumerate(h):
        lines = "".join(json.dumps({"p": f"{n}-{i}"}) + "\n" for i in range(per_host))
        proc = host.start("submit", "mh_short", "--params-file", "-", "--queue", "mhq")
        proc.stdin.write(lines)
        proc.stdin.close()
        shells.append(proc)
    ids = []
    for proc in shells:
        out = proc.stdout.read()
        assert proc.wait(timeout=60) == 0
        ids += out.split()
    assert len(set(ids)) == 3 * per_host
    db.wait("300 jobs finished", lambda: db.one(
        "SELECT count(*) = 300 FROM async_jobs WHERE queue = 'mhq' "
        "AND status NOT IN ('queued', 'running')")[0], timeout=240, pause=0.1)
    elapsed = time.monotonic() - t0
    done.set()
    sampler.join(timeout=5)

    statuses = dict(db.all("SELECT status, count(*) FROM async_jobs GROUP BY status"))
    assert statuses == {"completed": 300}, statuses
    assert db.all("SELECT param, count(*) FROM mh_effects GROUP BY param HAVING count(*) <> 1") == []
    assert db.one("SELECT count(DISTINCT param) FROM mh_effects")[0] == 300
    assert db.one("SELECT max(attempt), min(attempt) FROM async_jobs") == (1, 1)
    by_host = dict(db.all("SELECT worker_host, count(*) FROM async_jobs GROUP BY worker_host"))
    max_rows = max(s[0] for s in samples)
    max_calls = max(s[1] for s in samples)
    print(f"\n[multihost] 300 jobs, 3 hosts x pool of 4, queue limit 3: {elapsed:.2f}s, "
          f"{300 / elapsed:.1f} jobs/s; max running in ASYNC_JOBS {max_rows}, max CALL sessions "
          f"{max_calls} ({len(samples)} samples every 50 ms); duplicates 0; by host {by_host}")
    assert max_rows <= 3 and max_calls <= 3
    assert len(samples) > 10


def wait_status(host: Host, job_id: str, wanted: set[str], timeout: float,
                seen: list[str] | None = None) -> tuple[dict, float]:
    """Poll `jobctl status ID` on `host` until the job reads one of `wanted`;
    returns the job and when (time.monotonic()) it was first read so."""
    deadline = time.monotonic() + timeout
    while True:
        job = host.status(job_id)
        at = time.monotonic()
        if seen is not None and (not seen or seen[-1] != job["status"]):
            seen.append(job["status"])
        if job["status"] in wanted:
            return job, at
        assert at < deadline, f"{job_id} never read {wanted} on {host.name}: {job}"
        time.sleep(0.1)


def running_on(db: Db, host: Host, job_id: str, timeout: float = 30) -> dict:
    return db.wait(f"{job_id} running on {host.name}", lambda: (
        (row := db.job(job_id))["status"] == "running" and row["worker_host"] == host.name
        and row["db_session"] and row)
        or None, timeout=timeout)


# -- 2. a host crashes mid-job ------------------------------------------------------------

def test_a_crashed_hosts_jobs_read_lost_elsewhere_and_are_never_run_again(db, hosts):
    victim, survivor, observer = hosts(3)
    observer.ok("queue", "set", "mhc", "--max-running", "2")
    start_pool(victim, db, "mhc", 2)
    long = [submit(observer, "mh_chatty", "-p", f"p=long{i}", "-p", "secs=120", "--queue", "mhc")
            for i in range(2)]
    before = {job_id: running_on(db, victim, job_id) for job_id in long}
    start_pool(survivor, db, "mhc", 2)
    waiting = [submit(observer, "mh_short", "-p", f"p=after{i}", "--queue", "mhc")
               for i in range(3)]
    time.sleep(1)  # both slots are the victim's: nothing else starts
    assert {db.job(j)["status"] for j in waiting} == {"queued"}

    t0 = time.monotonic()
    victim.crash()
    judged = {}
    for job_id in long:
        for reader in (survivor, observer):
            job, at = wait_status(reader, job_id, {"lost"}, timeout=10 * (LOST_AFTER + 2))
            judged[(job_id, reader.name)] = at - t0
            assert victim.name in job["status_reason"] or "heartbeat" in job["status_reason"]
    to_lost = max(judged.values())
    pools = {w["host"]: w["state"] for w in observer.json("worker", "list")}
    assert pools == {victim.name: "gone", survivor.name: "running"}, pools
    # the slots of the crashed host's jobs are taken until the lost rule is
    # written down (cron's cleanup); then the queued jobs run elsewhere
    marked = observer.json("cleanup", "--days", "30")
    assert marked["marked_lost"] == 2
    db.wait("the queued jobs ran", lambda: all(
        db.job(j)["status"] == "completed" for j in waiting), timeout=60)
    assert {db.job(j)["worker_host"] for j in waiting} == {survivor.name}
    assert [w["host"] for w in observer.json("worker", "list")] == [survivor.name]
    time.sleep(2 * LOST_AFTER)  # time for anything that would run them again
    for job_id in long:
        row = db.job(job_id)
        assert row["status"] == "lost" and row["attempt"] == 1
        assert (row["worker_host"], row["claim_token"], row["start_time"]) == (
            before[job_id]["worker_host"], before[job_id]["claim_token"],
            before[job_id]["start_time"])
        assert db.effects(row["params"] and json.loads(row["params"])["p"]) == 0
    print(f"\n[multihost] crash: running jobs read lost on the other hosts after "
          f"{min(judged.values()):.1f}-{to_lost:.1f}s (lost_after {LOST_AFTER:g}s, heartbeat "
          f"{TIMING['JOBCTL_HEARTBEAT']}s); re-runs 0; queued jobs ran on {survivor.name} "
          f"after cleanup")


# -- 3. a host cut off mid-job, then healed ------------------------------------------------

def _cut_then_heal(db: Db, cut_host: Host, other: Host, job_id: str, param: str) -> dict:
    """Cut `cut_host` while its job runs mh_quiet: the other host reads the
    job orphaned while the call still runs on the server, lost once it has
    returned; cleanup there writes `lost`; after the heal the cut host's late
    commit finds the row lost and rolls its work back. Returns figures."""
    row = running_on(db, cut_host, job_id)
    # the row reads running (and names its session) a moment before the CALL
    # reaches the server; a cut in that moment leaves an idle session, and the
    # job is rightly read lost at once, never orphaned: cut once the call runs
    pid = int(row["db_session"].partition(":")[0])
    db.wait(f"the call of {job_id} executing on the server", lambda: db.one(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active' "
        "AND query ILIKE '%%mh_quiet%%'", pid)[0], timeout=30)
    t0 = time.monotonic()
    cut_host.cut()
    seen: list[str] = []
    job, at = wait_status(other, job_id, {"lost"}, timeout=10 * (LOST_AFTER + 14), seen=seen)
    assert "orphaned" in seen, (seen, job.get("status_reason"))  # the call still ran on the server
    assert seen[-2:] == ["orphaned", "lost"] and set(seen) <= {"running", "orphaned", "lost"}, seen
    assert other.json("cleanup", "--days", "30")["marked_lost"] == 1
    assert db.job(job_id)["status"] == "lost"
    cut_host.heal()
    healed = time.monotonic()
    db.wait(f"{cut_host.name}'s worker to hear of {job_id}",
            lambda: job_id in cut_host.worker_log(), timeout=60)
    time.sleep(1)
    row = db.job(job_id)
    assert row["status"] == "lost" and row["attempt"] == 1, row
    assert db.effects(param) == 0
    return {"seen": seen, "to_lost": at - t0, "log_after_heal": time.monotonic() - healed}


def test_a_cut_pool_host_never_commits_a_lost_job_and_serves_again_after_the_heal(db, hosts):
    cut_host, other = hosts(2)
    other.ok("queue", "set", "mhx", "--max-running", "2")
    start_pool(cut_host, db, "mhx", 2)
    job_id = submit(other, "mh_quiet", "-p", "p=cut1", "-p", f"secs={LOST_AFTER + 12:g}",
                    "--queue", "mhx")
    figures = _cut_then_heal(db, cut_host, other, job_id, "cut1")
    # the pool lived through it: it writes its row again (cleanup forgot it
    # as gone) and takes new jobs
    db.wait(f"the pool on {cut_host.name} back", lambda: any(
        w["host"] == cut_host.name and w["state"] == "running"
        for w in other.json("worker", "list")), timeout=60)
    after = [submit(other, "mh_short", "-p", f"p=after{i}", "--queue", "mhx") for i in range(3)]
    db.wait("the jobs after the heal ran", lambda: all(
        db.job(j)["status"] == "completed" for j in after), timeout=60)
    assert {db.job(j)["worker_host"] for j in after} == {cut_host.name}
    assert [db.effects(f"after{i}") for i in range(3)] == [1, 1, 1]
    print(f"\n[multihost] cut (pool): read {' -> '.join(figures['seen'])} on the other host, lost "
          f"after {figures['to_lost']:.1f}s; late commit refused (row stays lost, side effect 0), "
          f"noted {figures['log_after_heal']:.1f}s after the heal; the pool serves again")


def test_a_cut_daemon_free_worker_never_commits_a_lost_job_and_the_host_runs_jobs_again(db, hosts):
    cut_host, other = hosts(2)
    cut_host.ok("queue", "set", "mhd", "--max-running", "4")  # submit refuses an unknown queue
    job_id = submit(cut_host, "mh_quiet", "-p", "p=cut2", "-p", f"secs={LOST_AFTER + 12:g}",
                    "--queue", "mhd")
    figures = _cut_then_heal(db, cut_host, other, job_id, "cut2")
    after = submit(cut_host, "mh_short", "-p", "p=after", "--queue", "mhd", "--wait")
    assert db.job(after)["status"] == "completed" and db.job(after)["worker_host"] == cut_host.name
    assert db.effects("after") == 1
    print(f"\n[multihost] cut (daemon-free): read {' -> '.join(figures['seen'])} on the other "
          f"host, lost after {figures['to_lost']:.1f}s; late commit refused (row stays lost, "
          f"side effect 0); the host's next submit ran")



def test_cleanup_does_not_wait_for_the_row_lock_of_a_cut_hosts_session(db, hosts):
    """A host cut between a write of a job's row and its commit (a heartbeat,
    or the outcome with its hand-over claim) leaves a server session holding
    that row's lock for as long as the server takes to notice (TCP keepalive:
    hours). Played here by the test's own session, taking the lock once the
    job's worker is cut: cleanup elsewhere must neither wait for it nor hang
    cron, and writes the job lost once the lock is gone."""
    cut_host, other = hosts(2)
    cut_host.ok("queue", "set", "mhl", "--max-running", "4")  # submit refuses an unknown queue
    job_id = submit(cut_host, "mh_quiet", "-p", "p=locked", "-p", "secs=1", "--queue", "mhl")
    running_on(db, cut_host, job_id)
    cut_host.cut()
    import psycopg

    with psycopg.connect(db.dsn) as stuck:
        stuck.execute("SELECT 1 FROM async_jobs WHERE job_id = %s FOR UPDATE", (job_id,))
        wait_status(other, job_id, {"lost"}, timeout=10 * (LOST_AFTER + 2))
        t0 = time.monotonic()
        try:
            report = other.json("cleanup", "--days", "30", timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("cleanup waited for the lock of a session that never commits")
        took = time.monotonic() - t0
        assert report["marked_lost"] == 0  # left for the next cleanup, not waited for
        assert db.job(job_id)["status"] == "running"
        stuck.rollback()
    assert other.json("cleanup", "--days", "30")["marked_lost"] == 1
    assert db.job(job_id)["status"] == "lost"
    cut_host.heal()
    print(f"\n[multihost] cleanup beside a row lock held by a cut host's session: returned in "
          f"{took:.2f}s, the job written lost by the next cleanup")


# -- 4. cancel from another host -------------------------------------------------------------

@pytest.mark.parametrize("where", ["pool", "daemon-free"])
def test_cancel_from_another_host_ends_the_job_within_a_second(db, hosts, where):
    runner, canceller = hosts(2)
    runner.ok("queue", "set", "mhk", "--max-running", "4")  # pools and submit refuse unknown queues
    if where == "pool":
        start_pool(runner, db, "mhk", 2)
    job_id = submit(runner, "mh_quiet", "-p", f"p=cancel-{where}", "-p", "secs=60", "--queue", "mhk")
    running_on(db, runner, job_id)
    t0 = time.monotonic()
    canceller.ok("cancel", job_id)
    asked = time.monotonic()
    db.wait(f"{job_id} cancelled", lambda: db.job(job_id)["status"] == "cancelled",
            timeout=10, pause=0.01)
    took = time.monotonic() - asked
    job = canceller.status(job_id)
    assert job["status"] == "cancelled"
    assert db.effects(f"cancel-{where}") == 0  # its work rolled back
    # the server session ran the call no longer
    assert db.one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND state = 'active' AND query ILIKE '%%CALL%%mh_quiet%%' "
                  "AND pid <> pg_backend_pid()")[0] == 0
    print(f"\n[multihost] cancel from another host ({where}): cancelled {took * 1000:.0f} ms "
          f"after `jobctl cancel` returned ({time.monotonic() - t0:.2f}s with its start-up)")
