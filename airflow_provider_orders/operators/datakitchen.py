"""Submit a DataKitchen recipe order and, optionally, wait for its order run.

Cheap to import: only ``airflow.sdk`` and this package's exceptions / status / links modules are imported
at module level; the hook (requests) and the trigger are imported inside the methods that use them.

The small helpers at the top are shared with ``sensors.datakitchen`` and ``triggers.datakitchen`` so that
the three tell the same story about a run (same statuses, same messages).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from airflow_provider_orders.exceptions import (
    OrderRunFailedError,
    OrdersProviderError,
    PermanentOrdersError,
    TransientOrdersError,
)
from airflow_provider_orders.links import ORDER_RUN_ID_XCOM_KEY, DataKitchenOrderRunLink, push_order_run_link
from airflow_provider_orders.status import (
    FAILED_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    OrderRunStatus,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

#: XCom keys pushed by the operator and the sensor (besides ``return_value``).
XCOM_ORDER_ID = "order_id"
XCOM_ORDER_RUN_ID = ORDER_RUN_ID_XCOM_KEY
XCOM_ORDER_RUN_STATUS = "order_run_status"

#: task_state_store key holding the order a try of SubmitRecipeOrderOperator created.
ORDER_STATE_KEY = "datakitchen_order"


# --------------------------------------------------------------------------------------------------
# Shared helpers (operator, sensor, trigger)
# --------------------------------------------------------------------------------------------------


def run_id_of(run: Mapping[str, Any] | None) -> str | None:
    """The order run id (``hid``; ``serving_hid`` in some answers) of a run dict."""
    if not run:
        return None
    value = run.get("hid") or run.get("serving_hid")
    return str(value) if value else None


def run_status_of(run: Mapping[str, Any] | None) -> str | None:
    """The run's ``status`` (e.g. ``ACTIVE_SERVING``), upper-cased."""
    if not run:
        return None
    value = run.get("status")
    return str(value).strip().upper() if value else None


def describe_order(
    kitchen: str,
    order_id: str | None,
    *,
    recipe: str | None = None,
    variation: str | None = None,
    order_run_id: str | None = None,
) -> str:
    """``order 'o' (kitchen 'k', recipe 'r', variation 'v', order run 'x')`` for messages."""
    parts = [f"kitchen '{kitchen}'"]
    if recipe:
        parts.append(f"recipe '{recipe}'")
    if variation:
        parts.append(f"variation '{variation}'")
    if order_run_id:
        parts.append(f"order run '{order_run_id}'")
    head = f"DataKitchen order '{order_id}'" if order_id else "DataKitchen order run"
    return f"{head} ({', '.join(parts)})"


def order_run_failed_error(
    *,
    kitchen: str,
    order_id: str | None,
    order_run_id: str | None,
    status: str | None,
    orderrun_status: str | None,
    recipe: str | None = None,
    variation: str | None = None,
) -> OrderRunFailedError:
    """The error for a run that ended in SERVING_ERROR / STOPPED_SERVING."""
    where = describe_order(kitchen, order_id, recipe=recipe, variation=variation, order_run_id=order_run_id)
    api = f": {orderrun_status}" if orderrun_status else ""
    return OrderRunFailedError(
        f"{where} ended with status {status}{api}",
        status=status,
        orderrun_status=orderrun_status,
        order_run_id=order_run_id,
        api_message=orderrun_status,
    )


def error_from_event(event: Mapping[str, Any]) -> OrdersProviderError:
    """The exception an ``"error"`` event of one of our triggers stands for."""
    message = str(event.get("message") or "the trigger failed without a message")
    if event.get("permanent"):
        return PermanentOrdersError(message)
    return TransientOrdersError(message)


def event_error_fields(exc: BaseException) -> dict[str, Any]:
    """``permanent`` / ``error_type`` of an error event built from an exception."""
    return {"permanent": isinstance(exc, PermanentOrdersError), "error_type": type(exc).__name__}


