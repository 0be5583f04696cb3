"""Status values of both APIs, with their terminal and failed sets.

Kept in a module of its own with no heavy import, so operators, sensors and triggers can use them
without pulling in an HTTP or GraphQL client.
"""

from __future__ import annotations

from enum import Enum


class OrderRunStatus(str, Enum):
    """DataKitchen order run (``serving``) ``status``."""

    PLANNED_SERVING = "PLANNED_SERVING"
    ACTIVE_SERVING = "ACTIVE_SERVING"
    COMPLETED_SERVING = "COMPLETED_SERVING"
    SERVING_ERROR = "SERVING_ERROR"
    STOPPED_SERVING = "STOPPED_SERVING"
    SERVING_RERAN = "SERVING_RERAN"

    @classmethod
    def is_terminal(cls, status: str | None) -> bool:
        return status in TERMINAL_RUN_STATUSES

    @classmethod
    def is_failed(cls, status: str | None) -> bool:
        return status in FAILED_RUN_STATUSES


#: A run in one of these will not change any more.
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset(
    {
        OrderRunStatus.COMPLETED_SERVING.value,
        OrderRunStatus.SERVING_ERROR.value,
        OrderRunStatus.STOPPED_SERVING.value,
        OrderRunStatus.SERVING_RERAN.value,
    }
)
#: A run in one of these did not succeed. SERVING_RERAN is terminal but not failed: a resume superseded it.
FAILED_RUN_STATUSES: frozenset[str] = frozenset(
    {OrderRunStatus.SERVING_ERROR.value, OrderRunStatus.STOPPED_SERVING.value}
)
#: A run in one of these may still finish; a retry reattaches to it.
ACTIVE_RUN_STATUSES: frozenset[str] = frozenset(
    {OrderRunStatus.PLANNED_SERVING.value, OrderRunStatus.ACTIVE_SERVING.value}
)


class OrderStatus(str, Enum):
    """DataKitchen order (``serving book``) ``order-status``."""

    ACTIVE_ORDER = "ACTIVE_ORDER"
    COMPLETED_ORDER = "COMPLETED_ORDER"
    STOPPED_ORDER = "STOPPED_ORDER"
    ORDER_ERROR = "ORDER_ERROR"
    PAUSED_ORDER = "PAUSED_ORDER"


class OrderLifecycleState(str, Enum):
    """ezCater ``lifecycle.orderIsCurrently`` (lower-case strings; unknown values mean "not yet")."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


#: ezCater states from which an order will not move to "accepted".
FAILED_LIFECYCLE_STATES: frozenset[str] = frozenset(
    {OrderLifecycleState.REJECTED.value, OrderLifecycleState.CANCELLED.value}
)


def normalize_lifecycle_state(value: str | None) -> str | None:
    """ezCater sends lower-case states; tolerate other casing and padding."""
    return value.strip().lower() if isinstance(value, str) else None


__all__ = [
    "ACTIVE_RUN_STATUSES",
    "FAILED_LIFECYCLE_STATES",
    "FAILED_RUN_STATUSES",
    "TERMINAL_RUN_STATUSES",
    "OrderLifecycleState",
    "OrderRunStatus",
    "OrderStatus",
    "normalize_lifecycle_state",
]
