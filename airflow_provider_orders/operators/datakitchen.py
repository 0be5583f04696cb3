"""Submit a DataKitchen recipe order and, optionally, wait for its order run.

Cheap to import: only ``airflow.sdk`` and this package's light modules (exceptions, models, links) are
imported at module level; the hook (requests) and the trigger are imported inside the methods that use
them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from airflow_provider_orders._arguments import rendered_id, seconds
from airflow_provider_orders.exceptions import OrderRunFailedError, OrdersProviderError, PermanentOrdersError
from airflow_provider_orders.links import (
    ORDER_ID_XCOM_KEY,
    ORDER_RUN_STATUS_XCOM_KEY,
    DataKitchenOrderRunLink,
    push_order_run_link,
)
from airflow_provider_orders.models.datakitchen import OrderRun, OrderRunStatus, describe_order
from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.sdk import Context

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

#: task_state_store key holding the order a try of SubmitRecipeOrderOperator created.
ORDER_STATE_KEY = "datakitchen_order"


class SubmitRecipeOrderOperator(BaseOperator):
    """Submit an order for a DataKitchen recipe variation; optionally wait for its order run.

    :param kitchen: DataKitchen kitchen (templated).
    :param recipe: recipe name (templated).
    :param variation: variation name (templated).
    :param parameters: variable overrides sent with the order (templated; each leaf is rendered on its
        own, so numbers, booleans and lists keep their types). A string is parsed as a JSON object, so a
        whole-dict template works as ``"{{ params.overrides | tojson }}"``.
    :param wait_for_completion: wait for the order run: poll the order's runs until one appears, then
        the run until it ends. Fails on SERVING_ERROR / STOPPED_SERVING without using the task's retries.
    :param poll_interval: seconds between two status reads while waiting.
    :param timeout: seconds to wait for the run (None: no limit). When it passes, the remote run (or the
        order, if no run started yet) is stopped and the task fails without using its retries.
    :param deferrable: wait in the triggerer instead of on a worker (default: ``[operators]
        default_deferrable``).
    :param datakitchen_conn_id: connection of type ``datakitchen``.

    Returns the order id (XCom ``return_value``). XComs pushed on the way: ``order_id`` right after the
    order exists; when waiting, ``order_run_id`` and ``order_run_url`` as soon as the run is known and
    ``order_run_status`` (the final status). Without waiting the task makes exactly one request (the
    create): the run does not exist yet, so watch it with ``RecipeOrderRunSensor(order_id=...)``.

    Retries never create a second order: the order id is written to the task state store
    (``context["task_state_store"]``, key ``datakitchen_order``) the moment DataKitchen returns it. A later
    try of the same task instance reattaches to that order: still queued or running → keep waiting;
    completed → succeed with it; failed while no try was watching → fail with that run's status (a failed
    remote run is permanent; resubmitting behind the user's back could run the recipe twice). Only when a
    try already failed the task for that run (so the new try comes from a manual clear) is a new order
    submitted. Without ``wait_for_completion`` a stored order is always reused. The store outlives the
    task (also a manual "clear"): clearing a succeeded task does not order again; use a new DAG run.
    """

    template_fields: Sequence[str] = ("kitchen", "recipe", "variation", "parameters")
    template_fields_renderers = {"parameters": "json"}
    operator_extra_links = (DataKitchenOrderRunLink(),)
    ui_color = "#d9ecf2"

    def __init__(
        self,
        *,
        kitchen: str,
        recipe: str,
        variation: str,
        parameters: dict[str, Any] | str | None = None,
        wait_for_completion: bool = False,
        poll_interval: float | timedelta = 10.0,
        timeout: float | timedelta | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        datakitchen_conn_id: str = "datakitchen_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kitchen = kitchen
        self.recipe = recipe
        self.variation = variation
        self.parameters = parameters
        self.wait_for_completion = wait_for_completion
        self.poll_interval = seconds(poll_interval, "poll_interval", allow_zero=True) or 0.0
        self.timeout = seconds(timeout, "timeout", allow_zero=False)
        self.deferrable = deferrable
        self.datakitchen_conn_id = datakitchen_conn_id
        # Set while executing; read by on_kill().
        self._order_id: str | None = None
        self._order_run_id: str | None = None
        self._done = False
        self._store: Any = None  # context["task_state_store"] of the running try
        self._overrides: dict[str, Any] = {}

    @cached_property
    def hook(self) -> DataKitchenHook:
        from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

        return DataKitchenHook(datakitchen_conn_id=self.datakitchen_conn_id)

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> str:
        self._check_rendered()
        self._done = False
        self._store = store = context.get("task_state_store")
        stored = self._stored_order(store)
        order_id: str | None = str(stored["order_id"]) if stored else None
        run: OrderRun | None = None
        read = False  # whether `run` is a fresh read of the order's newest run
        if stored and order_id is not None and self.wait_for_completion:
            run, read = self._read(order_id, None), True
            if run is not None and run.is_failed and stored.get("failure_reported"):
                # A try already failed the task for this run, so this try comes from a manual clear
                # or rerun: the user asks for the recipe to run again.
                self.log.warning(
                    "%s from an earlier try ended with %s, and that try failed the task; this try "
                    "(a clear or rerun) submits a new order.",
                    self._describe(order_id, run.id),
                    run.status_text,
                )
                order_id, run, read = None, None, False
            elif run is not None and run.is_failed:
                # The run failed while no try was watching (a worker crash, or a scheduler that
                # retried a resumed task). A failed remote run is permanent: report it, never
                # resubmit behind the user's back.
                self.log.warning(
                    "%s from an earlier try ended with %s while no try was watching; failing "
                    "with it instead of submitting a second order.",
                    self._describe(order_id, run.id),
                    run.status_text,
                )
                self._order_id = order_id
                context["ti"].xcom_push(key=ORDER_ID_XCOM_KEY, value=order_id)
                self._publish_run(context, run.id)
                return self._finish(context, order_id, run)
            else:
                self.log.info(
                    "Reattaching to %s created by an earlier try (run status: %s); not submitting again.",
                    self._describe(order_id, run.id if run else None),
                    (run.status_text if run else None) or "not started yet",
                )
        elif order_id is not None:
            self.log.info("%s was created by an earlier try; not submitting again.", self._describe(order_id))
        if order_id is None:
            order_id = self._submit(context)
        self._order_id = order_id
        context["ti"].xcom_push(key=ORDER_ID_XCOM_KEY, value=order_id)

        if not self.wait_for_completion:
            if self.deferrable:
                self.log.warning("deferrable=True has no effect without wait_for_completion=True.")
            self._done = True
            return order_id

        end_time = time.time() + self.timeout if self.timeout is not None else None
        if not read:
            run = self._read(order_id, None)
        if self.deferrable:
            return self._wait_deferred(context, order_id, run, end_time)
        return self._wait(context, order_id, run, end_time)

    def _check_rendered(self) -> None:
        for name in ("kitchen", "recipe", "variation"):
            setattr(self, name, rendered_id(getattr(self, name), name, self.task_id, required=True))
        self._overrides = self._parse_parameters(self.parameters)

    def _parse_parameters(self, parameters: Any) -> dict[str, Any]:
        if isinstance(parameters, str):
            # A whole-dict template ("{{ params.overrides | tojson }}") renders to text; accept it
            # when it is a JSON object.
            text = parameters
            try:
                parameters = json.loads(text) if text.strip() else None
            except ValueError:
                raise PermanentOrdersError(
                    f"Task '{self.task_id}': parameters rendered to text that is not a JSON object: "
                    f"{text[:200]!r}. Pass a dict, or template the whole dict as "
                    "'{{ params.overrides | tojson }}'."
                ) from None
        if parameters is not None and not isinstance(parameters, Mapping):
            raise PermanentOrdersError(
                f"Task '{self.task_id}': parameters must be a dict of variable overrides, "
                f"got {type(parameters).__name__}."
            )
        return dict(parameters or {})

    def _stored_order(self, store: Any) -> Mapping[str, Any] | None:
        """The order an earlier try of this task instance created (and stored), if it is for this target."""
        if store is None:
            self.log.warning(
                "No task_state_store in the context (Airflow < 3.3?): a retry of this task cannot "
                "reattach to the order this try creates."
            )
            return None
        stored = store.get(ORDER_STATE_KEY)
        if not isinstance(stored, Mapping) or not stored.get("order_id"):
            return None
        same = (stored.get("kitchen"), stored.get("recipe"), stored.get("variation")) == (
            self.kitchen,
            self.recipe,
            self.variation,
        )
        if not same:
            self.log.warning(
                "The order %s stored by an earlier try was for kitchen %r, recipe %r, variation %r; "
                "this try renders another target, so it submits a new order.",
                stored.get("order_id"),
                stored.get("kitchen"),
                stored.get("recipe"),
                stored.get("variation"),
            )
            return None
        return stored

    def _record_failure_reported(self) -> None:
        """Mark the stored order as one whose failure a try reported (so only a clear reorders)."""
        stored = self._stored_order(self._store)
        if stored is not None and self._store is not None:
            self._store.set(ORDER_STATE_KEY, {**stored, "failure_reported": True})

    def _submit(self, context: Context) -> str:
        self.log.info(
            "Submitting an order for kitchen %r, recipe %r, variation %r",
            self.kitchen,
            self.recipe,
            self.variation,
        )
        answer = self.hook.create_order(self.kitchen, self.recipe, self.variation, self._overrides)
        order_id = str(answer["order_id"])
        store = context.get("task_state_store")
        if store is not None:
            # Persist at once: from here on a retry reattaches instead of creating a second order.
            store.set(
                ORDER_STATE_KEY,
                {
                    "order_id": order_id,
                    "kitchen": self.kitchen,
                    "recipe": self.recipe,
                    "variation": self.variation,
                },
            )
        self.log.info("Submitted %s", self._describe(order_id))
        return order_id

    # ------------------------------------------------------------------ waiting (worker)

    def _read(self, order_id: str, run_id: str | None) -> OrderRun | None:
        """The run being watched: its details when its id is known, else the order's newest run."""
        from airflow_provider_orders.models.datakitchen import newest_run

        if run_id is None:
            return newest_run(self.hook.get_order_runs(self.kitchen, order_id))
        return OrderRun.from_api(self.hook.get_order_run(self.kitchen, run_id))

    def _wait(self, context: Context, order_id: str, run: OrderRun | None, end_time: float | None) -> str:
        watch: str | None = None
        while True:
            if run is not None:
                if run.id and run.id != self._order_run_id:
                    self._publish_run(context, run.id)
                watch = run.id
                if run.is_superseded:
                    # Superseded by a resume: follow the order's newest run.
                    self.log.info("Order run %s was re-run; following the order's newest run.", run.id)
                    watch = None
                elif run.is_terminal:
                    return self._finish(context, order_id, run)
                else:
                    self.log.info("%s is %s", self._describe(order_id, run.id), run.status_text)
            else:
                self.log.info("%s: no order run yet", self._describe(order_id))
            if end_time is not None and time.time() >= end_time:
                self._stop_after_timeout(order_id, run)
            pause = self.poll_interval
            if end_time is not None:
                pause = max(0.0, min(pause, end_time - time.time()))
            time.sleep(pause)
            run = self._read(order_id, watch)

    def _finish(self, context: Context, order_id: str, run: OrderRun) -> str:
        self._done = True
        context["ti"].xcom_push(key=ORDER_RUN_STATUS_XCOM_KEY, value=run.status_text)
        if run.is_failed:
            self._record_failure_reported()
            raise OrderRunFailedError.ended(
                run, kitchen=self.kitchen, order_id=order_id, recipe=self.recipe, variation=self.variation
            )
        self.log.info("%s finished with %s", self._describe(order_id, run.id), run.status_text)
        return order_id

    def _stop_after_timeout(self, order_id: str, run: OrderRun | None) -> None:
        """Stop the run (or the order when no run started) and fail for good."""
        self._done = True
        self._record_failure_reported()
        run_id = self._order_run_id if run is None or run.id is None else run.id
        try:
            stopped = self.hook.stop_run_or_order(self.kitchen, order_id, run_id)
        except OrdersProviderError as exc:
            stopped = f"stopping it failed too: {exc}"
        assert self.timeout is not None
        raise OrderRunFailedError.timed_out(
            self._describe(order_id, run_id), timeout=self.timeout, run=run, stopped=stopped
        )

    # ------------------------------------------------------------------ waiting (triggerer)

    def _wait_deferred(
        self, context: Context, order_id: str, run: OrderRun | None, end_time: float | None
    ) -> str:
        if run is not None and run.id:
            self._publish_run(context, run.id)
        if run is not None and run.has_ended:
            return self._finish(context, order_id, run)
        if end_time is not None and time.time() >= end_time:
            self._stop_after_timeout(order_id, run)
        from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

        watch = None if run is None or run.is_superseded else run.id
        self.log.info("Deferring: the triggerer waits for %s", self._describe(order_id, watch))
        self.defer(
            trigger=OrderRunTrigger(
                datakitchen_conn_id=self.datakitchen_conn_id,
                kitchen=self.kitchen,
                order_id=order_id,
                order_run_id=watch,
                poll_interval=self.poll_interval,
                end_time=end_time,
                recipe=self.recipe,
                variation=self.variation,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Resume after OrderRunTrigger fired: succeed, fail for good, or stop the run after a timeout."""
        wait = WaitEvent.from_payload(event)
        order_id = wait.get("order_id")
        assert order_id is not None, f"OrderRunTrigger event without an order id: {event!r}"
        self._check_rendered()
        self._store = context.get("task_state_store")
        self._order_id = order_id
        context["ti"].xcom_push(key=ORDER_ID_XCOM_KEY, value=order_id)
        run = OrderRun(
            id=wait.get("order_run_id"),
            order_id=order_id,
            status=OrderRunStatus.parse(wait.get("run_status")),
            status_text=wait.get("run_status"),
            message=wait.get("run_message"),
        )
        if run.id:
            self._publish_run(context, run.id)
        if wait.outcome in (WaitOutcome.SUCCESS, WaitOutcome.FAILED):
            self._finish(context, order_id, run)  # raises for SERVING_ERROR / STOPPED_SERVING
            if wait.outcome is WaitOutcome.SUCCESS:
                return order_id
            raise PermanentOrdersError(wait.message)
        if wait.outcome is WaitOutcome.TIMEOUT:
            self._stop_after_timeout(order_id, run)
        self._done = True
        raise wait.error()

    # ------------------------------------------------------------------ misc

    def _publish_run(self, context: Context, run_id: str | None) -> None:
        """Push the run id and its web-app URL (for the extra link) as soon as the run is known."""
        if not run_id:
            return
        self._order_run_id = run_id
        push_order_run_link(context["ti"], self.hook, self.kitchen, run_id, self.log)

    def _describe(self, order_id: str | None, run_id: str | None = None) -> str:
        return describe_order(
            self.kitchen, order_id, recipe=self.recipe, variation=self.variation, order_run_id=run_id
        )

    def on_kill(self) -> None:
        """Stop the remote run (or the order, if no run started yet) when the task is killed."""
        if self._done or self._order_id is None:
            return
        where = self._describe(self._order_id, self._order_run_id)
        self.log.info("Task killed: stopping %s", where)
        try:
            self.log.info(
                "%s: %s", where, self.hook.stop_run_or_order(self.kitchen, self._order_id, self._order_run_id)
            )
        except Exception as exc:
            self.log.warning("Could not stop %s: %s", where, exc)


__all__ = ["ORDER_STATE_KEY", "SubmitRecipeOrderOperator"]
