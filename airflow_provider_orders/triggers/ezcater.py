"""Trigger that waits in the triggerer for an ezCater order to reach a lifecycle state.

Reads only, with the hook's async client and the async connection lookup. Yields exactly one event, a
dict with ``status`` one of ``success`` (a target state), ``failed`` (a failure state), ``timeout`` or
``error``, plus ``message``, ``order_id`` and ``order_state`` (``permanent`` / ``error_type`` on errors).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_orders.operators.datakitchen import event_error_fields
from airflow_provider_orders.sensors.ezcater import normalize_states, order_state_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from airflow_provider_orders.hooks.ezcater import EzCaterHook


class OrderLifecycleTrigger(BaseTrigger):
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
        super().__init__()
        self.ezcater_conn_id = ezcater_conn_id
        self.order_id = order_id
        self.target_states = normalize_states(target_states)
        self.failure_states = normalize_states(failure_states)
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time) if end_time is not None else None
        self._hook: EzCaterHook | None = None

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

    def _get_hook(self) -> EzCaterHook:
        if self._hook is None:
            from airflow_provider_orders.hooks.ezcater import EzCaterHook

            self._hook = EzCaterHook(ezcater_conn_id=self.ezcater_conn_id)
        return self._hook

    def _event(self, status: str, message: str, state: str | None, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {"status": status, "message": message, "order_id": self.order_id, "order_state": state, **extra}
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state: str | None = None
        try:
            hook = self._get_hook()
            self.log.info(
                "Waiting for ezCater order %s to be %s (every %g s)",
                self.order_id,
                " / ".join(self.target_states),
                self.poll_interval,
            )
            while True:
                # The sensor poked just before deferring: pause first (see OrderRunTrigger.run).
                pause = self.poll_interval
                if self.end_time is not None:
                    pause = max(0.0, min(pause, self.end_time - time.time()))
                await asyncio.sleep(pause)
                order = await hook.aget_order(self.order_id)
                state = order_state_of(order)
                if state in self.target_states:
                    yield self._event("success", f"ezCater order '{self.order_id}' is {state}", state)
                    return
                if state in self.failure_states:
                    yield self._event(
                        "failed", f"ezCater order '{self.order_id}' is {state}, a failure state", state
                    )
                    return
                if self.end_time is not None and time.time() >= self.end_time:
                    yield self._event(
                        "timeout",
                        f"ezCater order '{self.order_id}' did not reach "
                        f"{' / '.join(self.target_states)} before the deadline (it is {state})",
                        state,
                    )
                    return
                self.log.info(
                    "ezCater order %s is %s; waiting for %s", self.order_id, state, self.target_states
                )
        except Exception as exc:
            self.log.exception("OrderLifecycleTrigger failed while watching order %s", self.order_id)
            yield self._event(
                "error", f"ezCater order '{self.order_id}': {exc}", state, **event_error_fields(exc)
            )


__all__ = ["OrderLifecycleTrigger"]
