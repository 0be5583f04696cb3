"""Trigger that waits in the triggerer for a DataKitchen order run to end.

Reads only (never submits: a triggerer restart replays ``run()``), with the hook's async client and the
async connection lookup. Yields exactly one event, a dict with ``status`` one of ``success``, ``failed``,
``timeout`` or ``error``, plus ``message``, ``kitchen``, ``order_id``, ``order_run_id``,
``order_run_status`` and ``orderrun_status`` (``permanent`` / ``error_type`` on errors).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_orders.operators.datakitchen import (
    describe_order,
    event_error_fields,
    order_run_failed_error,
    run_id_of,
    run_status_of,
)
from airflow_provider_orders.status import FAILED_RUN_STATUSES, TERMINAL_RUN_STATUSES, OrderRunStatus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook


class OrderRunTrigger(BaseTrigger):
    """Poll a DataKitchen order run until it ends or ``end_time`` passes.

    :param datakitchen_conn_id: connection of type ``datakitchen``.
    :param kitchen: the order's kitchen.
    :param order_id: the order; while ``order_run_id`` is None the trigger polls the order's runs until
        one appears (and follows the newest run when a run is superseded by a resume).
    :param order_run_id: the run to watch, when already known.
    :param poll_interval: seconds between two reads.
    :param end_time: epoch seconds after which a ``timeout`` event is sent (None: no limit). The task
        defers with ``timeout=None`` so that the timeout reaches ``execute_complete``, which stops the run.
    :param recipe: for messages only.
    :param variation: for messages only.
    """

    def __init__(
        self,
        *,
        datakitchen_conn_id: str,
        kitchen: str,
        order_id: str | None = None,
        order_run_id: str | None = None,
        poll_interval: float = 10.0,
        end_time: float | None = None,
        recipe: str | None = None,
        variation: str | None = None,
    ) -> None:
        super().__init__()
        if not order_id and not order_run_id:
            raise ValueError("OrderRunTrigger needs order_id or order_run_id")
        self.datakitchen_conn_id = datakitchen_conn_id
        self.kitchen = kitchen
        self.order_id = order_id
        self.order_run_id = order_run_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time) if end_time is not None else None
        self.recipe = recipe
        self.variation = variation
        self._hook: DataKitchenHook | None = None
        self._watching: str | None = order_run_id
        self._finished = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "datakitchen_conn_id": self.datakitchen_conn_id,
                "kitchen": self.kitchen,
                "order_id": self.order_id,
                "order_run_id": self.order_run_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "recipe": self.recipe,
                "variation": self.variation,
            },
        )

    def _get_hook(self) -> DataKitchenHook:
        if self._hook is None:
            from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

            self._hook = DataKitchenHook(datakitchen_conn_id=self.datakitchen_conn_id)
        return self._hook

    def _event(self, status: str, message: str, run: dict[str, Any] | None, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "kitchen": self.kitchen,
                "order_id": self.order_id,
                "order_run_id": self._watching or run_id_of(run),
                "order_run_status": run_status_of(run),
                "orderrun_status": run.get("orderrun_status") if run else None,
                **extra,
            }
        )

    def _describe(self) -> str:
        return describe_order(
            self.kitchen,
            self.order_id,
            recipe=self.recipe,
            variation=self.variation,
            order_run_id=self._watching,
        )

    async def _pause(self) -> None:
        """Sleep one poll interval, or less when the deadline comes first."""
        pause = self.poll_interval
        if self.end_time is not None:
            pause = max(0.0, min(pause, self.end_time - time.time()))
        await asyncio.sleep(pause)

    async def _read(self) -> dict[str, Any] | None:
        hook = self._get_hook()
        if self._watching is None:
            assert self.order_id is not None
            runs = await hook.aget_order_runs(self.kitchen, self.order_id)
            return runs[0] if runs else None
        return await hook.aget_order_run(self.kitchen, self._watching)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        run: dict[str, Any] | None = None
        try:
            self.log.info("Waiting for %s to finish (every %g s)", self._describe(), self.poll_interval)
            while True:
                # The worker read the run just before deferring: pause first. That saves a request, and
                # an event fired within seconds of deferral is what Airflow 3.3.2's scheduler can turn
                # into a spurious task retry (apache/airflow#72716).
                await self._pause()
                run = await self._read()
                if run is not None:
                    self._watching = run_id_of(run) or self._watching
                    if self.order_id is None and run.get("order_id"):
                        self.order_id = str(run["order_id"])
                status = run_status_of(run)
                if status == OrderRunStatus.SERVING_RERAN.value and self.order_id:
                    self.log.info("Order run %s was re-run; following the order's newest run", self._watching)
                    self._watching = None
                elif status in FAILED_RUN_STATUSES:
                    self._finished = True
                    error = order_run_failed_error(
                        kitchen=self.kitchen,
                        order_id=self.order_id,
                        order_run_id=self._watching,
                        status=status,
                        orderrun_status=run.get("orderrun_status") if run else None,
                        recipe=self.recipe,
                        variation=self.variation,
                    )
                    yield self._event("failed", str(error), run)
                    return
                elif status in TERMINAL_RUN_STATUSES:
                    self._finished = True
                    yield self._event("success", f"{self._describe()} finished with {status}", run)
                    return
                if self.end_time is not None and time.time() >= self.end_time:
                    yield self._event(
                        "timeout",
                        f"{self._describe()} did not finish before the deadline "
                        f"(last status: {status or 'no run yet'})",
                        run,
                    )
                    return
                self.log.info("%s: %s", self._describe(), status or "no run yet")
        except Exception as exc:
            self.log.exception("OrderRunTrigger failed while waiting for %s", self._describe())
            yield self._event("error", f"{self._describe()}: {exc}", run, **event_error_fields(exc))

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed / clear): stop the run (or the order)."""
        if self._finished:
            return
        hook = self._get_hook()
        # Stopping is rare, so the hook has only a sync stop: run it off the event loop.
        if self._watching:
            self.log.info("Task killed while deferred: stopping order run %s", self._watching)
            await asyncio.to_thread(hook.stop_order_run, self.kitchen, self._watching)
        elif self.order_id:
            self.log.info("Task killed while deferred: stopping order %s", self.order_id)
            await asyncio.to_thread(hook.stop_order, self.kitchen, self.order_id)


__all__ = ["OrderRunTrigger"]
