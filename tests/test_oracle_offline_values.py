"""The Oracle backend's values (issue 24), checked without an Oracle server:
every Oracle type bound and read back with the real driver's type objects and
value classes (oracledb.DB_TYPE_*, oracledb.IntervalYM, datetime.timedelta,
bytes), result sets (REF CURSOR OUT, implicit results), overloads, and the
check of values at submit.

What these tests cannot prove (ORACLE_NOTES "Testing without a server"):
that the server accepts the binds, that a REF CURSOR comes back as a cursor,
which ALL_ARGUMENTS spellings a real dictionary uses. `jobctl doctor` and the
behavioural suite (JOBCTL_TEST_ORACLE_DSN) do. The fakes (oracle_fakes.py)
only record what the backend asks of a driver cursor.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import oracledb
import pytest
import sqlglot
from sqlglot import exp

from jobctl import model
from jobctl.backends import oracle as ob
from jobctl.backends.base import CallContext
from jobctl.backends.oracle import values as ov
from jobctl.config import Tunables
from jobctl.errors import UsageError
from oracle_fakes import JOB, Conn, Cur, Rows, _p, _sig, backend, ora_error


# -- every Oracle type, bound with the driver's own objects (issue 24) -----------------

@pytest.mark.parametrize("data_type, written, db_type, bound", [
    ("INTERVAL DAY TO SECOND", "P1DT2H3M4.5S", oracledb.DB_TYPE_INTERVAL_DS,
     dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
    ("INTERVAL DAY(2) TO SECOND(6)", "-1 00:00:30", oracledb.DB_TYPE_INTERVAL_DS,
     -dt.timedelta(days=1, seconds=30)),
    ("INTERVAL YEAR TO MONTH", "P1Y2M", oracledb.DB_TYPE_INTERVAL_YM, oracledb.IntervalYM(1, 2)),
    ("INTERVAL YEAR TO MONTH", "-P14M", oracledb.DB_TYPE_INTERVAL_YM, oracledb.IntervalYM(-1, -2)),
    ("INTERVAL YEAR TO MONTH", "P-1Y-2M", oracledb.DB_TYPE_INTERVAL_YM, oracledb.IntervalYM(-1, -2)),
    ("INTERVAL DAY TO SECOND", "PT-1H-30M", oracledb.DB_TYPE_INTERVAL_DS, -dt.timedelta(minutes=90)),
    ("RAW", "\\x0a1B", oracledb.DB_TYPE_RAW, b"\x0a\x1b"),
    ("RAW", "cafe", oracledb.DB_TYPE_RAW, b"\xca\xfe"),
    ("BLOB", "\\x00ff", oracledb.DB_TYPE_BLOB, b"\x00\xff"),
    ("JSON", '{"a": [1, 2.5]}', oracledb.DB_TYPE_JSON, {"a": [1, Decimal("2.5")]}),
])
def test_each_oracle_type_binds_as_the_driver_object(data_type, written, db_type, bound):
    """The value written on the command line (ISO 8601, hex, JSON) becomes
    the object python-oracledb binds for that DB_TYPE (doc/src/user_guide/
    sql_execution.rst, "Fetched Data Types": INTERVAL DAY TO SECOND ↔
    timedelta, INTERVAL YEAR TO MONTH ↔ oracledb.IntervalYM, RAW/BLOB ↔ bytes)."""
    from jobctl import params
    p = _p("X", data_type)
    var = backend()._in_bind(Cur(Conn()), p, data_type, params.coerce(p, written))
    assert var.type is db_type and var.value == bound


def test_booleans_23ai_and_plsql_bind_as_python_booleans():
    from jobctl import params
    for data_type in ("BOOLEAN", "PL/SQL BOOLEAN"):
        p = _p("B", data_type)
        assert p.kind == model.BOOLEAN
        assert backend()._in_bind(Cur(Conn()), p, data_type, params.coerce(p, "0")) is False
        var = backend()._in_bind(Cur(Conn()), p, data_type, None)
        assert var.type is oracledb.DB_TYPE_BOOLEAN and var.value is None


@pytest.mark.parametrize("data_type, zoned", [
    ("TIMESTAMP", False), ("DATE", False),
    ("TIMESTAMP WITH TIME ZONE", True), ("TIMESTAMP WITH LOCAL TIME ZONE", True)])
def test_timestamps_bind_as_sqlplus_reads_a_literal(data_type, zoned):
    """A zoned parameter given an offset gets the instant: TIMESTAMP WITH
    TIME ZONE holding the UTC wall time, since thin mode labels any bound
    datetime +00:00 (python-oracledb issue 374). Without an offset, a wall
    time in the session's zone (no longer forced to UTC). A DATE or
    TIMESTAMP keeps the wall time as written, offset dropped, as Oracle does
    when a zoned literal is assigned to one."""
    from jobctl import params
    p = _p("T", data_type)
    b, cur = backend(), Cur(Conn())
    bound = b._in_bind(cur, p, data_type, params.coerce(p, "2024-05-01T10:00:00.5+02:00"))
    naive = b._in_bind(cur, p, data_type, params.coerce(p, "2024-05-01T10:00:00.5"))
    wall, utc = dt.datetime(2024, 5, 1, 10, 0, 0, 500000), dt.datetime(2024, 5, 1, 8, 0, 0, 500000)
    if zoned:
        assert (bound.type, bound.value) == (oracledb.DB_TYPE_TIMESTAMP_TZ, utc)
        assert (naive.type, naive.value) == (oracledb.DB_TYPE_TIMESTAMP, wall)
    elif data_type == "DATE":
        assert bound == wall and naive == wall                  # plain DATE binds
    else:
        assert (bound.type, bound.value) == (oracledb.DB_TYPE_TIMESTAMP, wall)
        assert (naive.type, naive.value) == (oracledb.DB_TYPE_TIMESTAMP, wall)


@pytest.mark.parametrize("data_type, out_type", [
    ("INTERVAL DAY TO SECOND", oracledb.DB_TYPE_INTERVAL_DS),
    ("INTERVAL YEAR TO MONTH", oracledb.DB_TYPE_INTERVAL_YM),
    ("RAW", oracledb.DB_TYPE_RAW), ("BLOB", oracledb.DB_TYPE_BLOB),
    ("REF CURSOR", oracledb.DB_TYPE_CURSOR), ("JSON", oracledb.DB_TYPE_JSON),
    ("BOOLEAN", oracledb.DB_TYPE_BOOLEAN),
    ("TIMESTAMP WITH LOCAL TIME ZONE", oracledb.DB_TYPE_TIMESTAMP_LTZ),
])
def test_out_variables_use_the_driver_types(data_type, out_type):
    var = backend()._out_var(Cur(Conn()), _p("O", data_type, "OUT"), data_type)
    assert var.type is out_type


@pytest.mark.parametrize("value, shown", [
    (dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000), "P1DT2H3M4.5S"),
    (-dt.timedelta(minutes=90), "PT-1H-30M"),
    (-dt.timedelta(days=1, microseconds=1), "P-1DT-0.000001S"),
    (dt.timedelta(0), "PT0S"),
    (oracledb.IntervalYM(1, 2), "P1Y2M"),
    (oracledb.IntervalYM(-2, 0), "P-2Y"),
    (oracledb.IntervalYM(-1, -6), "P-1Y-6M"),
    (oracledb.IntervalYM(0, 0), "P0M"),
    (b"\x0a\x1b", "\\x0a1b"),
    (Decimal("12345678901234567890.123456789012345678"), Decimal("12345678901234567890.123456789012345678")),
    (dt.datetime(2024, 5, 1, 10, 0, 0, 5), "2024-05-01T10:00:00.000005"),
])
def test_values_come_back_as_iso_8601_and_hex_and_round_trip(value, shown):
    assert ov.result_value(value) == shown
    if isinstance(value, dt.timedelta):
        assert ov.parse_interval_ds(shown, "X") == value       # what resubmit sends back
    elif isinstance(value, oracledb.IntervalYM):
        assert ov.parse_interval_ym(shown, "X") == value
    elif isinstance(value, bytes):
        assert ov.parse_hex(shown, "X", "RAW") == value


@pytest.mark.parametrize("data_type, bad, message", [
    ("INTERVAL DAY TO SECOND", "P1M", "years or months"),
    ("INTERVAL DAY TO SECOND", "PT0.0000001S", "finer than a microsecond"),
    ("INTERVAL DAY TO SECOND", "tomorrow", "ISO 8601"),
    ("INTERVAL YEAR TO MONTH", "P1D", "days or a time"),
    ("RAW", "\\xabc", "hex bytes"),
    ("RAW", "zz", "hex bytes"),
])
def test_values_jobctl_cannot_read_are_exit_2_naming_the_parameter(data_type, bad, message):
    with pytest.raises(UsageError) as info:
        backend()._in_bind(Cur(Conn()), _p("P_X", data_type), data_type, bad)
    assert info.value.exit_code == 2 and "parameter P_X" in info.value.message
    assert message in info.value.message


# -- result sets: REF CURSOR OUT and implicit results ------------------------------------

def test_ref_cursor_out_and_implicit_results_come_back_as_bounded_row_arrays():
    """A REF CURSOR OUT (cursor.var(DB_TYPE_CURSOR)) and the cursors of
    DBMS_SQL.RETURN_RESULT (cursor.getimplicitresults()) become arrays of row
    objects, at most CallContext.result_rows rows each (one more is fetched
    to know), with a line in OUTPUT when cut (ORACLE_NOTES: Second review,
    "Implicit results and REF CURSORs")."""
    rc = Rows(["EMPNO", "ENAME", "HIRED", "Mixed"],
              [(Decimal("7839"), "KING", dt.datetime(1981, 11, 17), b"\x01"),
               (Decimal("7698"), "BLAKE", None, None), (Decimal("1"), "X", None, None)])
    extra = Rows(["N"], [(Decimal("1.5"),)])

    def fill(kw):
        kw["RC"].setvalue(0, rc)

    conn = Conn(on_call=fill)
    conn.implicit = [extra]
    ctx = CallContext(JOB, result_rows=2)
    result = backend().call(conn, _sig((_p("RC", "REF CURSOR", "OUT"), "REF CURSOR")), {}, ctx)
    assert result["rc"] == [
        {"empno": Decimal("7839"), "ename": "KING", "hired": "1981-11-17T00:00:00", "Mixed": "\\x01"},
        {"empno": Decimal("7698"), "ename": "BLAKE", "hired": None, "Mixed": None}]
    assert result["implicit_results"] == [[{"n": Decimal("1.5")}]]
    assert rc.closed and extra.closed
    assert "[jobctl] rc: cut at 2 rows (JOBCTL_RESULT_ROWS)" in ctx.snapshot()[1]
    assert "implicit result 1" not in ctx.snapshot()[1]
    assert conn.outputtypehandler is None                    # restored after the call


def test_numbers_in_result_sets_are_fetched_as_decimal():
    class Meta:
        type_code = oracledb.DB_TYPE_NUMBER

    class C:
        arraysize = 50

        def var(self, typ, arraysize=None):
            return (typ, arraysize)

    assert ov.decimal_numbers(C(), Meta()) == (Decimal, 50)
    Meta.type_code = oracledb.DB_TYPE_VARCHAR
    assert ov.decimal_numbers(C(), Meta()) is None


def test_result_rows_is_a_tunable_from_the_environment(monkeypatch):
    assert Tunables.from_sources({}).result_rows == 1000
    monkeypatch.setenv("JOBCTL_RESULT_ROWS", "50")
    assert Tunables.from_sources({}).result_rows == 50
    for bad in ("0", "x", "-3", "1.5", "10000000"):
        monkeypatch.setenv("JOBCTL_RESULT_ROWS", bad)
        with pytest.raises(UsageError, match="JOBCTL_RESULT_ROWS"):
            Tunables.from_sources({})


# -- overloads and the check at submit (issue 24) ------------------------------------------

ARG_COLUMNS = ("overload", "position", "argument_name", "data_type", "pls_type", "type_owner",
               "type_name", "type_subname", "in_out", "defaulted")


def _catalog_conn(rows):
    def answer(sql, binds):
        if "NAME_RESOLVE" in sql:
            for k, v in {"schema": "SCOTT", "part1": "PKG", "part2": "PROC", "dblink": None,
                         "part1_type": 9, "object_number": 1, "current_schema": "SCOTT"}.items():
                binds[k].setvalue(0, v)
    conn = Conn(answer=answer)

    class CatCur(Cur):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            if "all_arguments" in sql:
                self.description = [(c.upper(),) for c in ARG_COLUMNS]
                self.rows = rows
            elif "all_procedures" in sql:
                self.rows = [("PROCEDURE", "1"), ("PROCEDURE", "2")]

        def fetchall(self):
            return self.rows

    conn.cursor = lambda: CatCur(conn)
    return conn


def test_overloads_lists_every_overload_with_its_form():
    """ALL_ARGUMENTS.OVERLOAD tells overloads apart (ORACLE_NOTES: Second
    review, "Overloads"); each gets the form a user types to pick it."""
    rows = [("1", 1, "P_N", "NUMBER", "NUMBER", None, None, None, "IN", "N"),
            ("2", 1, "P_N", "VARCHAR2", "VARCHAR2", None, None, None, "IN", "N")]
    sigs = backend().overloads(_catalog_conn(rows), "pkg.proc")
    assert [s.overload for s in sigs] == ["1", "2"]
    assert [ob.catalog.signature_form(s) for s in sigs] == ["PKG.PROC(NUMBER)", "PKG.PROC(VARCHAR2)"]
    assert sigs[0].extra["pls_types"] == {"P_N": "NUMBER"}


def test_check_values_assigns_each_value_to_a_typed_variable_in_one_round_trip():
    """One anonymous block; each input assigned to a variable of its type
    (from an allow-list, never from the dictionary's text); the first
    refusal names its parameter. CLOB inputs are not sent (any text fits)."""
    def refuse_second(sql, binds):
        binds["jc_bad"].setvalue(0, 2)
        binds["jc_err"].setvalue(0, "ORA-06502: PL/SQL: numeric or value error: number precision too large")

    sig = _sig((_p("A", "VARCHAR2"), "VARCHAR2"), (_p("N", "NUMBER", pls_type="NATURALN"), "NUMBER"),
               (_p("C", "CLOB"), "CLOB"), (_p("D", "INTERVAL DAY TO SECOND"), "INTERVAL DAY TO SECOND"),
               (_p("O", "NUMBER", "OUT"), "NUMBER"))
    sig.extra["pls_types"] = {"N": "NATURALN"}
    conn = Conn(answer=refuse_second)
    with pytest.raises(UsageError) as info:
        backend().check_values(conn, sig, {"A": "x", "N": -1, "C": "long", "D": "PT1S"})
    assert info.value.exit_code == 2
    assert info.value.message == ("parameter N is NATURALN: '-1' is refused by the database: "
                                  "ORA-06502: PL/SQL: numeric or value error: number precision too large")
    [(sql, binds)] = conn.sent
    assert "v_1 VARCHAR2(32767);" in sql and "v_2 NATURALN := 0;" in sql
    assert "v_3 INTERVAL DAY(9) TO SECOND(9);" in sql and "v_4" not in sql
    assert set(binds) == {"v1", "v2", "v3", "jc_bad", "jc_err"}
    assert binds["v3"].type is oracledb.DB_TYPE_INTERVAL_DS
    conn = Conn()                                               # nothing refused
    backend().check_values(conn, sig, {"A": "x"})
    assert len(conn.sent) == 1


def test_check_values_refuses_unreadable_values_before_any_round_trip():
    conn = Conn()
    sig = _sig((_p("R", "RAW"), "RAW"))
    with pytest.raises(UsageError, match="parameter R is RAW"):
        backend().check_values(conn, sig, {"R": "xyz"})
    assert conn.sent == []
    backend().check_values(conn, _sig((_p("C", "CLOB"), "CLOB")), {"C": "x"})
    assert conn.sent == []                                      # nothing to check: no round trip


@pytest.mark.parametrize("data_type, pls_type, declared", [
    ("NUMBER", "INTEGER", "INTEGER"), ("NUMBER", None, "NUMBER"), ("PLS_INTEGER", None, "PLS_INTEGER"),
    ("NUMBER", "SIMPLE_INTEGER", "SIMPLE_INTEGER := 0"), ("DATE", None, "DATE"),
    ("TIMESTAMP WITH LOCAL TIME ZONE", None, "TIMESTAMP(9) WITH LOCAL TIME ZONE"),
    ("INTERVAL YEAR TO MONTH", None, "INTERVAL YEAR(9) TO MONTH"), ("BOOLEAN", None, "BOOLEAN"),
    ("CLOB", None, None), ("BLOB", None, None), ("X); DROP TABLE T; --", None, None),
])
def test_check_types_come_from_an_allow_list(data_type, pls_type, declared):
    assert ob.binds.check_type(data_type, pls_type) == declared


def test_check_values_block_binds_what_it_names():
    block = ob.binds.check_values_sql(["NUMBER", "DATE"])
    assert re.fullmatch(r"\s*DECLARE\b.*\bEND;\s*", block, re.S)
    assert set(re.findall(r"(?<![:\w]):(\w+)", block)) == {"v1", "v2", "jc_bad", "jc_err"}
    assert block.count("EXCEPTION WHEN OTHERS THEN") == 2
    assert not re.search(r"\b(INSERT|UPDATE|DELETE|MERGE|COMMIT|CALL)\b", block)   # no side effect


def test_check_values_never_refuses_over_its_own_block():
    """ORA-06550 means jobctl's block did not compile on this database: the
    values are not at fault, so submit goes on and the call checks them."""
    def broken(sql, binds):
        raise ora_error("ORA-06550: line 3, column 9:\nPLS-00201: identifier 'JSON' must be declared",
                        6550)

    conn = Conn(answer=broken)
    backend().check_values(conn, _sig((_p("J", "JSON"), "JSON")), {"J": {"a": 1}})
    assert len(conn.sent) == 1
    assert ob.binds.check_type("NVARCHAR2", None) is None     # its size depends on the charset


def _static_sql(block: str) -> list[str]:
    """The static SQL inside a PL/SQL block, as plain SQL: `SELECT x INTO v
    FROM t;` without its INTO, DML up to its `;` (sqlglot parses SQL, not
    PL/SQL: ORACLE_NOTES "Testing without a server")."""
    out = []
    for m in re.finditer(r"\b(SELECT\b.*?;(?=\s*\n)|DELETE\s+FROM\b.*?;(?=\s*\n)|UPDATE\s+\w+\s+SET\b.*?;(?=\s*\n))", block,
                         re.S | re.I):
        stmt = m.group(1).rstrip(";")
        if "EXECUTE IMMEDIATE" in block[max(0, m.start() - 25):m.start()] or stmt.count("'") % 2:
            continue                                  # dynamic SQL, linted on its own
        out.append(re.sub(r"\bINTO\s+\w+(\s*,\s*\w+)*\s+FROM\b", "FROM", stmt, flags=re.I))
    return out


def test_static_sql_inside_the_plsql_blocks_is_oracle_sql():
    """What PL/SQL compiles statically must be right, or the block (the
    call's first round trip, the schema's procedures) fails to compile: the
    SELECTs of the fingerprint, CLEANUP_OLD_ASYNC_JOBS's DELETE and
    JOBCTL_PROGRESS's UPDATE parse as Oracle SQL. Syntax only: sqlglot does
    not know Oracle's views or types."""
    from jobctl.sqlfiles import read_sql, split_script

    units = split_script(read_sql("oracle", "create_async_jobs_table.sql"), "sqlplus")
    cleanup = next(u for u in units if "PROCEDURE CLEANUP_OLD_ASYNC_JOBS" in u)
    body = next(u for u in units if u.startswith("CREATE OR REPLACE PACKAGE BODY JOBCTL_PROGRESS"))
    statements = _static_sql(ob.STATE_BLOCK) + _static_sql(cleanup) + _static_sql(body)
    assert len(statements) >= 6, statements
    for stmt in statements:
        tree = sqlglot.parse_one(stmt, read="oracle")
        assert not isinstance(tree, exp.Command), stmt
