"""Wait for an ezCater order to reach a lifecycle state (e.g. "submitted", then accept it).

Cheap to import: ``airflow.sdk`` and this package's light modules only; hook and trigger are imported
inside the methods that use them.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import (
    AirflowSensorTimeout,
)

from airflow_provider_orders.exceptions import PermanentOrdersError
from airflow_provider_orders.operators.datakitchen import error_from_event
from airflow_provider_orders.operators.ezcater import validate_order_id
from airflow_provider_orders.sensors._common import guarded_poke
from airflow_provider_orders.status import normalize_lifecycle_state

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_orders.hooks.ezcater import EzCaterHook


def order_state_of(order: Any) -> str | None:
    """``lifecycle.orderIsCurrently`` of an order dict, normalised (lower case)."""
    lifecycle = order.get("lifecycle") if isinstance(order, dict) else None
    return normalize_lifecycle_state(
        lifecycle.get("orderIsCurrently") if isinstance(lifecycle, dict) else None
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


class OrderLifecycleSensor(BaseSensorOperator):
    """Wait until an ezCater order's ``lifecycle.orderIsCurrently`` is one of ``target_states``.

    :param order_id: the order (templated).
    :param target_states: states that end the wait successfully; the state reached is the return value.
    :param failure_states: states that fail the task at once, without using its retries (skipped with
        ``soft_fail=True``). Any other value, also one this provider does not know, means "not yet".
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``); the deadline
        is the sensor's ``timeout``.
    :param ezcater_conn_id: connection of type ``ezcater``.

    Plus every ``BaseSensorOperator`` argument (``poke_interval``, ``timeout``, ``mode``, ``soft_fail``...).
    """

    template_fields: Sequence[str] = ("order_id",)
    ui_color = "#fdf2e9"

    def __init__(
        self,
        *,
        order_id: str,
        target_states: Iterable[str] | str = ("submitted",),
        failure_states: Iterable[str] | str = ("rejected", "cancelled"),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        ezcater_conn_id: str = "ezcater_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.order_id = order_id
        self.target_states = normalize_states(target_states)
        self.failure_states = normalize_states(failure_states)
        if not self.target_states:
            raise ValueError(f"OrderLifecycleSensor '{self.task_id}': target_states is empty.")
        overlap = set(self.target_states) & set(self.failure_states)
        if overlap:
            raise ValueError(
                f"OrderLifecycleSensor '{self.task_id}': {sorted(overlap)} cannot be both a target and a "
                "failure state."
            )
        self.deferrable = deferrable
        self.ezcater_conn_id = ezcater_conn_id

    @cached_property
    def hook(self) -> EzCaterHook:
        from airflow_provider_orders.hooks.ezcater import EzCaterHook

        return EzCaterHook(ezcater_conn_id=self.ezcater_conn_id)

    def _failed(self, order_id: str, state: str | None) -> PermanentOrdersError:
        return PermanentOrdersError(
            f"ezCater order '{order_id}' is {state}, one of the failure states "
            f"{', '.join(self.failure_states)}; it will not become {' / '.join(self.target_states)}."
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        order_id = validate_order_id(self.order_id, self.task_id)
        state = order_state_of(self.hook.get_order(order_id))
        if state in self.target_states:
            self.log.info("ezCater order %s is %s", order_id, state)
            return PokeReturnValue(True, state)
        if state in self.failure_states:
            raise self._failed(order_id, state)
        self.log.info("ezCater order %s is %s; waiting for %s", order_id, state, self.target_states)
        return False

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        end_time = time.time() + self.timeout
        done = guarded_poke(self, lambda: self.poke(context))
        if isinstance(done, PokeReturnValue) and done:
            return done.xcom_value
        from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger

        self.defer(
            trigger=OrderLifecycleTrigger(
                ezcater_conn_id=self.ezcater_conn_id,
                order_id=validate_order_id(self.order_id, self.task_id),
                target_states=self.target_states,
                failure_states=self.failure_states,
                poll_interval=self.poke_interval,
                end_time=end_time,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        """Resume after OrderLifecycleTrigger fired (soft_fail is applied by resume_execution)."""
        kind = event.get("status")
        state = event.get("order_state")
        order_id = str(event.get("order_id") or self.order_id)
        if kind == "success":
            self.log.info("ezCater order %s is %s", order_id, state)
            return state
        if kind == "failed":
            raise self._failed(order_id, state)
        if kind == "timeout":
            raise AirflowSensorTimeout(f"Sensor timed out after {self.timeout:g}s: {event.get('message')}")
        raise error_from_event(event)


__all__ = ["OrderLifecycleSensor", "normalize_states", "order_state_of"]
