"""Oracle errors: reading the driver's error, and what jobctl says about it
(ORACLE_NOTES "Errors → what jobctl says")."""

from __future__ import annotations

import re
from typing import Any

import oracledb

from ...errors import DatabaseError, JobctlError, NotFound, SchemaMissing
from .shared import OracleBase


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _summary(text: str) -> str:
    """The first line plus every PLS-nnnnn line, as one line: ORA-06550 says
    only where (`line 5, column 9:`), the PLS line says what is wrong
    (issue 8 defect 3)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return text.strip()
    pls = [ln for ln in lines[1:] if re.match(r"PLS-\d{5}:", ln)]
    return " ".join(dict.fromkeys([lines[0], *pls]))


def db_text(err: Any) -> str:
    """The database's message without the help URL that thin mode appends
    (src/oracledb/errors.py, `_Error._make_adjustments`)."""
    lines = [ln for ln in str(err.message).splitlines() if not ln.startswith("Help: ")]
    return "\n".join(lines).strip()


def error_info(exc: BaseException) -> Any | None:
    """The driver's `_Error` (code, full_code, message, isrecoverable), or None."""
    if isinstance(exc, oracledb.Error) and exc.args and hasattr(exc.args[0], "full_code"):
        return exc.args[0]
    return None


def created_object(sql: str) -> tuple[str, str, bool] | None:
    """(object type, name, OR REPLACE?) of a CREATE statement, or None."""
    m = re.match(r"\s*CREATE\s+(OR\s+REPLACE\s+)?(?:(?:NON)?EDITIONABLE\s+)?"
                 r"(PACKAGE\s+BODY|TYPE\s+BODY|PACKAGE|PROCEDURE|FUNCTION|TRIGGER|TYPE|VIEW)\s+"
                 r"(?:\"?[\w$#]+\"?\s*\.\s*)?\"?([\w$#]+)\"?", sql, re.IGNORECASE)
    if not m:
        return None
    return " ".join(m.group(2).upper().split()), m.group(3).upper(), bool(m.group(1))


def error_code(exc: BaseException) -> tuple[int, str]:
    err = error_info(exc)
    return (err.code, err.full_code) if err is not None else (-1, "")


#: a session ended on purpose: ORA-00028 your session has been killed,
#: ORA-00031 session marked for kill, ORA-01012 not logged on. Never retried
#: (ORACLE_NOTES: Second review, "Never retry a kill")
KILLED_CODES = frozenset({28, 31, 1012})


def ora_code(err: Any) -> str | None:
    """The database's own code as it prints it ("ORA-00028"), kept on the job
    (DB_ERROR_CODE). Driver errors (DPY-nnnn) have code 0 and give None; a
    DPY error that wraps a database error keeps the database's code: thin
    mode maps ORA-00028/00031/00600/01012/03113... to DPY-4011 but leaves
    `code` as the server sent it (src/oracledb/errors.py, `_make_adjustments`
    and `ERR_ORACLE_ERROR_XREF`)."""
    code = getattr(err, "code", 0) or 0
    return f"ORA-{code:05d}" if code > 0 else None


def is_killed(err: Any) -> bool:
    return err is not None and (getattr(err, "code", 0) or 0) in KILLED_CODES


def server_text(err: Any) -> str:
    """The error as the database prints it: the ORA lines first. A DPY-4011
    that wraps a database error puts the driver's paraphrase ("the database
    or network closed the connection") before the server's own line
    (ORACLE_NOTES: Second review, "ORA-00031 is success"); the server's line
    leads, the driver's stays after it, nothing is replaced."""
    text = db_text(err)
    lines = text.splitlines()
    if ora_code(err) is None or not lines or not lines[0].startswith("DPY-"):
        return text
    driver = [ln for ln in lines if ln.startswith("DPY-")]
    rest = [ln for ln in lines if not ln.startswith("DPY-")]
    return "\n".join(rest + driver) if rest else text