def coerce_seconds(value: float | timedelta | None, name: str, *, allow_zero: bool) -> float | None:
    """``timedelta`` or a number of seconds → float seconds (None stays None)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{name} must be a number of seconds or a timedelta, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return seconds


def clean_id(value: Any, what: str, task_id: str) -> str | None:
    """A rendered id: stripped string, None when not given. ``"None"`` (an empty XCom rendered) is an error."""
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise PermanentOrdersError(
            f"Task '{task_id}': {what} must be a string, got {type(value).__name__} {value!r}."
        )
    text = str(value).strip()
    if not text:
        return None
    if text == "None":
        raise PermanentOrdersError(
            f"Task '{task_id}': {what} rendered to 'None' (an XCom or conf value that was not set)."
        )
    return text


# --------------------------------------------------------------------------------------------------
# The operator
# --------------------------------------------------------------------------------------------------


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
        self.poll_interval = coerce_seconds(poll_interval, "poll_interval", allow_zero=True) or 0.0
        self.timeout = coerce_seconds(timeout, "timeout", allow_zero=False)
        self.deferrable = deferrable
        self.datakitchen_conn_id = datakitchen_conn_id
        # Set while executing; read by on_kill().
        self._order_id: str | None = None
        self._order_run_id: str | None = None
        self._done = False
        self._store: Any = None  # context["task_state_store"] of the running try

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
        run: dict[str, Any] | None = None
        read = False  # whether `run` is a fresh read of the order's newest run
        if stored and order_id is not None and self.wait_for_completion:
            run, read = self._read(order_id, None), True
            status = run_status_of(run)
            if status in FAILED_RUN_STATUSES and stored.get("failure_reported"):
                # A try already failed the task for this run, so this try comes from a manual clear
                # or rerun: the user asks for the recipe to run again.
                self.log.warning(
                    "%s from an earlier try ended with %s, and that try failed the task; this try "
                    "(a clear or rerun) submits a new order.",
                    self._describe(order_id, run_id_of(run)),
                    status,
                )
                order_id, run, read = None, None, False
            elif status in FAILED_RUN_STATUSES and run is not None:
                # The run failed while no try was watching (a worker crash, or a scheduler that
                # retried a resumed task). A failed remote run is permanent: report it, never
                # resubmit behind the user's back.
                self.log.warning(
                    "%s from an earlier try ended with %s while no try was watching; failing "
                    "with it instead of submitting a second order.",
                    self._describe(order_id, run_id_of(run)),
                    status,
                )
                self._order_id = order_id
                context["ti"].xcom_push(key=XCOM_ORDER_ID, value=order_id)
                self._note_run(context, run_id_of(run))
                return self._finish(context, order_id, run)
            else:
                self.log.info(
                    "Reattaching to %s created by an earlier try (run status: %s); not submitting again.",
                    self._describe(order_id, run_id_of(run)),
                    status or "not started yet",
                )
        elif order_id is not None:
            self.log.info("%s was created by an earlier try; not submitting again.", self._describe(order_id))
        if order_id is None:
            order_id = self._submit(context)
        self._order_id = order_id
        context["ti"].xcom_push(key=XCOM_ORDER_ID, value=order_id)

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
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise PermanentOrdersError(
                    f"Task '{self.task_id}': {name} must be a non-empty string, got {value!r}."
                )
            setattr(self, name, value.strip())
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

    def _read(self, order_id: str, run_id: str | None) -> dict[str, Any] | None:
        """The run being watched: its details when its id is known, else the order's newest run."""
        if run_id is None:
            runs = self.hook.get_order_runs(self.kitchen, order_id)
            return runs[0] if runs else None
        return self.hook.get_order_run(self.kitchen, run_id)

    def _wait(
        self, context: Context, order_id: str, run: dict[str, Any] | None, end_time: float | None
    ) -> str:
        watch: str | None = None
        while True:
            if run is not None:
                rid = run_id_of(run)
                if rid and rid != self._order_run_id:
                    self._note_run(context, rid)
                status = run_status_of(run)
                watch = rid
                if status == OrderRunStatus.SERVING_RERAN.value:
                    # Superseded by a resume: follow the order's newest run.
                    self.log.info("Order run %s was re-run; following the order's newest run.", rid)
                    watch = None
                elif status in TERMINAL_RUN_STATUSES:
                    return self._finish(context, order_id, run)
                else:
                    self.log.info("%s is %s", self._describe(order_id, rid), status)
            else:
                self.log.info("%s: no order run yet", self._describe(order_id))
            if end_time is not None and time.time() >= end_time:
                self._stop_after_timeout(order_id, self._order_run_id, run_status_of(run))
            pause = self.poll_interval
            if end_time is not None:
                pause = max(0.0, min(pause, end_time - time.time()))
            time.sleep(pause)
            run = self._read(order_id, watch)

    def _finish(self, context: Context, order_id: str, run: Mapping[str, Any]) -> str:
        status = run_status_of(run)
        rid = run_id_of(run)
        self._done = True
        context["ti"].xcom_push(key=XCOM_ORDER_RUN_STATUS, value=status)
        if status in FAILED_RUN_STATUSES:
            self._record_failure_reported()
            raise order_run_failed_error(
                kitchen=self.kitchen,
                order_id=order_id,
                order_run_id=rid,
                status=status,
                orderrun_status=text_or_none(run.get("orderrun_status")),
                recipe=self.recipe,
                variation=self.variation,
            )
        self.log.info("%s finished with %s", self._describe(order_id, rid), status)
        return order_id

    def _stop_after_timeout(self, order_id: str, run_id: str | None, status: str | None) -> None:
        """Stop the run (or the order when no run started) and fail for good."""
        self._done = True
        self._record_failure_reported()
        where = self._describe(order_id, run_id)
        try:
            if run_id:
                self.hook.stop_order_run(self.kitchen, run_id)
                stopped = f"order run '{run_id}' was stopped"
            else:
                self.hook.stop_order(self.kitchen, order_id)
                stopped = f"no run had started, so order '{order_id}' was stopped"
        except OrdersProviderError as exc:
            stopped = f"stopping it failed too: {exc}"
        raise OrderRunFailedError(
            f"{where} did not finish within timeout={self.timeout:g}s (last status: "
            f"{status or 'no run yet'}); {stopped}.",
            status=status,
            order_run_id=run_id,
        )

    # ------------------------------------------------------------------ waiting (triggerer)

    def _wait_deferred(
        self, context: Context, order_id: str, run: dict[str, Any] | None, end_time: float | None
    ) -> str:
        rid = run_id_of(run)
        if rid:
            self._note_run(context, rid)
        status = run_status_of(run)
        if run is not None and status in TERMINAL_RUN_STATUSES and status != OrderRunStatus.SERVING_RERAN:
            return self._finish(context, order_id, run)
        if end_time is not None and time.time() >= end_time:
            self._stop_after_timeout(order_id, rid, status)
        from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

        watch = None if status == OrderRunStatus.SERVING_RERAN.value else rid
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
        order_id = str(event["order_id"])
        rid = text_or_none(event.get("order_run_id"))
        self._check_rendered()
        self._store = context.get("task_state_store")
        self._order_id = order_id
        context["ti"].xcom_push(key=XCOM_ORDER_ID, value=order_id)
        if rid:
            self._note_run(context, rid)
        kind = event.get("status")
        run = {
            "hid": rid,
            "status": event.get("order_run_status"),
            "orderrun_status": event.get("orderrun_status"),
        }
        if kind == "success":
            return self._finish(context, order_id, run)
        if kind == "failed":
            self._finish(context, order_id, run)  # raises for SERVING_ERROR / STOPPED_SERVING
            raise error_from_event({**event, "permanent": True})
        if kind == "timeout":
            self._stop_after_timeout(order_id, rid, text_or_none(event.get("order_run_status")))
        self._done = True
        raise error_from_event(event)

    # ------------------------------------------------------------------ misc

    def _note_run(self, context: Context, run_id: str | None) -> None:
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
        try:
            if self._order_run_id:
                self.log.info("Task killed: stopping DataKitchen order run %s", self._order_run_id)
                self.hook.stop_order_run(self.kitchen, self._order_run_id)
            else:
                self.log.info("Task killed: stopping DataKitchen order %s", self._order_id)
                self.hook.stop_order(self.kitchen, self._order_id)
        except Exception as exc:
            self.log.warning("Could not stop %s: %s", self._describe(self._order_id, self._order_run_id), exc)


def text_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


__all__ = [
    "ORDER_STATE_KEY",
    "XCOM_ORDER_ID",
    "XCOM_ORDER_RUN_ID",
    "XCOM_ORDER_RUN_STATUS",
    "SubmitRecipeOrderOperator",
]
