"""Status values of both APIs (kept for imports written against 0.1; the home is :mod:`..models`)."""

from __future__ import annotations

from airflow_provider_orders.models.datakitchen import (
    FAILED_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    OrderRunStatus,
)
from airflow_provider_orders.models.ezcater import OrderLifecycleState, normalize_lifecycle_state

__all__ = [
    "FAILED_RUN_STATUSES",
    "TERMINAL_RUN_STATUSES",
    "OrderLifecycleState",
    "OrderRunStatus",
    "normalize_lifecycle_state",
]