def one_line(text: str) -> str:
    """Several lines as one: the first, the rest in parentheses."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return text.strip()
    return f"{lines[0]} ({'; '.join(lines[1:])})"


class OracleErrors(OracleBase):
    def is_missing_table(self, exc: BaseException) -> bool:
        return error_code(exc)[0] == 942

    def is_undefined_column(self, exc: BaseException) -> bool:
        """ORA-00904 invalid identifier: a column of jobctl's that an
        original-shaped ASYNC_JOBS lacks (then `db init` upgrades it)."""
        return error_code(exc)[0] == 904

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return False  # no bound_lock_wait on Oracle (see the dialect)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return error_code(exc)[0] == 1

    #: ORA-00955 name already used, ORA-01430 column exists, ORA-01408 column
    #: list already indexed, ORA-02260 table has a primary key, ORA-02261 such
    #: a unique/primary key exists, ORA-02275 such a referential constraint exists
    _ALREADY_EXISTS = frozenset({955, 1430, 1408, 2260, 2261, 2275})

    def is_already_exists(self, exc: BaseException) -> bool:
        return error_code(exc)[0] in self._ALREADY_EXISTS

    #: ORA-00060 deadlock, ORA-00054 resource busy (ORACLE_NOTES "Errors →
    #: what jobctl says"). ORA-04068/04061 are not here: `call` retries the
    #: call itself once on them, and no bookkeeping write can raise them. A
    #: connection storm: ORA-00018 sessions / ORA-00020 processes exceeded.
    #: ORA-01033: the instance is starting or stopping (a listener not ready yet).
    _TRANSIENT_CODES = frozenset({60, 54, 18, 20, 1033})
    #: connection lost, call timed out, cannot connect (database restarting)
    _TRANSIENT_DPY = frozenset({"DPY-4011", "DPY-4024", "DPY-6005"})
    #: the listener refusing for now (thin mode: DPY-6000 "Similar to ORA-125xx"):
    #: no free handler (12516, 12519) or instance blocked, e.g. starting (12520, 12528).
    #: ORA-12514 (service unknown; thin: DPY-6001) is not here: right after a
    #: listener restart it is transient, but a misspelt service name would then
    #: be waited out in silence for the whole start timeout
    _TRANSIENT_LISTENER = re.compile(r"ORA-(12516|12519|12520|12528)\b")

    def is_transient(self, exc: BaseException) -> bool:
        err = error_info(exc)
        if err is None or is_killed(err):
            # a kill is on purpose: never retried, although the driver marks
            # the DPY-4011 it raises recoverable
            return False
        return bool(err.isrecoverable or err.code in self._TRANSIENT_CODES
                    or err.full_code in self._TRANSIENT_DPY
                    or (err.full_code == "DPY-6000" and self._TRANSIENT_LISTENER.search(err.message)))

    def translate_error(self, exc: BaseException) -> JobctlError:
        """A driver exception as one line with the DSN (password masked) and
        what it means, per the table in ORACLE_NOTES "Errors → what jobctl says".
        Driver (DPY) errors have code 0 and are matched on full_code."""
        if isinstance(exc, JobctlError):
            return exc
        err = error_info(exc)
        where = self.settings.display
        if err is None:
            return DatabaseError(f"{where}: {exc}")
        code, full = err.code, err.full_code
        text = db_text(err)
        lines = text.splitlines() or [""]
        cause = lines[1].strip() if full.startswith("DPY-") and len(lines) > 1 else ""
        transient = self.is_transient(exc)
        if code == 942 and ("ASYNC_JOBS" in text.upper() or '"' not in lines[0]):
            # before 23ai ORA-00942 does not name the table; jobctl's own
            # statements touch only ASYNC_JOBS
            return SchemaMissing(where)
        if code == 6550 and "PLS-00201" in text:
            m = re.search(r"PLS-00201: identifier '([^']+)'", text)
            name = m.group(1) if m else "the procedure"
            # jobctl calls through an anonymous block, which runs with the
            # session's enabled roles, so a role grant does count
            # (ORACLE_NOTES "Errors → what jobctl says")
            return NotFound(f"{name}: procedure not found, or this user may not execute it, in "
                            f"{where}: grant EXECUTE on it to the user directly or through a "
                            f"role enabled in the session ({_summary(text)})")
        if code in (6564, 4047):
            return NotFound(f"procedure not found in {where}: {_summary(text)}")
        if code == 1017 or "ORA-01017" in text:
            return DatabaseError(f"cannot connect to {where}: invalid username or password (ORA-01017)")
        if full == "DPY-4001":
            return DatabaseError(f"cannot connect to {where}: no password; set JOBCTL_PASSWORD, "
                                 "password_env or password_file in a profile, or run on a terminal "
                                 "to be asked")
        if full == "DPY-6005" or code == 12541:
            reason = cause or first_line(text)
            s = self.settings
            target = (f"{s.host}:{s.port or 1521}" if s.port or s.database
                      else f"the address of TNS alias {s.host}")
            if "refused" in reason.lower() or code == 12541:
                reason = f"nothing is listening at {target} ({reason})"
            return DatabaseError(f"cannot connect to {where}: {reason}", transient=True)
        if full in ("DPY-6001", "DPY-6003") or code in (12514, 12505):
            return DatabaseError(f"cannot connect to {where}: unknown service: "
                                 f"{first_line(text).split(': ', 1)[-1]}")
        if full == "DPY-4000":
            return DatabaseError(f"cannot connect to {where}: unknown TNS alias: "
                                 f"{first_line(text).split(': ', 1)[-1]}; check config_dir or TNS_ADMIN")
        if full in ("DPY-4026", "DPY-4027"):
            return DatabaseError(f"cannot connect to {where}: {first_line(text).split(': ', 1)[-1]}; "
                                 "a TNS alias needs tnsnames.ora in the profile's config_dir or "
                                 "$TNS_ADMIN, or use oracle://user@host:port/service")
        if full == "DPY-3001":
            return DatabaseError(f"cannot connect to {where}: {_summary(text)}; this needs thick "
                                 "mode: set oracle_client = \"/path/to/instantclient\" or "
                                 "thick = true in the profile (README: Oracle Database, thick mode)")
        if full == "DPY-4011":
            # the server's own line (ORA-00028 your session has been killed,
            # ORA-00600 ...) leads; the driver's paraphrase only follows it
            return DatabaseError(f"{where}: {one_line(server_text(err))}", transient=transient,
                                 code=ora_code(err), killed=is_killed(err))
        if code == 1013:
            return DatabaseError(f"{where}: call cancelled (ORA-01013)", code="ORA-01013")
        if full == "DPY-4024":
            return DatabaseError(f"{where}: call timed out ({first_line(text)})", transient=True)
        if code == 1031:
            return DatabaseError(f"{where}: insufficient privileges (ORA-01031)", code="ORA-01031")
        return DatabaseError(f"{where}: {_summary(text)}", transient=transient, code=ora_code(err))
