"""Fakes for the offline Oracle tests: they only record what the backend
asks of a driver connection and cursor (statements, binds, variables), and
answer the binds a test sets. No database behaviour is imitated."""

from __future__ import annotations

import datetime as dt

import oracledb
from oracledb import errors as ora_errors

from jobctl.backends import get_backend
from jobctl.backends import oracle as ob
from jobctl.config import parse_dsn
from jobctl.model import Signature

UTC = dt.timezone.utc
JOB = "0123456789abcdef0123456789abcdef"


def backend(**options) -> ob.OracleBackend:
    return get_backend(parse_dsn("oracle://scott@dbhost:1521/FREEPDB1", options=options))


def ora_error(message: str, code: int) -> oracledb.Error:
    """A database error exactly as thin mode raises it (the driver's `_Error`,
    which maps ORA-00028/00031/01012... to DPY-4011: src/oracledb/errors.py)."""
    err = ora_errors._Error(message, code=code)
    return err.exc_type(err)


class Var:
    def __init__(self, typ, size=0):
        self.type, self.size, self.value = typ, size, None

    def setvalue(self, pos, value):
        self.value = value

    def getvalue(self, pos=0):
        return self.value


class Cur:
    """Records statements; `answer(sql, binds)` may set OUT binds or raise."""

    def __init__(self, conn):
        self.conn, self.executed, self.calls, self.sizes = conn, [], [], {}
        self.implicit, self.warning = [], None

    def var(self, typ, size=0, **kw):
        return Var(typ, size)

    def arrayvar(self, typ, value, size=0):
        v = Var(typ, size)
        v.value = []
        return v

    def setinputsizes(self, **sizes):
        self.sizes.update(sizes)

    def execute(self, sql, binds=None, **kw):
        self.executed.append((sql, binds))
        self.conn.sent.append((sql, binds))
        if self.conn.answer:
            self.conn.answer(sql, binds)
        if binds and "num_lines" in binds:
            binds["num_lines"].setvalue(0, 0)

    def callproc(self, name, parameters=None, keyword_parameters=None):
        self.calls.append((name, keyword_parameters))
        self.conn.sent.append(("callproc " + name, keyword_parameters))
        if self.conn.on_call:
            self.conn.on_call(keyword_parameters)

    def getimplicitresults(self):
        return self.conn.implicit

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Conn:
    def __init__(self, answer=None, on_call=None):
        self.sent, self.answer, self.on_call, self.implicit = [], answer, on_call, []
        self.attrs, self.cursors = {}, []
        self.transaction_in_progress = False

    def cursor(self):
        cur = Cur(self)
        self.cursors.append(cur)
        return cur

    def __setattr__(self, name, value):
        if name in ("client_identifier", "module", "action"):
            self.attrs[name] = value
        object.__setattr__(self, name, value)


class Rows:
    """A result cursor as the driver hands one back: description and fetchmany."""

    def __init__(self, columns, rows):
        self.description = [(c, None) for c in columns]
        self.rows, self.closed, self.arraysize = rows, False, 100

    def fetchmany(self, n):
        return self.rows[:n]

    def close(self):
        self.closed = True


def _p(name, data_type, mode="IN", pls_type=None, defaulted=False):
    row = {"argument_name": name, "data_type": data_type, "pls_type": pls_type, "type_owner": None,
           "type_name": None, "type_subname": None, "in_out": mode,
           "defaulted": "Y" if defaulted else "N"}
    return ob.OracleBackend._param(row)


def _sig(*params_types, name="P"):
    params = tuple(p for p, _ in params_types)
    types = {p.name: t for p, t in params_types}
    return Signature(name, params, extra={"call_name": name, "types": types})


