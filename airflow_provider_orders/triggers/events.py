"""The one event every trigger of this provider yields, and how the task reads it back.

A trigger ends with exactly one event; its payload is a JSON dict::

    {"outcome": "success" | "failed" | "timeout" | "error", "message": "...",
     "permanent": bool, "error_type": "...",          # "error" only
     ...fields of the API}                            # e.g. order_id, order_run_id, run_status

``outcome`` says how the wait ended: ``success`` (the awaited state), ``failed`` (a state that will not
lead there), ``timeout`` (the deadline passed first) or ``error`` (reading failed; ``permanent`` says
whether a task retry could help). The worker turns the payload back into a :class:`WaitEvent` with
:meth:`WaitEvent.from_payload`, which also reads the keys 0.1 used (``status``, ``order_run_status``,
``orderrun_status``), so an event that fired before an upgrade still resumes its task.

Cheap to import: no Airflow import until an event is built in a trigger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from airflow_provider_orders.exceptions import (
    OrdersProviderError,
    PermanentOrdersError,
    TransientOrdersError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.triggers.base import TriggerEvent


class WaitOutcome(str, Enum):
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"


#: Keys of 0.1 payloads and what they are called now.
_LEGACY_KEYS = {"order_run_status": "run_status", "orderrun_status": "run_message"}


@dataclass(frozen=True)
class WaitEvent:
    """How a trigger's wait ended, plus the API fields the task needs to finish.

    :param outcome: see the module doc.
    :param message: what happened, in the DAG author's terms (never a secret).
    :param fields: the API's fields (``order_id``, ``order_run_id``, ``run_status``, ``run_message``,
        ``kitchen``, ``order_state``...).
    :param permanent: for ``error``: a retry of the task cannot heal it.
    :param error_type: for ``error``: the exception class that ended the wait.
    """

    outcome: WaitOutcome
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    permanent: bool = False
    error_type: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, message: str, **fields: Any) -> WaitEvent:
        """An ``error`` event for an exception raised while waiting."""
        return cls(
            WaitOutcome.ERROR,
            message,
            fields,
            permanent=isinstance(exc, PermanentOrdersError),
            error_type=type(exc).__name__,
        )

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"outcome": self.outcome.value, "message": self.message, **self.fields}
        if self.outcome is WaitOutcome.ERROR:
            data["permanent"] = self.permanent
            data["error_type"] = self.error_type
        return data

    def trigger_event(self) -> TriggerEvent:
        from airflow.triggers.base import TriggerEvent

        return TriggerEvent(self.payload())

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> WaitEvent:
        data = dict(payload)
        raw = data.pop("outcome", None) or data.pop("status", None)
        try:
            outcome = WaitOutcome(raw)
        except ValueError:
            outcome = WaitOutcome.ERROR
        message = str(data.pop("message", None) or f"the trigger ended without a message ({raw!r})")
        permanent = bool(data.pop("permanent", False))
        error_type = data.pop("error_type", None)
        for old, new in _LEGACY_KEYS.items():
            if old in data:
                data.setdefault(new, data.pop(old))
        return cls(outcome, message, data, permanent=permanent, error_type=error_type)

    def get(self, key: str) -> str | None:
        """A field as non-empty text, else None."""
        value = self.fields.get(key)
        return str(value) if value not in (None, "") else None

    def error(self) -> OrdersProviderError:
        """The exception an ``error`` event stands for: permanent or transient, as the trigger saw it."""
        if self.permanent:
            return PermanentOrdersError(self.message)
        return TransientOrdersError(self.message)


__all__ = ["WaitEvent", "WaitOutcome"]
