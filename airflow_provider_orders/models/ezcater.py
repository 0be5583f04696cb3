"""ezCater values: an order's lifecycle state, read once from the API's dict, and GraphQL error entries.

ezCater sends ``lifecycle.orderIsCurrently`` in lower case; other casing and padding are tolerated.
A value this provider does not know is kept as text and means "not yet" to a waiting task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class OrderLifecycleState(str, Enum):
    """ezCater ``lifecycle.orderIsCurrently``."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


#: States from which an order will not move to "accepted": the default failure states of a wait.
FAILED_LIFECYCLE_STATES: tuple[str, ...] = (
    OrderLifecycleState.REJECTED.value,
    OrderLifecycleState.CANCELLED.value,
)


def normalize_lifecycle_state(value: Any) -> str | None:
    """A state as text, lower case and stripped; None for a missing or non-text value."""
    if not isinstance(value, str):
        return None
    return value.strip().lower() or None


def lifecycle_state_of(order: Any) -> str | None:
    """``lifecycle.orderIsCurrently`` of an order dict, normalised; None when the answer has none."""
    lifecycle = order.get("lifecycle") if isinstance(order, Mapping) else None
    return normalize_lifecycle_state(
        lifecycle.get("orderIsCurrently") if isinstance(lifecycle, Mapping) else None
    )


def normalize_states(states: Iterable[str] | str) -> list[str]:
    """A state list from a string or an iterable, normalised and de-duplicated (order kept)."""
    items = [states] if isinstance(states, str) else list(states)
    out: list[str] = []
    for item in items:
        state = normalize_lifecycle_state(item)
        if state and state not in out:
            out.append(state)
    return out


def normalize_code(code: Any) -> str:
    """``feature not enabled`` / ``FEATURE_NOT_ENABLED`` / ``Feature-Not-Enabled`` → ``FEATURENOTENABLED``."""
    return re.sub(r"[\s_\-]+", "", str(code or "")).upper()


def _as_status(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class GraphQLError:
    """One entry of a GraphQL ``errors`` list, read leniently.

    :param message: the API's message (with ``secret`` scrubbed when the parser was given one).
    :param code: ``extensions.code`` as sent.
    :param statuscode: ``extensions.statuscode`` (or ``statusCode``): the HTTP status ezCater means.
    """

    message: str
    code: str | None = None
    statuscode: int | None = None

    @property
    def normalized_code(self) -> str:
        return normalize_code(self.code)

    @property
    def quoted(self) -> str:
        """``"<message>" (code X, statuscode N)``: the API's own words."""
        extras = [f"code {self.code}"] if self.code else []
        if self.statuscode:
            extras.append(f"statuscode {self.statuscode}")
        return f'"{self.message}"' + (f" ({', '.join(extras)})" if extras else "")

    @classmethod
    def from_api(cls, error: Any, *, secret: str = "") -> GraphQLError:
        if not isinstance(error, Mapping):
            error = {"message": str(error)}
        raw = error.get("extensions")
        ext: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        message = str(error.get("message") or "").strip()
        if secret:
            message = message.replace(secret, "***")
        code = ext.get("code")
        return cls(
            message=message,
            code=str(code) if code else None,
            statuscode=_as_status(ext.get("statuscode", ext.get("statusCode"))),
        )


__all__ = [
    "FAILED_LIFECYCLE_STATES",
    "GraphQLError",
    "OrderLifecycleState",
    "lifecycle_state_of",
    "normalize_code",
    "normalize_lifecycle_state",
    "normalize_states",
]
