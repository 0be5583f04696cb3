"""Wait for an ezCater order to reach a lifecycle state (e.g. "submitted", then accept it).

Cheap to import: ``airflow.sdk`` and this package's light modules only; hook and trigger are imported
inside the methods that use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import PokeReturnValue

from airflow_provider_orders._arguments import rendered_id
from airflow_provider_orders.exceptions import PermanentOrdersError
from airflow_provider_orders.models.ezcater import (
    FAILED_LIFECYCLE_STATES,
    OrderLifecycleState,
    lifecycle_state_of,
    normalize_states,
)
from airflow_provider_orders.sensors._base import DeferrableOrderSensor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_orders.hooks.ezcater import EzCaterHook
    from airflow_provider_orders.triggers.events import WaitEvent
    from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger


class OrderLifecycleSensor(DeferrableOrderSensor):
    """Wait until an ezCater order's ``lifecycle.orderIsCurrently`` is one of ``target_states``.

    :param order_id: the order (templated).
    :param target_states: states that end the wait successfully; the state reached is the return value
        (templated: a list, or text such as ``"accepted,rejected"``).
    :param failure_states: states that fail the task at once, without using its retries (skipped with
        ``soft_fail=True``; templated like ``target_states``). Any other value, also one this provider
        does not know, means "not yet".
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``); the deadline
        is the sensor's ``timeout``.
    :param ezcater_conn_id: connection of type ``ezcater``.

    Plus every ``BaseSensorOperator`` argument (``poke_interval``, ``timeout``, ``mode``, ``soft_fail``...).
    """

    template_fields: Sequence[str] = ("order_id", "target_states", "failure_states")
    ui_color = "#fdf2e9"

    def __init__(
        self,
        *,
        order_id: str,
        target_states: Iterable[str] | str = (OrderLifecycleState.SUBMITTED.value,),
        failure_states: Iterable[str] | str = FAILED_LIFECYCLE_STATES,
        ezcater_conn_id: str = "ezcater_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.order_id = order_id
        self.target_states: Any = target_states
        self.failure_states: Any = failure_states
        if not _templated(target_states) and not _templated(failure_states):
            # Checked when the DAG is parsed when nothing is left to render; else at run time.
            self._resolve_states(error=ValueError)
        self.ezcater_conn_id = ezcater_conn_id

    @cached_property
    def hook(self) -> EzCaterHook:
        from airflow_provider_orders.hooks.ezcater import EzCaterHook

        return EzCaterHook(ezcater_conn_id=self.ezcater_conn_id)

    def _resolve_states(self, error: type[Exception] = PermanentOrdersError) -> None:
        """Normalise (rendered) target and failure states; a bad combination raises ``error``."""
        self.target_states = _states(self.target_states)
        self.failure_states = _states(self.failure_states)
        if not self.target_states:
            raise error(f"OrderLifecycleSensor '{self.task_id}': target_states is empty.")
        overlap = set(self.target_states) & set(self.failure_states)
        if overlap:
            raise error(
                f"OrderLifecycleSensor '{self.task_id}': {sorted(overlap)} cannot be both a target and a "
                "failure state."
            )

    def execute(self, context: Context) -> Any:
        self._resolve_states()
        return super().execute(context)

    def _order_id(self) -> str:
        order_id = rendered_id(self.order_id, "order_id", self.task_id, required=True)
        assert order_id is not None
        return order_id

    def _failed(self, order_id: str, state: str | None) -> PermanentOrdersError:
        return PermanentOrdersError(
            f"ezCater order '{order_id}' is {state}, one of the failure states "
            f"{', '.join(self.failure_states)}; it will not become {' / '.join(self.target_states)}."
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        order_id = self._order_id()
        state = lifecycle_state_of(self.hook.get_order(order_id))
        if state in self.target_states:
            self.log.info("ezCater order %s is %s", order_id, state)
            return PokeReturnValue(True, state)
        if state in self.failure_states:
            raise self._failed(order_id, state)
        self.log.info("ezCater order %s is %s; waiting for %s", order_id, state, self.target_states)
        return False

    def make_trigger(self, end_time: float) -> OrderLifecycleTrigger:
        from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger

        return OrderLifecycleTrigger(
            ezcater_conn_id=self.ezcater_conn_id,
            order_id=self._order_id(),
            target_states=self.target_states,
            failure_states=self.failure_states,
            poll_interval=self.poke_interval,
            end_time=end_time,
        )

    def on_success(self, context: Context, event: WaitEvent) -> Any:
        state = event.get("order_state")
        self.log.info("ezCater order %s is %s", event.get("order_id") or self.order_id, state)
        return state

    def failure_error(self, context: Context, event: WaitEvent) -> Exception:
        return self._failed(event.get("order_id") or str(self.order_id), event.get("order_state"))


def _templated(value: Any) -> bool:
    return (isinstance(value, str) and "{{" in value) or (
        not isinstance(value, str) and isinstance(value, Iterable) and any(_templated(v) for v in value)
    )


def _states(value: Any) -> list[str]:
    """States from a list or from rendered text (``"accepted,rejected"``, ``"['accepted']"``)."""
    if isinstance(value, str):
        value = [part.strip(" '\"") for part in value.strip().strip("[]()").split(",")]
    if not isinstance(value, Iterable):
        raise PermanentOrdersError(f"lifecycle states must be a list or text, got {value!r}")
    return normalize_states([str(v) for v in value if str(v).strip()])


__all__ = ["OrderLifecycleSensor"]
