"""What an operator keeps in Airflow's task state store (``context["task_state_store"]``, Airflow 3.3+):
which *attempt* of the task wrote a record, and writing a record that must not get lost.

An attempt is the series of tries that starts when a task instance is first scheduled or is cleared
(after success, after failure, or while deferred). Airflow sets ``max_tries = try_number + retries`` when
it clears a task, so the first try of the current attempt is ``max_tries - retries + 1`` (the sum Airflow's
own task runner uses to find a sensor's first reschedule). A clear of a *running* task does not start a
new attempt: Airflow kills the try and retries it.

A record written by an earlier attempt tells what happened before a clear; it never proves that this
attempt's work is done ("a cleared task starts clean").
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from airflow.providers.common.compat.sdk import Context

#: Writes of a record that must not get lost: tries and the pause before each retry (seconds).
WRITE_PAUSES = (0.5, 1.0, 2.0)


def try_number(context: Context) -> int | None:
    """The running try's number, or None when the context has no task instance that says."""
    value = getattr(context.get("ti"), "try_number", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def first_try_of_attempt(context: Context, retries: int | None) -> int | None:
    """The number of the first try of the current attempt (None when the task instance does not say)."""
    max_tries = getattr(context.get("ti"), "max_tries", None)
    if not isinstance(max_tries, int) or isinstance(max_tries, bool):
        return None
    first = max_tries - (retries or 0) + 1
    current = try_number(context)
    if current is not None:
        first = min(first, current)  # never in the future, whatever max_tries says
    return max(first, 1)


def written_this_attempt(record: Mapping[str, Any], context: Context, retries: int | None) -> bool:
    """Whether ``record`` (with a ``try_number``) was written by a try of the current attempt.

    A record without a try number (written by an older version of this provider) counts as this
    attempt's, as it did then.
    """
    written_by = record.get("try_number")
    first = first_try_of_attempt(context, retries)
    if not isinstance(written_by, int) or isinstance(written_by, bool) or first is None:
        return True
    return written_by >= first


def retries_left(context: Context, retries: int | None) -> bool:
    """Whether Airflow runs another try of this task instance after the running one fails (its try
    number is within ``max_tries``; without them in the context, whether the task has retries)."""
    current = try_number(context)
    max_tries = getattr(context.get("ti"), "max_tries", None)
    if current is None:
        return bool(retries)
    if not isinstance(max_tries, int) or isinstance(max_tries, bool):
        max_tries = retries or 0
    return current <= max_tries


class StateWriteError(Exception):
    """The task state store refused a record after every try (the cause is chained)."""


def write_record(store: Any, key: str, value: Mapping[str, Any], *, log: logging.Logger | Any) -> None:
    """``store.set(key, value)``, tried again after a short pause when the API server fails to take it.

    :raises StateWriteError: when every try failed (the last error chained).
    """
    last: Exception | None = None
    for pause in (*WRITE_PAUSES, None):
        try:
            store.set(key, dict(value))
            return
        except Exception as exc:  # the store raises AirflowRuntimeError, but any failure counts
            last = exc
            if pause is None:
                break
            log.warning("Could not write %r to the task state store (%s); trying again", key, exc)
            time.sleep(pause)
    raise StateWriteError(f"the task state store did not take {key!r}: {last}") from last


def delete_record(store: Any, key: str, *, log: logging.Logger | Any) -> None:
    """Best effort: forget a record whose work is done (a failure only leaves it to the attempt rule)."""
    try:
        store.delete(key)
    except Exception as exc:
        log.info(
            "Could not delete %r from the task state store (%s); an earlier attempt's record is "
            "never counted as this attempt's anyway",
            key,
            exc,
        )


__all__ = [
    "StateWriteError",
    "delete_record",
    "first_try_of_attempt",
    "try_number",
    "write_record",
    "written_this_attempt",
]
