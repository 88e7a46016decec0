"""All SQL on ASYNC_JOBS and its two companion tables, written once.
Backends supply only small hooks: paramstyle, row limits, percentiles and
how times are bound. Callers use `store.<name>`; the modules say where
each statement lives: rows (shape and binding), jobs (one job's
statements), queues (limits, dependencies), claims (the claim), workers
(JOB_WORKERS)."""

from __future__ import annotations

from .rows import (  # noqa: F401 - the store's surface
    beat_value,
    TABLE, ProcedureFilter, DEFAULT_QUEUE, DEFAULT_MAX_RUNNING, SELECT_JOBS, execute,
    status_binds, dict_rows, job_rows, read_text, row_to_job, split_ids, bind_time,
)
from .jobs import (  # noqa: F401 - the store's surface
    insert_job, insert_jobs, fail_queued, note_queued, find_active_unique, claim, heartbeat,
    cancel_flag, next_attempt, finish_sent, get, get_by_prefix, recent_jobs, list_jobs,
    STAT_STATUSES, stats, lost_suspects, mark_lost, cancel_queued, request_cancel,
    count_finished_before, delete_finished_batch, table_columns, MARKS, commit_marker,
    has_commit_mark, delete_commit_marks, record_session, final_output, finish_in_call,
    note_committed,
)
from .queues import (  # noqa: F401 - the store's surface
    QUEUES, NEXT_ORDER, claim_in, in_queue, OURS, QueueState, ensure_queue, queue_row,
    count_active, live_workers, queue_state, dependency_statuses, blocking_dependency,
    cancel_dependent, queued_dependents, queued_with_dependencies, queues_needing_workers,
    set_queue, list_queues, queue_exists, unfinished_in_queue, delete_queue, queued_not_before,
)
from .claims import (  # noqa: F401 - the store's surface
    CLAIM_SCAN, claimable, claim_next, CLAIM_SPARE, claim_batch, LockBounds, unreserve, savepoint,
    rollback_to, handover_sql,
)
from .workers import (  # noqa: F401 - the store's surface
    WORKERS, ALL_QUEUES, WorkerRow, register_worker, worker_heartbeat, deregister_worker,
    list_workers, delete_workers,
)
from .tokens import (  # noqa: F401 - the store's surface
    TOKENS, TokenRow, insert_token, token_by_id, token_by_name, list_tokens, revoke_token,
    delete_token, touch_token, count_since, check_tokens_table, METRIC_COLUMNS, metrics_sql,
    read_metrics,
)
from ..model import COLUMNS  # noqa: F401 - as the store has always offered it
