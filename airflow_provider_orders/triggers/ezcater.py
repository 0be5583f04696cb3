"""Trigger that waits in the triggerer for an ezCater order to reach a lifecycle state.

Reads only, with the hook's async client and the async connection lookup. Yields exactly one
:class:`~airflow_provider_orders.triggers.events.WaitEvent`: ``success`` (a target state), ``failed``
(a failure state), ``timeout`` or ``error``, with the fields ``order_id`` and ``order_state``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_orders.models.ezcater import lifecycle_state_of, normalize_states
from airflow_provider_orders.triggers._polling import PollingTrigger
from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_orders.hooks.ezcater import EzCaterHook


class OrderLifecycleTrigger(PollingTrigger):
    """Poll an ezCater order until ``lifecycle.orderIsCurrently`` is a target or a failure state.

    :param ezcater_conn_id: connection of type ``ezcater``.
    :param order_id: the order.
    :param target_states: states that end the wait successfully.
    :param failure_states: states that end it with a failure. Any other value (also an unknown one)
        means "not yet".
    :param poll_interval: seconds between two reads.
    :param end_time: epoch seconds after which a ``timeout`` event is sent (None: no limit).
    """

    def __init__(
        self,
        *,
        ezcater_conn_id: str,
        order_id: str,
        target_states: Iterable[str],
        failure_states: Iterable[str] = (),
        poll_interval: float = 60.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__(poll_interval=poll_interval, end_time=end_time)
        self.ezcater_conn_id = ezcater_conn_id
        self.order_id = order_id
        self.target_states = normalize_states(target_states)
        self.failure_states = normalize_states(failure_states)
        self._hook: EzCaterHook | None = None
        self._state: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ezcater_conn_id": self.ezcater_conn_id,
                "order_id": self.order_id,
                "target_states": list(self.target_states),
                "failure_states": list(self.failure_states),
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    @property
    def hook(self) -> EzCaterHook:
        if self._hook is None:
            from airflow_provider_orders.hooks.ezcater import EzCaterHook

            self._hook = EzCaterHook(ezcater_conn_id=self.ezcater_conn_id)
        return self._hook

    def describe(self) -> str:
        return f"ezCater order '{self.order_id}' to be {' / '.join(self.target_states)}"

    def event_fields(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "order_state": self._state}

    def timeout_message(self) -> str:
        return (
            f"ezCater order '{self.order_id}' did not reach {' / '.join(self.target_states)} before the "
            f"deadline (it is {self._state})"
        )

    def error_message(self, exc: BaseException) -> str:
        return f"ezCater order '{self.order_id}': {exc}"

    async def poll(self) -> WaitEvent | None:
        state = self._state = lifecycle_state_of(await self.hook.aget_order(self.order_id))
        if state in self.target_states:
            return self.event(WaitOutcome.SUCCESS, f"ezCater order '{self.order_id}' is {state}")
        if state in self.failure_states:
            return self.event(
                WaitOutcome.FAILED, f"ezCater order '{self.order_id}' is {state}, a failure state"
            )
        self.log.info("ezCater order %s is %s; waiting for %s", self.order_id, state, self.target_states)
        return None


__all__ = ["OrderLifecycleTrigger"]
