"""Checks of what a DAG author passes to an operator or sensor, shared by both APIs.

Templated fields are checked after rendering (at run time), so a bad value fails the task with a message
that names the task and the argument, without using its retries; constructor arguments are checked when
the DAG file is parsed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_provider_orders.exceptions import PermanentOrdersError


def rendered_id(value: Any, what: str, task_id: str, *, required: bool) -> str | None:
    """A rendered id (kitchen name, order id, run id), stripped.

    Empty or None is None when not ``required`` and an error when it is; ``"None"`` (what an unset XCom,
    conf key or param renders to) and anything but a string (or an int) are always errors.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if not required:
            return None
        raise PermanentOrdersError(
            f"Task '{task_id}': {what} rendered to {value!r}; it must be a non-empty string "
            "(check the conf key, param or upstream XCom it comes from)."
        )
    if not isinstance(value, str):
        raise PermanentOrdersError(
            f"Task '{task_id}': {what} must be a string, got {type(value).__name__} {value!r}."
        )
    text = value.strip()
    if text == "None":
        raise PermanentOrdersError(
            f"Task '{task_id}': {what} rendered to 'None' (an XCom, conf key or param that was not set)."
        )
    return text


def seconds(value: float | timedelta | None, name: str, *, allow_zero: bool) -> float | None:
    """``timedelta`` or a number of seconds → float seconds (None stays None)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise ValueError(f"{name} must be a number of seconds or a timedelta, got {value!r}")
    if result < 0 or (result == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return result


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def rendered_flag(value: Any, what: str, task_id: str) -> bool:
    """A rendered yes/no argument: a bool, or the text a template renders (``"True"``, ``"false"``,
    ``"1"``...). Anything else is an error rather than a guess (``bool("False")`` is true)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise PermanentOrdersError(
        f"Task '{task_id}': {what} must be true or false, got {type(value).__name__} {value!r}."
    )


__all__ = ["rendered_flag", "rendered_id", "seconds"]
