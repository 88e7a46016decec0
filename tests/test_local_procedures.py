"""SQLite's local procedures: user modules, typed parameters, output, transactions."""

from __future__ import annotations

import textwrap

PROCS = textwrap.dedent('''
    import datetime as dt
    from jobctl.local import procedure

    @procedure("LOAD_DAY", outputs={"rows_loaded": int, "day_after": dt.date})
    def load_day(ctx, day: dt.date, batch: int = 10, dry: bool = False):
        print(f"loading {day} in batches of {batch}")
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS loaded (day TEXT)")
        ctx.connection.execute("INSERT INTO loaded VALUES (?)", (day.isoformat(),))
        ctx.progress(50)
        if dry:
            raise ValueError("dry run: rolling back")
        return {"rows_loaded": batch * 2, "day_after": day + dt.timedelta(days=1)}
''')


def setup_module_file(env):
    path = env.tmp / "procs.py"
    path.write_text(PROCS)
    config = env.tmp / "config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'modules = ["{path}"]\n')


def loaded(env):
    import sqlite3

    conn = sqlite3.connect(env.dsn.removeprefix("sqlite:///"))
    try:
        return [r[0] for r in conn.execute("SELECT day FROM loaded")]
    except sqlite3.OperationalError:
        return []


def test_user_module_procedure_runs_with_typed_params(sqlite_env):
    env = sqlite_env
    setup_module_file(env)
    described = env.json("describe", "load_day")
    assert described["params"] == [
        {"name": "day", "type": "DATE", "mode": "IN", "defaulted": False},
        {"name": "batch", "type": "INTEGER", "mode": "IN", "defaulted": True},
        {"name": "dry", "type": "BOOLEAN", "mode": "IN", "defaulted": True},
        {"name": "rows_loaded", "type": "INTEGER", "mode": "OUT", "defaulted": False},
        {"name": "day_after", "type": "DATE", "mode": "OUT", "defaulted": False},
    ]
    job_id = env.submit("LOAD_DAY", "-p", "day=2026-11-27", "-p", "batch=21")
    job = env.wait_for(job_id, lambda j: j["status"] not in ("queued", "running"))
    assert job["status"] == "completed", job
    assert job["result"] == {"rows_loaded": 42, "day_after": "2026-11-28"}
    assert job["params"] == {"day": "2026-11-27", "batch": 21}
    assert job["output"] == "loading 2026-11-27 in batches of 21"
    assert loaded(env) == ["2026-11-27"]  # committed


def test_failed_local_procedure_rolls_back_its_work(sqlite_env):
    env = sqlite_env
    setup_module_file(env)
    job_id = env.submit("LOAD_DAY", "-p", "day=2026-11-27", "-p", "dry=yes")
    job = env.wait_for(job_id, lambda j: j["status"] not in ("queued", "running"))
    assert job["status"] == "failed" and "dry run" in job["error_msg"]
    assert loaded(env) == []


def test_bad_typed_values_for_local_procedures(sqlite_env):
    env = sqlite_env
    setup_module_file(env)
    for args, needle in ((["-p", "day=yesterday"], "day"), (["-p", "day=2026-11-27", "-p", "dry=perhaps"], "dry"),
                         (["-p", "day=2026-11-27", "-p", "batch=1.5"], "batch")):
        result = env.cli("submit", "LOAD_DAY", *args)
        assert result.exit_code == 2 and needle in result.stderr
    assert env.rows() == []


def test_broken_user_module_is_a_clear_error(sqlite_env):
    env = sqlite_env
    config = env.tmp / "config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('modules = ["/nonexistent/procs.py"]\n')
    result = env.cli("submit", "SUMA_SIMPLE", "-p", "vA=1")
    assert result.exit_code == 2 and "cannot load procedure module" in result.stderr
