"""Wait for a DataKitchen order run to end.

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
from airflow_provider_orders.links import DataKitchenOrderRunLink, push_order_run_link
from airflow_provider_orders.operators.datakitchen import (
    XCOM_ORDER_RUN_STATUS,
    clean_id,
    describe_order,
    error_from_event,
    order_run_failed_error,
    run_id_of,
    run_status_of,
    text_or_none,
)
from airflow_provider_orders.sensors._common import guarded_poke
from airflow_provider_orders.status import FAILED_RUN_STATUSES, TERMINAL_RUN_STATUSES, OrderRunStatus

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook


class RecipeOrderRunSensor(BaseSensorOperator):
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
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
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
        self.deferrable = deferrable
        self.datakitchen_conn_id = datakitchen_conn_id
        # Per-process watch state (reset by every reschedule).
        self._watching: str | None = None
        self._resolved_order_id: str | None = None
        self._pushed_run_id: str | None = None

    @cached_property
    def hook(self) -> DataKitchenHook:
        from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

        return DataKitchenHook(datakitchen_conn_id=self.datakitchen_conn_id)

    def _resolve_ids(self) -> None:
        """Validate the rendered ids (templated fields can render empty at run time)."""
        if not isinstance(self.kitchen, str) or not self.kitchen.strip():
            raise PermanentOrdersError(f"Task '{self.task_id}': kitchen must be a non-empty string.")
        self.kitchen = self.kitchen.strip()
        order_id = clean_id(self.order_id, "order_id", self.task_id)
        run_id = clean_id(self.order_run_id, "order_run_id", self.task_id)
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

    def _read(self) -> dict[str, Any] | None:
        if self._watching is None:
            assert self._resolved_order_id is not None
            runs = self.hook.get_order_runs(self.kitchen, self._resolved_order_id)
            return runs[0] if runs else None
        return self.hook.get_order_run(self.kitchen, self._watching)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        self._resolve_ids()
        run = self._read()
        result = self._evaluate(context, run)
        if result is None and run_status_of(run) == OrderRunStatus.SERVING_RERAN.value:
            # Superseded by a resume: look at the order's newest run right away.
            result = self._evaluate(context, self._read())
        return result if result is not None else False

    def _evaluate(self, context: Context, run: dict[str, Any] | None) -> PokeReturnValue | None:
        """None: keep waiting. Raises for a failed run; PokeReturnValue when it completed."""
        if run is None:
            self.log.info("%s: no order run yet", self._describe())
            return None
        rid = run_id_of(run)
        if run.get("order_id") and self._resolved_order_id is None:
            self._resolved_order_id = str(run["order_id"])
        if rid:
            self._watching = rid
            self._push_run(context, rid)
        status = run_status_of(run)
        if status == OrderRunStatus.SERVING_RERAN.value and self._resolved_order_id:
            self.log.info("Order run %s was re-run; following the order's newest run", rid)
            self._watching = None
            return None
        if status in FAILED_RUN_STATUSES:
            context["ti"].xcom_push(key=XCOM_ORDER_RUN_STATUS, value=status)
            raise order_run_failed_error(
                kitchen=self.kitchen,
                order_id=self._resolved_order_id,
                order_run_id=rid,
                status=status,
                orderrun_status=text_or_none(run.get("orderrun_status")),
            )
        if status in TERMINAL_RUN_STATUSES:
            context["ti"].xcom_push(key=XCOM_ORDER_RUN_STATUS, value=status)
            self.log.info("%s finished with %s", self._describe(), status)
            return PokeReturnValue(True, self._summary(rid, status, run.get("orderrun_status")))
        self.log.info("%s is %s", self._describe(), status)
        return None

    def _summary(self, run_id: str | None, status: str | None, orderrun_status: Any) -> dict[str, Any]:
        return {
            "order_id": self._resolved_order_id,
            "order_run_id": run_id,
            "status": status,
            "orderrun_status": text_or_none(orderrun_status),
        }

    def _push_run(self, context: Context, run_id: str) -> None:
        if run_id == self._pushed_run_id:
            return
        self._pushed_run_id = run_id
        push_order_run_link(context["ti"], self.hook, self.kitchen, run_id, self.log)

    # ------------------------------------------------------------------ deferrable

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        end_time = time.time() + self.timeout
        done = guarded_poke(self, lambda: self.poke(context))
        if isinstance(done, PokeReturnValue) and done:
            return done.xcom_value
        from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

        self.log.info("Deferring: the triggerer waits for %s", self._describe())
        self.defer(
            trigger=OrderRunTrigger(
                datakitchen_conn_id=self.datakitchen_conn_id,
                kitchen=self.kitchen,
                order_id=self._resolved_order_id,
                order_run_id=self._watching,
                poll_interval=self.poke_interval,
                end_time=end_time,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        """Resume after OrderRunTrigger fired (soft_fail is applied by resume_execution)."""
        self.kitchen = str(event.get("kitchen") or self.kitchen)
        self._resolved_order_id = text_or_none(event.get("order_id")) or self._resolved_order_id
        rid = text_or_none(event.get("order_run_id"))
        if rid:
            self._watching = rid
            self._push_run(context, rid)
        status = text_or_none(event.get("order_run_status"))
        kind = event.get("status")
        if kind in ("success", "failed"):
            context["ti"].xcom_push(key=XCOM_ORDER_RUN_STATUS, value=status)
        if kind == "success":
            return self._summary(rid, status, event.get("orderrun_status"))
        if kind == "failed":
            raise order_run_failed_error(
                kitchen=self.kitchen,
                order_id=self._resolved_order_id,
                order_run_id=rid,
                status=status,
                orderrun_status=text_or_none(event.get("orderrun_status")),
            )
        if kind == "timeout":
            raise AirflowSensorTimeout(
                f"Sensor timed out after {self.timeout:g}s: {event.get('message') or self._describe()}"
            )
        raise error_from_event(event)


__all__ = ["RecipeOrderRunSensor"]
