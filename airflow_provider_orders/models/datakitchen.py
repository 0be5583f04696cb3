"""DataKitchen values: order run statuses, an order run read once from the API's dict, and the words
messages use for an order.

An *order* asks for a recipe variation to run (the API's "serving book", id ``order_id`` /
``serving_hid`` in the create answer); an *order run* is one execution of it (a "serving", id ``hid``, or
``serving_hid`` in some answers). Statuses are read leniently: an unknown status is kept as text and
counts as "still running", never as an end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class OrderRunStatus(str, Enum):
    """DataKitchen order run (``serving``) ``status``, with what each one means for a waiting task."""

    PLANNED_SERVING = "PLANNED_SERVING"
    ACTIVE_SERVING = "ACTIVE_SERVING"
    COMPLETED_SERVING = "COMPLETED_SERVING"
    SERVING_ERROR = "SERVING_ERROR"
    STOPPED_SERVING = "STOPPED_SERVING"
    #: The run was superseded by a resume: the order's newest run carries on.
    SERVING_RERAN = "SERVING_RERAN"

    @classmethod
    def parse(cls, value: Any) -> OrderRunStatus | None:
        """The status of an API value (any casing, padded); None for a missing or unknown one."""
        if not value:
            return None
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            return None

    @property
    def is_terminal(self) -> bool:
        """The run will not change any more (it may have been superseded: see :attr:`is_superseded`)."""
        return self in TERMINAL_RUN_STATUSES

    @property
    def is_failed(self) -> bool:
        """The run ended without success: the recipe failed or was stopped."""
        return self in FAILED_RUN_STATUSES

    @property
    def is_superseded(self) -> bool:
        """A resume replaced this run: follow the order's newest run instead."""
        return self is OrderRunStatus.SERVING_RERAN


#: A run in one of these will not change any more.
TERMINAL_RUN_STATUSES: frozenset[OrderRunStatus] = frozenset(
    {
        OrderRunStatus.COMPLETED_SERVING,
        OrderRunStatus.SERVING_ERROR,
        OrderRunStatus.STOPPED_SERVING,
        OrderRunStatus.SERVING_RERAN,
    }
)
#: A run in one of these did not succeed. SERVING_RERAN is terminal but not failed: a resume superseded it.
FAILED_RUN_STATUSES: frozenset[OrderRunStatus] = frozenset(
    {OrderRunStatus.SERVING_ERROR, OrderRunStatus.STOPPED_SERVING}
)


def _text(value: Any) -> str | None:
    """A non-empty string of an API value, else None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class OrderRun:
    """One order run as the API described it, parsed once.

    :param id: the run id (``hid``, or ``serving_hid`` in some answers).
    :param order_id: the order the run belongs to, when the answer names it.
    :param status: the parsed status; None while the API sends none or one this provider does not know.
    :param status_text: the status as sent (upper-cased), also when it is unknown.
    :param message: DataKitchen's own text about the run (``orderrun_status``).
    """

    id: str | None
    order_id: str | None = None
    status: OrderRunStatus | None = None
    status_text: str | None = None
    message: str | None = None

    @classmethod
    def from_api(cls, run: Mapping[str, Any]) -> OrderRun:
        """A run from a ``servings[]`` entry of ``/v2/order/servings`` or ``/v2/order/details``."""
        raw = _text(run.get("status"))
        return cls(
            id=_text(run.get("hid")) or _text(run.get("serving_hid")),
            order_id=_text(run.get("order_id")) or _text(run.get("serving_book_hid")),
            status=OrderRunStatus.parse(raw),
            status_text=raw.upper() if raw else None,
            message=_text(run.get("orderrun_status")),
        )

    @property
    def is_terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal

    @property
    def is_failed(self) -> bool:
        return self.status is not None and self.status.is_failed

    @property
    def is_superseded(self) -> bool:
        return self.status is not None and self.status.is_superseded

    @property
    def has_ended(self) -> bool:
        """Completed or failed: terminal and not superseded by a resume."""
        return self.is_terminal and not self.is_superseded


def newest_run(servings: Any) -> OrderRun | None:
    """The newest run of a ``servings`` list (the API lists runs newest first); None before the first."""
    runs = runs_of(servings)
    return runs[0] if runs else None


def runs_of(servings: Any) -> list[OrderRun]:
    """Every run of a ``servings`` list, in the API's order (newest first); junk entries are skipped."""
    if not isinstance(servings, list):
        return []
    return [OrderRun.from_api(s) for s in servings if isinstance(s, Mapping)]


def created_order_id(answer: Mapping[str, Any]) -> str | None:
    """The new order's id in a create answer: ``order_id``, or ``serving_hid`` as some examples show."""
    return _text(answer.get("order_id")) or _text(answer.get("serving_hid"))


def recipe_target(kitchen: str, recipe: str, variation: str) -> str:
    """``kitchen 'k', recipe 'r', variation 'v'``: what an order asks to run, in messages."""
    return f"kitchen '{kitchen}', recipe '{recipe}', variation '{variation}'"


def describe_order(
    kitchen: str,
    order_id: str | None,
    *,
    recipe: str | None = None,
    variation: str | None = None,
    order_run_id: str | None = None,
) -> str:
    """``DataKitchen order 'o' (kitchen 'k', recipe 'r', variation 'v', order run 'x')`` for messages."""
    parts = [f"kitchen '{kitchen}'"]
    if recipe:
        parts.append(f"recipe '{recipe}'")
    if variation:
        parts.append(f"variation '{variation}'")
    if order_run_id:
        parts.append(f"order run '{order_run_id}'")
    head = f"DataKitchen order '{order_id}'" if order_id else "DataKitchen order run"
    return f"{head} ({', '.join(parts)})"


__all__ = [
    "FAILED_RUN_STATUSES",
    "TERMINAL_RUN_STATUSES",
    "OrderRun",
    "OrderRunStatus",
    "created_order_id",
    "describe_order",
    "newest_run",
    "recipe_target",
    "runs_of",
]
