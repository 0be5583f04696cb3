"""Trigger that waits in the triggerer for a DataKitchen order run to end.

Reads only (never submits: a triggerer restart replays ``run()``), with the hook's async client and the
async connection lookup. Yields exactly one :class:`~airflow_provider_orders.triggers.events.WaitEvent`:
``success`` / ``failed`` / ``timeout`` / ``error``, with the fields ``kitchen``, ``order_id``,
``order_run_id``, ``run_status`` and ``run_message`` (DataKitchen's ``orderrun_status`` text).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow_provider_orders.exceptions import OrderRunFailedError, OrdersProviderError
from airflow_provider_orders.models.datakitchen import describe_order
from airflow_provider_orders.triggers._polling import PollingTrigger
from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome

if TYPE_CHECKING:
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
    from airflow_provider_orders.models.datakitchen import OrderRun


class OrderRunTrigger(PollingTrigger):
    """Poll a DataKitchen order run until it ends or ``end_time`` passes.

    :param datakitchen_conn_id: connection of type ``datakitchen``.
    :param kitchen: the order's kitchen.
    :param order_id: the order; while ``order_run_id`` is None the trigger polls the order's runs until
        one appears (and follows the newest run when a run is superseded by a resume).
    :param order_run_id: the run to watch, when already known.
    :param poll_interval: seconds between two reads.
    :param end_time: epoch seconds after which a ``timeout`` event is sent (None: no limit).
    :param recipe: for messages only.
    :param variation: for messages only.
    :param stop_on_kill: stop the run (or the order) when the deferred task is killed: True for
        ``SubmitRecipeOrderOperator``, which owns the run; False for ``RecipeOrderRunSensor``, which only
        watches a run someone else owns. A payload serialized before this flag existed means True (what
        every trigger did then).
    """

    #: Seconds :meth:`on_kill` gives the hook's stop (the triggerer gives ``on_kill`` 30 s by default).
    ON_KILL_STOP_BUDGET = 15.0

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
        stop_on_kill: bool = True,
    ) -> None:
        super().__init__(poll_interval=poll_interval, end_time=end_time)
        if not order_id and not order_run_id:
            raise ValueError("OrderRunTrigger needs order_id or order_run_id")
        self.datakitchen_conn_id = datakitchen_conn_id
        self.kitchen = kitchen
        self.order_id = order_id
        self.order_run_id = order_run_id
        self.recipe = recipe
        self.variation = variation
        self.stop_on_kill = bool(stop_on_kill)
        self._hook: DataKitchenHook | None = None
        self._watching: str | None = order_run_id
        self._last: OrderRun | None = None
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
                "stop_on_kill": self.stop_on_kill,
            },
        )

    @property
    def hook(self) -> DataKitchenHook:
        if self._hook is None:
            from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

            self._hook = DataKitchenHook(datakitchen_conn_id=self.datakitchen_conn_id)
        return self._hook

    def describe(self) -> str:
        return describe_order(
            self.kitchen,
            self.order_id,
            recipe=self.recipe,
            variation=self.variation,
            order_run_id=self._watching,
        )

    def event_fields(self) -> dict[str, Any]:
        run = self._last
        return {
            "kitchen": self.kitchen,
            "order_id": self.order_id,
            "order_run_id": self._watching or (run.id if run else None),
            "run_status": run.status_text if run else None,
            "run_message": run.message if run else None,
        }

    def timeout_message(self) -> str:
        status = self._last.status_text if self._last else None
        return f"{self.describe()} did not finish before the deadline (last status: {status or 'no run yet'})"

    async def _read(self) -> OrderRun | None:
        from airflow_provider_orders.models.datakitchen import OrderRun, newest_run

        if self._watching is None:
            assert self.order_id is not None
            return newest_run(await self.hook.aget_order_runs(self.kitchen, self.order_id))
        return OrderRun.from_api(await self.hook.aget_order_run(self.kitchen, self._watching))

    async def poll(self) -> WaitEvent | None:
        run = self._last = await self._read()
        if run is None:
            self.log.info("%s: no run yet", self.describe())
            return None
        self._watching = run.id or self._watching
        if self.order_id is None and run.order_id:
            self.order_id = run.order_id
        if run.is_superseded and self.order_id:
            self.log.info("Order run %s was re-run; following the order's newest run", self._watching)
            self._watching = None
            return None
        if run.is_failed:
            self._finished = True
            error = OrderRunFailedError.ended(
                run,
                kitchen=self.kitchen,
                order_id=self.order_id,
                recipe=self.recipe,
                variation=self.variation,
            )
            return self.event(WaitOutcome.FAILED, str(error))
        if run.is_terminal:
            self._finished = True
            return self.event(WaitOutcome.SUCCESS, f"{self.describe()} finished with {run.status_text}")
        self.log.info("%s: %s", self.describe(), run.status_text or "no status yet")
        return None

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed / clear): stop the run (or the order), unless
        this trigger only watches (``stop_on_kill=False``). The stop goes through the hook's async path on
        the triggerer's loop and ends within :attr:`ON_KILL_STOP_BUDGET` seconds, well within the
        triggerer's ``on_kill_timeout``; a failure is logged, not raised."""
        if not self.stop_on_kill:
            self.log.info(
                "Task killed while deferred: %s is only watched here, so it is not stopped", self.describe()
            )
            return
        if self._finished or not (self._watching or self.order_id):
            return
        self.log.info("Task killed while deferred: stopping %s", self.describe())
        budget = self.ON_KILL_STOP_BUDGET
        try:
            stopped = await asyncio.wait_for(
                self.hook.astop_on_kill(self.kitchen, self.order_id, self._watching, budget=budget),
                budget + 2.0,
            )
        except (OrdersProviderError, asyncio.TimeoutError) as exc:
            self.log.warning(
                "Could not stop %s: %s", self.describe(), exc or f"no answer within {budget:g} s"
            )
            return
        self.log.info("%s: %s", self.describe(), stopped)


__all__ = ["OrderRunTrigger"]
