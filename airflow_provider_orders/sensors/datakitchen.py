"""Wait for a DataKitchen order run to end.

Cheap to import: ``airflow.sdk`` and this package's light modules only; hook and trigger are imported
inside the methods that use them.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import PokeReturnValue

from airflow_provider_orders._arguments import rendered_id
from airflow_provider_orders.exceptions import OrderRunFailedError, PermanentOrdersError
from airflow_provider_orders.links import (
    ORDER_RUN_STATUS_XCOM_KEY,
    DataKitchenOrderRunLink,
    push_order_run_link,
)
from airflow_provider_orders.models.datakitchen import OrderRun, OrderRunStatus, describe_order
from airflow_provider_orders.sensors._base import DeferrableOrderSensor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger
    from airflow_provider_orders.triggers.events import WaitEvent


class RecipeOrderRunSensor(DeferrableOrderSensor):
    """Wait until a DataKitchen order run ends; succeed on COMPLETED_SERVING.

    :param kitchen: the kitchen (templated).
    :param order_id: the order whose run to wait for (templated; e.g. ``submit.output``). The sensor
        waits for the order's first run to appear, then for it to end (a run superseded by a resume is
        followed to the order's newest run).
    :param order_run_id: the run to wait for, when known (templated). One of the two ids is required.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``); the deadline
        is the sensor's ``timeout``.
    :param datakitchen_conn_id: connection of type ``datakitchen``.

    Plus every ``BaseSensorOperator`` argument: ``poke_interval``, ``timeout``, ``mode`` ("poke" or
    "reschedule"), ``soft_fail``, ``exponential_backoff``...

    A run that ends in SERVING_ERROR or STOPPED_SERVING fails the task without using its retries (skips
    it with ``soft_fail=True``). XComs: ``order_run_id`` and ``order_run_url`` as soon as the run is
    known, ``order_run_status`` when it ends; the return value is
    ``{"order_id", "order_run_id", "status", "orderrun_status"}``.
    """

    template_fields: Sequence[str] = ("kitchen", "order_id", "order_run_id")
    operator_extra_links = (DataKitchenOrderRunLink(),)
    ui_color = "#e6f1f2"

    def __init__(
        self,
        *,
        kitchen: str,
        order_id: str | None = None,
        order_run_id: str | None = None,
        datakitchen_conn_id: str = "datakitchen_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if order_id is None and order_run_id is None:
            raise ValueError(
                f"RecipeOrderRunSensor '{self.task_id}' needs order_id or order_run_id (both are None)."
            )
        self.kitchen = kitchen
        self.order_id = order_id
        self.order_run_id = order_run_id
        self.datakitchen_conn_id = datakitchen_conn_id
        # Per-process watch state (reset by every reschedule).
        self._watching: str | None = None
        self._resolved_order_id: str | None = None
        self._pushed_run_id: str | None = None
        self._event_run = OrderRun(id=None)  # what the trigger's event reported

    @cached_property
    def hook(self) -> DataKitchenHook:
        from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

        return DataKitchenHook(datakitchen_conn_id=self.datakitchen_conn_id)

    def _resolve_ids(self) -> None:
        """Validate the rendered ids (templated fields can render empty at run time)."""
        kitchen = rendered_id(self.kitchen, "kitchen", self.task_id, required=True)
        assert kitchen is not None
        self.kitchen = kitchen
        order_id = rendered_id(self.order_id, "order_id", self.task_id, required=False)
        run_id = rendered_id(self.order_run_id, "order_run_id", self.task_id, required=False)
        if order_id is None and run_id is None:
            raise PermanentOrdersError(
                f"Task '{self.task_id}': order_id and order_run_id both rendered empty; one is required."
            )
        if self._resolved_order_id is None:
            self._resolved_order_id = order_id
        if self._watching is None and self._pushed_run_id is None:
            self._watching = run_id

    def _describe(self) -> str:
        return describe_order(self.kitchen, self._resolved_order_id, order_run_id=self._watching)

    # ------------------------------------------------------------------ poking

    def _read(self) -> OrderRun | None:
        from airflow_provider_orders.models.datakitchen import newest_run

        if self._watching is None:
            assert self._resolved_order_id is not None
            return newest_run(self.hook.get_order_runs(self.kitchen, self._resolved_order_id))
        return OrderRun.from_api(self.hook.get_order_run(self.kitchen, self._watching))

    def poke(self, context: Context) -> bool | PokeReturnValue:
        self._resolve_ids()
        run = self._read()
        result = self._evaluate(context, run)
        if result is None and run is not None and run.status is OrderRunStatus.SERVING_RERAN:
            # Superseded by a resume: look at the order's newest run right away.
            result = self._evaluate(context, self._read())
        return result if result is not None else False

    def _evaluate(self, context: Context, run: OrderRun | None) -> PokeReturnValue | None:
        """None: keep waiting. Raises for a failed run; PokeReturnValue when it completed."""
        if run is None:
            self.log.info("%s: no order run yet", self._describe())
            return None
        if run.order_id and self._resolved_order_id is None:
            self._resolved_order_id = run.order_id
        if run.id:
            self._watching = run.id
            self._push_run(context, run.id)
        if run.is_superseded and self._resolved_order_id:
            self.log.info("Order run %s was re-run; following the order's newest run", run.id)
            self._watching = None
            return None
        if run.is_failed:
            raise self._run_failed(context, run)
        if run.is_terminal:
            context["ti"].xcom_push(key=ORDER_RUN_STATUS_XCOM_KEY, value=run.status_text)
            self.log.info("%s finished with %s", self._describe(), run.status_text)
            return PokeReturnValue(True, self._summary(run))
        self.log.info("%s is %s", self._describe(), run.status_text)
        return None

    def _run_failed(self, context: Context, run: OrderRun) -> OrderRunFailedError:
        context["ti"].xcom_push(key=ORDER_RUN_STATUS_XCOM_KEY, value=run.status_text)
        return OrderRunFailedError.ended(run, kitchen=self.kitchen, order_id=self._resolved_order_id)

    def _summary(self, run: OrderRun) -> dict[str, Any]:
        return {
            "order_id": self._resolved_order_id,
            "order_run_id": run.id,
            "status": run.status_text,
            "orderrun_status": run.message,
        }

    def _push_run(self, context: Context, run_id: str) -> None:
        if run_id == self._pushed_run_id:
            return
        self._pushed_run_id = run_id
        push_order_run_link(context["ti"], self.hook, self.kitchen, run_id, self.log)

    # ------------------------------------------------------------------ deferrable

    def make_trigger(self, end_time: float) -> OrderRunTrigger:
        from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

        return OrderRunTrigger(
            datakitchen_conn_id=self.datakitchen_conn_id,
            kitchen=self.kitchen,
            order_id=self._resolved_order_id,
            order_run_id=self._watching,
            poll_interval=self.poke_interval,
            end_time=end_time,
            stop_on_kill=False,  # the sensor only watches: the run is its owner's to stop
        )

    def _run_of(self, context: Context, event: WaitEvent) -> OrderRun:
        """The run an event reports on; its id and link are pushed (the worker that deferred is gone)."""
        self.kitchen = event.get("kitchen") or self.kitchen
        self._resolved_order_id = event.get("order_id") or self._resolved_order_id
        run = OrderRun(
            id=event.get("order_run_id"),
            order_id=self._resolved_order_id,
            status=OrderRunStatus.parse(event.get("run_status")),
            status_text=event.get("run_status"),
            message=event.get("run_message"),
        )
        if run.id:
            self._watching = run.id
            self._push_run(context, run.id)
        return run

    def on_event(self, context: Context, event: WaitEvent) -> None:
        self._event_run = self._run_of(context, event)

    def on_success(self, context: Context, event: WaitEvent) -> Any:
        context["ti"].xcom_push(key=ORDER_RUN_STATUS_XCOM_KEY, value=self._event_run.status_text)
        return self._summary(self._event_run)

    def failure_error(self, context: Context, event: WaitEvent) -> Exception:
        return self._run_failed(context, self._event_run)


__all__ = ["RecipeOrderRunSensor"]
