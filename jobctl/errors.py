"""Domain exceptions. Each carries the exit code DESIGN.md assigns to it; the
CLI translates them to one line on stderr in exactly one place."""

from __future__ import annotations


class JobctlError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(JobctlError):
    """Bad option, bad NAME=VALUE, wrong type, invalid procedure name."""

    exit_code = 2


class NotFound(JobctlError):
    """Unknown job id or procedure."""

    exit_code = 3


class DatabaseError(JobctlError):
    """Cannot connect, bad credentials, permission, any database failure.

    `code` is the database's own error code when it gave one (a SQLSTATE such
    as "JC042" or "23505"; "ORA-00028"), kept on the job as DB_ERROR_CODE.
    `killed`: the server ended the session on purpose (PostgreSQL's
    administrator termination 57P01; ORA-00028/00031/01012): the job ends
    `failed` with the server's text and is never retried."""

    exit_code = 4

    def __init__(self, message: str, *, transient: bool = False, code: str | None = None,
                 killed: bool = False):
        super().__init__(message)
        self.transient = transient
        #: the database's own error code ("ORA-00028", a SQLSTATE), when it gave one
        self.code = code
        #: the server session was ended on purpose (killed, terminated): never retried
        self.killed = killed


class SchemaMissing(DatabaseError):
    def __init__(self, where: str):
        super().__init__(f"table ASYNC_JOBS not found in {where}; create it with `jobctl db init`")


class SchemaOutdated(DatabaseError):
    """ASYNC_JOBS is there but older than jobctl (the original ten columns)."""

    def __init__(self, missing: int):
        super().__init__(f"run jobctl db init to upgrade ASYNC_JOBS ({missing} column"
                         f"{'' if missing == 1 else 's'} missing)")
        self.missing = missing


class JobsUnfinished(JobctlError):
    """`wait --timeout` ran out with jobs still queued or running."""

    exit_code = 5


class JobsNotCompleted(JobctlError):
    """A waited-for job failed, was cancelled, timed out or was lost."""

    exit_code = 1


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, JobctlError):
        return exc.message
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
