"""Timing knobs: how often a worker beats, when a job reads lost, how long
waits and retries last. Read once at start-up from the environment
(JOBCTL_HEARTBEAT, ...) or the profile, every value checked there."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from .errors import UsageError


#: no timing knob may exceed this: past it, date arithmetic overflows (and a
#: heartbeat of a month means no heartbeat at all)
MAX_TUNABLE_S = 30 * 86400.0


@dataclass(frozen=True)
class Tunables:
    """Timing knobs; tests shorten them through the environment."""

    heartbeat_s: float = 5.0       # watchdog: the heartbeat row (a sign of life for `lost`)
    cancel_poll_s: float = 1.0     # watchdog: how often it reads the cancel flag where no
                                   # notification brings it (SQLite, Oracle)
    lost_after_s: float = 60.0     # a running job with an older heartbeat is lost
    start_timeout_s: float = 60.0  # a queued job no worker claimed by then is lost
    poll_s: float = 0.5            # `wait` polling
    retry_backoff_s: float = 2.0   # --retries: first pause, doubled each attempt
    busy_timeout_s: float = 30.0   # SQLite: how long a write waits for another writer
    final_write_attempts: int = 8  # final status write, retried with backoff
    #: a completed job's commit that meets a lock or a full disk is tried again
    #: for this long (None: lost_after_s, after which others read it lost)
    outcome_retry_s: float | None = None
    result_rows: int = 1000        # rows kept per REF CURSOR / implicit result (OUTPUT says a cut)

    @property
    def outcome_retry_window_s(self) -> float:
        return self.lost_after_s if self.outcome_retry_s is None else self.outcome_retry_s

    @staticmethod
    def env_name(f: str) -> str:
        return "JOBCTL_" + f.upper().removesuffix("_S")

    @classmethod
    def from_sources(cls, profile: dict[str, Any]) -> Tunables:
        """Every knob checked here, at start-up: `inf` would stop the watchdog,
        `nan` spin a core, and a heartbeat slower than lost_after get healthy
        jobs declared lost. Errors name the variable (or profile key) to fix."""
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for f in ("heartbeat_s", "cancel_poll_s", "lost_after_s", "start_timeout_s", "poll_s",
                  "retry_backoff_s", "busy_timeout_s", "outcome_retry_s"):
            env = os.environ.get(cls.env_name(f))
            raw = env if env is not None else profile.get(f)
            if raw is None:
                continue
            source = cls.env_name(f) if env is not None else f"profile key {f}"
            try:
                value = float(raw)
            except (TypeError, ValueError, OverflowError):
                value = math.nan
            if isinstance(raw, bool) or not (0 < value <= MAX_TUNABLE_S):
                raise UsageError(f"invalid {source} {raw!r}: must be a number of seconds "
                                 f"above 0 and at most {MAX_TUNABLE_S:.0f} (30 days)")
            values[f], sources[f] = value, source
        from .params import row_bound
        values["result_rows"] = row_bound(profile)
        tunables = cls(**values)
        if tunables.heartbeat_s * 3 > tunables.lost_after_s:
            hb = sources.get("heartbeat_s", "JOBCTL_HEARTBEAT (default)")
            lost = sources.get("lost_after_s", "JOBCTL_LOST_AFTER (default)")
            raise UsageError(f"invalid {hb} {tunables.heartbeat_s:g}: must be at most a third of "
                             f"{lost} ({tunables.lost_after_s:g}), or a slow heartbeat reads as lost")
        return tunables
