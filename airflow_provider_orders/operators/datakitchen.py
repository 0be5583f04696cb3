"""Submit a DataKitchen recipe order and, optionally, wait for its order run.

Cheap to import: only ``airflow.sdk`` and this package's light modules (exceptions, models, links) are
imported at module level; the hook (requests) and the trigger are imported inside the methods that use
them.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowException, AirflowTaskTimeout, BaseOperator, conf

from airflow_provider_orders._arguments import rendered_id, seconds
from airflow_provider_orders._task_state import (
    StateWriteError,
    retries_left,
    try_number,
    write_record,
    written_this_attempt,
)
from airflow_provider_orders.exceptions import (
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRunFailedError,
    OrdersProviderError,
    PermanentOrdersError,
    RequestRejectedError,
    TransientOrdersError,
)
from airflow_provider_orders.links import (
    ORDER_ID_XCOM_KEY,
    ORDER_RUN_STATUS_XCOM_KEY,
    DataKitchenOrderRunLink,
    push_order_run_link,
)
from airflow_provider_orders.models.datakitchen import (
    STORY_LINE_CHARS,
    STORY_LINES_PER_NODE,
    ListedOrder,
    LostOrderQuery,
    OrderRun,
    OrderRunReport,
    OrderRunStatus,
    canonical_json,
    describe_order,
    iso_utc,
    listed_orders,
    match_lost_order,
    recipe_target,
)
from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome
from airflow_provider_orders.version_compat import AIRFLOW_V_3_3_PLUS, warn_missing_once

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

#: task_state_store key holding the order a try of SubmitRecipeOrderOperator created.
ORDER_STATE_KEY = "datakitchen_order"
#: XCom key of the finished run's summary (status, timings, test counts).
ORDER_RUN_SUMMARY_XCOM_KEY = "order_run_summary"
#: How much earlier than the create request an order may look created in the order list (clock skew).
CLOCK_SKEW_SECONDS = 120.0
#: Seconds between two reads of the order list while looking for an order whose create answer was lost.
LOOKUP_PAUSE_SECONDS = 5.0


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
    :param poll_interval: seconds between two status reads while waiting (> 0).
    :param timeout: seconds to wait for the run (None: no limit). When it passes, the remote run (or the
        order, if no run started yet) is stopped and the task fails without using its retries.
    :param deferrable: wait in the triggerer instead of on a worker (default: ``[operators]
        default_deferrable``).
    :param retry_from_failure: when the run ends in SERVING_ERROR or STOPPED_SERVING, fail the try
        *retryably*; the next try resumes that run (DataKitchen re-runs its failed nodes in a new run of
        the same order) instead of ordering again, and waits for the new run. With the retries spent the
        task fails with the run's cause. Needs ``wait_for_completion=True`` and ``retries`` > 0 to have
        an effect.
    :param reference_variable: name of a variable override this operator adds to the order, holding a
        reference unique to this request (``airflow/<dag>/<run>/<task>/<map index>/<try>/<nonce>``).
        With it, an order whose create answer was lost is found by its reference alone, and a retry
        finds its order without ``task_state_store``. Opt in only if your recipes accept an extra
        variable (DataKitchen adds an unknown override to the run's variables).
    :param lost_order_grace: when the create answer is lost, how long (seconds) to look for the order
        in the kitchen's order list before concluding none was created and submitting once more.
    :param datakitchen_conn_id: connection of type ``datakitchen``.

    Returns the order id (XCom ``return_value``). XComs pushed on the way: ``order_id`` right after the
    order exists; when waiting, ``order_run_id`` and ``order_run_url`` as soon as the run is known and
    ``order_run_status`` (the final status) and ``order_run_summary`` (status, timings, test counts) when
    the run completes. Without waiting the task makes exactly one request (the create): the run does
    not exist yet, so watch it with ``RecipeOrderRunSensor(order_id=...)``.

    A failed run's story goes to the task log: its failing node(s) with their last log lines and its
    failed and warning tests (bounded); the exception's first line names the failing node and the first
    failed test.

    A create whose answer is lost (a 5xx, a reset, a read timeout after the request left) is resolved
    from the kitchen's order list: exactly one matching order is adopted; none after
    ``lost_order_grace`` means DataKitchen created nothing, so the order is submitted once more; several
    fail the task listing them. See ``reference_variable`` for an exact match.

    Retries never create a second order for a run that may still succeed: the order id is written to
    the task state store (``context["task_state_store"]``, key ``datakitchen_order``, with the target, a
    digest of the overrides and the try number) the moment DataKitchen returns it; if the store cannot
    take it, the order is stopped and the try fails saying so. A later try reattaches to a stored order
    for the same kitchen, recipe, variation and overrides:

    - run queued or running → keep waiting (whichever attempt created it);
    - within the same attempt (Airflow's retries): completed → succeed with it; stopped (a try Airflow
      killed — ``execution_timeout``, a clear, SIGTERM, mark failed — stops its run in ``on_kill``) →
      order again; failed while no try was watching (a worker crash) → fail with that run's status,
      without using the retries (resubmitting behind the user's back could run the recipe twice);
    - from before a clear (a new attempt: the task was cleared after it ended) → order again: a cleared
      task starts clean. Without ``wait_for_completion`` a stored order is reused within the attempt.

    ``execution_timeout`` also bounds a deferred wait: when it passes in the triggerer, the run is stopped
    and the try fails with ``AirflowTaskTimeout`` (retried like any try). The ``timeout`` argument instead
    stops the run and fails the task for good.
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
        retry_from_failure: bool = False,
        reference_variable: str | None = None,
        lost_order_grace: float | timedelta = 30.0,
        datakitchen_conn_id: str = "datakitchen_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if retry_from_failure and not wait_for_completion:
            raise ValueError(
                f"Task '{self.task_id}': retry_from_failure=True needs wait_for_completion=True: without "
                "waiting, the task never sees the run fail."
            )
        if reference_variable is not None and (
            not isinstance(reference_variable, str) or not reference_variable.strip()
        ):
            raise ValueError(f"Task '{self.task_id}': reference_variable must be a variable name or None.")
        self.kitchen = kitchen
        self.recipe = recipe
        self.variation = variation
        self.parameters = parameters
        self.wait_for_completion = wait_for_completion
        self.poll_interval = seconds(poll_interval, "poll_interval", allow_zero=False) or 10.0
        self.timeout = seconds(timeout, "timeout", allow_zero=False)
        self.deferrable = deferrable
        self.retry_from_failure = retry_from_failure
        self.reference_variable = reference_variable.strip() if reference_variable else None
        self.lost_order_grace = seconds(lost_order_grace, "lost_order_grace", allow_zero=True) or 0.0
        self.datakitchen_conn_id = datakitchen_conn_id
        # Set while executing; read by on_kill().
        self._order_id: str | None = None
        self._order_run_id: str | None = None
        self._order_run_url: str | None = None  # for OpenLineage (read in a forked child: no XCom)
        self._order_run_status: str | None = None
        self._done = False
        self._killed = False  # set by on_kill: this try was killed by Airflow
        self._store: Any = None  # context["task_state_store"] of the running try
        self._overrides: dict[str, Any] = {}
        self._superseded: set[str] = set()  # runs this try resumed: never mistaken for the current one
        # The run being waited for was started by an earlier attempt (the task was cleared while it
        # ran): if it ends STOPPED_SERVING, that attempt's kill stopped it, and this try orders again.
        self._inherited = False

    @cached_property
    def hook(self) -> DataKitchenHook:
        from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

        return DataKitchenHook(datakitchen_conn_id=self.datakitchen_conn_id)

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> str:
        self._check_rendered()
        self._done = self._killed = self._inherited = False
        self._store = store = context.get("task_state_store")
        if store is None and not self.reference_variable:
            # With reference_variable, the order list carries the order to a retry instead (below).
            warn_missing_once("task_state_store", self.log, f"task {self.task_id}")
        exec_deadline = (
            time.time() + self.execution_timeout.total_seconds() if self.execution_timeout else None
        )
        order_id, run = self._reattach(context, store)
        reattached = order_id is not None  # then, when waiting, `run` was just read (None: none yet)
        if order_id is None:
            order_id = self._submit(context)
        self._order_id = order_id
        context["ti"].xcom_push(key=ORDER_ID_XCOM_KEY, value=order_id)
        if run is not None and run.has_ended:  # an earlier try's run that already finished
            self._publish_run(context, run.id)
            return self._finish(context, order_id, run)

        if not self.wait_for_completion:
            if self.deferrable:
                self.log.warning("deferrable=True has no effect without wait_for_completion=True.")
            self._done = True
            return order_id

        end_time = time.time() + self.timeout if self.timeout is not None else None
        if not reattached:
            run = self._read(order_id, None)
        if self.deferrable:
            return self._wait_deferred(context, order_id, run, end_time, exec_deadline)
        return self._wait(context, order_id, run, end_time)

    def _reattach(self, context: Context, store: Any) -> tuple[str | None, OrderRun | None]:
        """The order (and its newest run, when waiting) an earlier try created, if this try carries it on.

        ``(None, None)`` means "submit a new order". The rules (README, "Retries, kills and clears"):
        an order of another target or other overrides is never reused; a run still queued or running is
        reattached to, whichever attempt created it; an earlier *attempt's* order that has ended (the task
        was cleared) is not this attempt's work, so a new order is submitted; within this attempt a
        completed run is this task's success, a stopped one (a try Airflow killed stops its run) is ordered
        again, and a failed one fails the task (the recipe failed while no try was watching).
        """
        stored = self._stored_order(store) if store is not None else self._order_by_reference(context)
        if stored is None:
            return None, None
        order_id = str(stored["order_id"])
        this_attempt = written_this_attempt(stored, context, self.retries) and not stored.get(
            "failure_reported"
        )
        if not self.wait_for_completion:
            if not this_attempt:
                self.log.info(
                    "%s was created before this task was cleared; a cleared task orders again.",
                    self._describe(order_id),
                )
                return None, None
            self.log.info("%s was created by an earlier try; not submitting again.", self._describe(order_id))
            return order_id, None
        run = self._read(order_id, None)
        if run is None or not run.has_ended:
            self._inherited = not this_attempt
            self.log.info(
                "Reattaching to %s created by an earlier try (run status: %s); not submitting again.",
                self._describe(order_id, run.id if run else None),
                (run.status_text if run else None) or "not started yet",
            )
            return order_id, run
        where = self._describe(order_id, run.id)
        if not this_attempt:
            self.log.warning(
                "%s from before this task was cleared ended with %s; a cleared task starts clean, so "
                "this try submits a new order.",
                where,
                run.status_text,
            )
            return None, None
        if self.retry_from_failure and run.is_failed and run.id:
            return order_id, self._resume(context, order_id, run, stored)
        if run.status is OrderRunStatus.STOPPED_SERVING:
            self.log.warning(
                "%s from try %s ended with %s while no try was watching: Airflow killed that try (a "
                "timeout, a clear, SIGTERM) and its on_kill stopped the run, or someone stopped it in "
                "DataKitchen. A stopped run is not a recipe failure: this try submits a new order.",
                where,
                stored.get("try_number", "?"),
                run.status_text,
            )
            return None, None
        if run.is_failed:
            # The recipe failed while no try was watching (a worker crash). A failed remote run is
            # permanent: report it, never resubmit behind the user's back.
            self.log.warning(
                "%s from an earlier try ended with %s while no try was watching; failing with it "
                "instead of submitting a second order.",
                where,
                run.status_text,
            )
        else:
            self.log.info("%s from an earlier try already finished with %s.", where, run.status_text)
        return order_id, run

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

    def _overrides_digest(self) -> str:
        """SHA-256 of the overrides as canonical JSON: matches a stored order to what was ordered without
        keeping the values (they may hold secrets) in the task state store."""
        text = json.dumps(self._overrides, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _stored_order(self, store: Any) -> Mapping[str, Any] | None:
        """The order an earlier try of this task instance stored, if it is for what this try orders."""
        if store is None:
            return None
        stored = store.get(ORDER_STATE_KEY)
        if not isinstance(stored, Mapping) or not stored.get("order_id"):
            return None
        ordered = (stored.get("kitchen"), stored.get("recipe"), stored.get("variation"))
        if ordered != (self.kitchen, self.recipe, self.variation):
            self.log.warning(
                "The order %s stored by an earlier try was for kitchen %r, recipe %r, variation %r; "
                "this try renders another target, so it submits a new order.",
                stored.get("order_id"),
                *ordered,
            )
            return None
        digest = stored.get("overrides_sha256")
        if digest is not None and digest != self._overrides_digest():
            self.log.warning(
                "The order %s stored by an earlier try was sent with other variable overrides than this "
                "try renders; this try submits a new order with the new overrides.",
                stored.get("order_id"),
            )
            return None
        return stored

    def _record_failure_reported(self) -> None:
        """Mark the stored order as one whose failure a try reported (best effort: the attempt rule
        already keeps a later clear from counting it)."""
        store = self._store
        stored = self._stored_order(store) if store is not None else None
        if stored is None:
            return
        try:
            store.set(ORDER_STATE_KEY, {**stored, "failure_reported": True})
        except Exception as exc:
            self.log.info("Could not mark the stored order as reported (%s)", exc)

    def _submit(self, context: Context) -> str:
        self.log.info(
            "Submitting an order for kitchen %r, recipe %r, variation %r",
            self.kitchen,
            self.recipe,
            self.variation,
        )
        overrides = dict(self._overrides)
        if self.reference_variable:
            overrides[self.reference_variable] = (
                f"{self._reference_prefix(context)}{try_number(context) or 0}/{uuid.uuid4().hex[:12]}"
            )
        order_id = self._create(overrides)
        self._order_id = order_id
        store = context.get("task_state_store")
        if store is not None:
            # Persist at once: from here on a retry reattaches instead of creating a second order.
            record = {
                "order_id": order_id,
                "kitchen": self.kitchen,
                "recipe": self.recipe,
                "variation": self.variation,
                "overrides_sha256": self._overrides_digest(),
                "try_number": try_number(context),
            }
            try:
                write_record(store, ORDER_STATE_KEY, record, log=self.log)
            except StateWriteError as exc:
                self._unrecorded(order_id, exc)
        self.log.info("Submitted %s", self._describe(order_id))
        return order_id

    def _reference_prefix(self, context: Context) -> str:
        """``airflow/<dag>/<run>/<task>/<map index>/``: what every reference of this task instance starts
        with (the try number and a nonce follow)."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return f"airflow/{ti.dag_id}/{ti.run_id}/{ti.task_id}/{map_index}/"

    def _create(self, overrides: dict[str, Any]) -> str:
        """Create the order; when the answer is lost, find it in the order list, or submit once more when
        the list shows DataKitchen created nothing."""
        for attempt in (1, 2):
            sent_at = time.time()
            try:
                return str(
                    self.hook.create_order(self.kitchen, self.recipe, self.variation, overrides)["order_id"]
                )
            except OrderOutcomeUnknownError as exc:
                found = self._find_lost_order(exc, overrides, sent_at)
                if found is not None:
                    return found
                if attempt == 2:
                    raise OrderOutcomeUnknownError(
                        f"{exc} This was the second create: the first one's answer was lost too and no "
                        "order of it appeared in the order list. Not trying a third time.",
                        http_status=exc.http_status,
                        api_message=exc.api_message,
                    ) from exc
                self.log.warning(
                    "No order for %s appeared in the order list within %gs of the lost answer: DataKitchen "
                    "did not create it, so submitting again is safe. Submitting once more.",
                    recipe_target(self.kitchen, self.recipe, self.variation),
                    self.lost_order_grace,
                )
        raise AssertionError("unreachable")

    def _find_lost_order(
        self, exc: OrderOutcomeUnknownError, overrides: dict[str, Any], sent_at: float
    ) -> str | None:
        """The order a create whose answer was lost made, from the kitchen's order list.

        Exactly one match: its id. None after ``lost_order_grace``: nothing was created. Several, or a
        list that cannot tell: raise ``exc`` extended with what the list showed.
        """
        self.log.warning(
            "The answer to the create was lost (%s). Looking for the order in the order list of kitchen %r.",
            exc,
            self.kitchen,
        )
        deadline = time.monotonic() + self.lost_order_grace
        while True:
            now = time.time()
            query = LostOrderQuery(
                recipe=self.recipe,
                variation=self.variation,
                overrides=overrides,
                created_after=sent_at - CLOCK_SKEW_SECONDS,
                created_before=now + CLOCK_SKEW_SECONDS,
                created_by=self.hook.username,
                reference_variable=self.reference_variable,
            )
            try:
                # No timePeriod: its unit is undocumented, and a window read in a smaller unit than
                # meant would hide the order and make a second create look safe. The time window is
                # applied here instead (match_lost_order).
                body = self.hook.list_orders(self.kitchen, recipe=self.recipe, variation=self.variation)
            except OrdersProviderError as list_error:
                raise OrderOutcomeUnknownError(
                    f"{exc} Looking for it in the order list failed too: {list_error}",
                    http_status=exc.http_status,
                    api_message=exc.api_message,
                ) from exc
            matches, conclusive = match_lost_order(listed_orders(body), query)
            if not conclusive:
                raise OrderOutcomeUnknownError(
                    f"{exc} The order list shows no variable overrides, so it cannot show which order "
                    f"carries this request's reference variable {self.reference_variable!r}.",
                    http_status=exc.http_status,
                ) from exc
            if len(matches) == 1:
                self.log.warning(
                    "Found the order this request created in the order list: %s; carrying on with it.",
                    self._describe(matches[0].id),
                )
                return matches[0].id
            if matches:
                raise OrderOutcomeUnknownError(
                    f"{exc} The order list of kitchen '{self.kitchen}' holds {len(matches)} orders that "
                    f"could be it: {_listing(matches)}. None was adopted: check them in DataKitchen and "
                    "stop the extra ones (set reference_variable= to tell them apart).",
                    http_status=exc.http_status,
                ) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(LOOKUP_PAUSE_SECONDS, left))

    def _order_by_reference(self, context: Context) -> Mapping[str, Any] | None:
        """Without a task_state_store (Airflow < 3.3): the order an earlier try of this task instance
        created, found in the order list by its reference variable; shaped like a stored record."""
        if not self.reference_variable:
            self.log.warning(
                "No task_state_store in the context (Airflow < 3.3?) and no reference_variable: a retry "
                "of this task cannot find the order this try creates."
            )
            return None
        if (try_number(context) or 1) <= 1:
            return None
        prefix = self._reference_prefix(context)
        variable = self.reference_variable
        body = self.hook.list_orders(self.kitchen, recipe=self.recipe, variation=self.variation)
        mine = [
            o
            for o in listed_orders(body)
            if o.overrides is not None
            and str(o.overrides.get(variable, "")).startswith(prefix)
            and (o.recipe, o.variation) in ((self.recipe, self.variation), (None, None))
        ]
        if not mine:
            return None
        newest = max(mine, key=lambda o: o.created_at or 0.0)
        assert newest.overrides is not None
        written_by = str(newest.overrides[variable])[len(prefix) :].split("/", 1)[0]
        rest = {k: v for k, v in newest.overrides.items() if k != variable}
        if canonical_json(rest) != canonical_json(self._overrides):
            self.log.warning(
                "The order %s an earlier try created was sent with other variable overrides than this try "
                "renders; this try submits a new order with the new overrides.",
                newest.id,
            )
            return None
        self.log.info(
            "Found the order of an earlier try by its reference variable %r: %s", variable, newest.id
        )
        return {
            "order_id": newest.id,
            "kitchen": self.kitchen,
            "recipe": self.recipe,
            "variation": self.variation,
            "try_number": int(written_by) if written_by.isdigit() else None,
        }

    def _resume(
        self, context: Context, order_id: str, run: OrderRun, stored: Mapping[str, Any]
    ) -> OrderRun | None:
        """retry_from_failure: resume the failed or stopped ``run``; the new run of the order (None
        while it has not shown up yet)."""
        assert run.id is not None
        where = self._describe(order_id, run.id)
        self.log.info(
            "retry_from_failure: resuming %s, which ended with %s: DataKitchen re-runs its failed nodes in a "
            "new run of the same order.",
            where,
            run.status_text,
        )
        self._superseded.add(run.id)
        try:
            answer = self.hook.resume_order_run(self.kitchen, run.id)
        except (RequestRejectedError, OrderNotFoundError) as exc:
            self._record_failure_reported()
            raise PermanentOrdersError(
                f"DataKitchen refused to resume {where} (ended with {run.status_text}): {exc}",
                api_message=exc.api_message,
                http_status=exc.http_status,
            ) from exc
        except OrderOutcomeUnknownError as exc:
            newest = self._read(order_id, None)
            if newest is None:
                raise TransientOrdersError(
                    f"{exc} The order's newest run is still {run.id}: the resume did not happen; the next "
                    "try resumes it again."
                ) from exc
            self.log.info("The resume's answer was lost, but the order has a new run: %s", newest.id)
            answer = {"serving_hid": newest.id}
        new_id = answer.get("serving_hid")
        new_run = (
            OrderRun(id=str(new_id), order_id=order_id)
            if new_id and str(new_id) != run.id
            else self._read(order_id, None)
        )
        # DataKitchen documents only order_id in the answer: then wait (briefly) for the new run to be
        # listed, so that neither wait mistakes the resumed run for the current one.
        deadline = time.monotonic() + max(30.0, 3 * self.poll_interval)
        while new_run is None and time.monotonic() < deadline:
            time.sleep(min(self.poll_interval, 2.0))
            new_run = self._read(order_id, None)
        store = self._store
        if store is not None:
            record = dict(stored)
            record["resumed_runs"] = [*list(stored.get("resumed_runs") or []), run.id]
            try:
                write_record(store, ORDER_STATE_KEY, record, log=self.log)
            except StateWriteError as exc:
                self.log.warning("Could not note the resume in the task state store (%s)", exc)
        self.log.info(
            "Resumed: %s",
            self._describe(order_id, new_run.id if new_run else None)
            if new_run
            else "the new run has not shown up yet; waiting for it",
        )
        return new_run

    def _unrecorded(self, order_id: str, error: StateWriteError) -> NoReturn:
        """The order exists but no retry could find it: stop it, then fail (retryably only if stopped)."""
        where = self._describe(order_id)
        self._done = True
        try:
            stopped = self.hook.stop_run_or_order(self.kitchen, order_id, None)
        except OrdersProviderError as exc:
            raise PermanentOrdersError(
                f"{where} was created, but {error}, and stopping it failed too ({exc}). A retry could not "
                "find this order and would run the recipe a second time, so the task fails without "
                "retrying: check the order in DataKitchen."
            ) from error
        raise TransientOrdersError(
            f"{where} was created, but {error}: a retry could not find it, so it was stopped ({stopped}). "
            "A retry orders again."
        ) from error

    # ------------------------------------------------------------------ waiting (worker)

    def _read(self, order_id: str, run_id: str | None) -> OrderRun | None:
        """The run being watched: its details when its id is known, else the order's newest run."""
        from airflow_provider_orders.models.datakitchen import newest_run

        if run_id is None:
            run = newest_run(self.hook.get_order_runs(self.kitchen, order_id))
            if run is not None and run.id in self._superseded:
                return None  # the run this try resumed, until DataKitchen lists the new one
            return run
        return OrderRun.from_api(self.hook.get_order_run(self.kitchen, run_id))

    def _wait(self, context: Context, order_id: str, run: OrderRun | None, end_time: float | None) -> str:
        watch: str | None = None
        while True:
            self._check_killed(order_id)
            if run is not None:
                if run.id and run.id != self._order_run_id:
                    self._publish_run(context, run.id)
                watch = run.id
                if run.is_superseded:
                    # Superseded by a resume: follow the order's newest run.
                    self.log.info("Order run %s was re-run; following the order's newest run.", run.id)
                    watch = None
                elif run.is_terminal and self._stopped_by_earlier_attempt(run):
                    order_id = self._order_again(context, order_id, run)
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
            self._check_killed(order_id)
            run = self._read(order_id, watch)

    def _stopped_by_earlier_attempt(self, run: OrderRun) -> bool:
        return self._inherited and run.status is OrderRunStatus.STOPPED_SERVING and not self._killed

    def _order_again(self, context: Context, order_id: str, run: OrderRun) -> str:
        """The inherited run was stopped (the earlier attempt's kill stopped it after this try reattached):
        a cleared task starts clean, so submit a new order and wait for it instead."""
        self.log.warning(
            "%s, started before this task was cleared, ended with %s: the cleared attempt's kill stopped "
            "it after this try reattached. A cleared task starts clean: this try submits a new order.",
            self._describe(order_id, run.id),
            run.status_text,
        )
        self._inherited = False
        self._order_run_id = None
        new_order = self._submit(context)
        self._order_id = new_order
        context["ti"].xcom_push(key=ORDER_ID_XCOM_KEY, value=new_order)
        return new_order

    def _check_killed(self, order_id: str) -> None:
        """After ``on_kill`` stopped the run from Airflow's SIGTERM handler, end this try at once, as a
        kill and not as a run failure: the next try (a retry, or the clear's new try) orders again."""
        if self._killed:
            raise AirflowException(
                f"Task killed by Airflow (SIGTERM): {self._describe(order_id, self._order_run_id)} was "
                "stopped; a next try of this task submits a new order."
            )

    def _finish(self, context: Context, order_id: str, run: OrderRun) -> str:
        self._done = True
        self._order_run_status = run.status_text
        ti = context["ti"]
        ti.xcom_push(key=ORDER_RUN_STATUS_XCOM_KEY, value=run.status_text)
        report = self._report(order_id, run)
        if run.is_failed:
            self._failed(context, order_id, run, report)
        where = self._describe(order_id, run.id)
        if report is not None:
            counts = report.test_counts
            self.log.info(
                "Tests of %s: %d passed, %d warnings, %d failed",
                where,
                counts["passed"],
                counts["warnings"],
                counts["failed"],
            )
            for test in report.tests_with("WARNING")[:STORY_LINES_PER_NODE]:
                self.log.warning("Warning test %s", test.describe()[:STORY_LINE_CHARS])
            ti.xcom_push(key=ORDER_RUN_SUMMARY_XCOM_KEY, value=report.summary(order_id))
        self.log.info("%s finished with %s", where, run.status_text)
        return order_id

    def _report(self, order_id: str, run: OrderRun) -> OrderRunReport | None:
        """The run's report (log when it failed, tests always); None when it cannot be read, which never
        hides the run's own outcome."""
        if not run.id:
            return None
        try:
            serving = self.hook.get_order_run_details(self.kitchen, run.id, logs=run.is_failed, tests=True)
        except OrdersProviderError as exc:
            self.log.warning(
                "Could not read the log and tests of %s: %s", self._describe(order_id, run.id), exc
            )
            return None
        return OrderRunReport.from_api(serving)

    def _failed(
        self, context: Context, order_id: str, run: OrderRun, report: OrderRunReport | None
    ) -> NoReturn:
        """Tell the failed run's story in the task log, then fail: retryably when the next try resumes it
        (retry_from_failure), else for good with how to resume by hand."""
        where = self._describe(order_id, run.id)
        story = report.story() if report is not None else []
        if story:
            self.log.error(
                "%s ended with %s. What DataKitchen reports:\n%s", where, run.status_text, "\n".join(story)
            )
        resuming = bool(self.retry_from_failure and run.id and retries_left(context, self.retries))
        note: str | None = None
        if resuming:
            note = (
                f"retry_from_failure=True: the next try resumes order run '{run.id}' (DataKitchen re-runs "
                "its failed nodes in a new run of the same order)"
            )
        elif self.retry_from_failure and run.id:
            note = "retry_from_failure=True, but the task's retries are spent: the run was not resumed"
        elif run.id:
            note = (
                f"To re-run only its failed nodes, resume order run '{run.id}' in DataKitchen "
                f"(PUT /v2/order/resume/{run.id}) or set retry_from_failure=True on the task"
            )
        error = OrderRunFailedError.ended(
            run,
            kitchen=self.kitchen,
            order_id=order_id,
            recipe=self.recipe,
            variation=self.variation,
            headline=report.headline() if report is not None else None,
            note=note,
        )
        if resuming:
            raise TransientOrdersError(str(error), api_message=run.message)
        self._record_failure_reported()
        raise error

    def _current_run_id(self, order_id: str, run: OrderRun | None) -> str | None:
        """The run to stop: the watched one, or, when it was superseded by a resume (or not known), the
        order's newest run (None: stop the order)."""
        if run is not None and run.id and not run.is_superseded:
            return run.id
        try:
            newest = self._read(order_id, None)
        except OrdersProviderError as exc:
            self.log.warning("Could not read the runs of %s (%s); stopping the order", order_id, exc)
            return None
        return newest.id if newest is not None else None

    def _stop(self, order_id: str, run: OrderRun | None) -> str:
        """Stop the current run (or the order) and say what happened, in words; never raises for the API."""
        try:
            return self.hook.stop_run_or_order(self.kitchen, order_id, self._current_run_id(order_id, run))
        except OrdersProviderError as exc:
            return f"stopping it failed too: {exc}"

    def _stop_after_timeout(self, order_id: str, run: OrderRun | None) -> NoReturn:
        """The operator's ``timeout`` passed: stop the run (or the order when no run started) and fail
        for good."""
        self._done = True
        self._record_failure_reported()
        stopped = self._stop(order_id, run)
        assert self.timeout is not None
        raise OrderRunFailedError.timed_out(
            self._describe(order_id, self._order_run_id), timeout=self.timeout, run=run, stopped=stopped
        )

    # ------------------------------------------------------------------ waiting (triggerer)

    def _wait_deferred(
        self,
        context: Context,
        order_id: str,
        run: OrderRun | None,
        end_time: float | None,
        exec_deadline: float | None,
    ) -> str:
        if run is not None and run.id:
            self._publish_run(context, run.id)
        if run is not None and run.has_ended:
            return self._finish(context, order_id, run)
        if end_time is not None and time.time() >= end_time:
            self._stop_after_timeout(order_id, run)
        from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

        # Airflow does not bound a deferral by execution_timeout: the trigger does (see execute_complete).
        deadlines = [t for t in (end_time, exec_deadline) if t is not None]
        watch = None if run is None or run.is_superseded else run.id
        self.log.info("Deferring: the triggerer waits for %s", self._describe(order_id, watch))
        if not AIRFLOW_V_3_3_PLUS:
            warn_missing_once("trigger_on_kill", self.log, f"task {self.task_id}")
        self.defer(
            trigger=OrderRunTrigger(
                datakitchen_conn_id=self.datakitchen_conn_id,
                kitchen=self.kitchen,
                order_id=order_id,
                order_run_id=watch,
                poll_interval=self.poll_interval,
                end_time=min(deadlines) if deadlines else None,
                recipe=self.recipe,
                variation=self.variation,
            ),
            method_name="execute_complete",
            kwargs={"timeout_at": end_time, "exec_deadline": exec_deadline, "inherited": self._inherited},
            timeout=None,
        )

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any],
        timeout_at: float | None = None,
        exec_deadline: float | None = None,
        inherited: bool = False,
    ) -> str:
        """Resume after OrderRunTrigger fired: succeed, fail for good, or stop the run after a deadline.

        :param timeout_at: when the operator's ``timeout`` passes (epoch seconds). A ``timeout`` event
            before it comes from ``execution_timeout``.
        """
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
        # The kwarg says whether the run was an earlier attempt's; the stored record says it too (the
        # kwarg is lost where next_kwargs are replaced by the event alone, as dag.test() does).
        stored = self._stored_order(self._store)
        self._inherited = inherited or (
            stored is not None
            and str(stored.get("order_id")) == order_id
            and not written_this_attempt(stored, context, self.retries)
        )
        if wait.outcome is WaitOutcome.FAILED and self._stopped_by_earlier_attempt(run):
            order_id = self._order_again(context, order_id, run)
            return self._wait_deferred(
                context, order_id, self._read(order_id, None), timeout_at, exec_deadline
            )
        if wait.outcome in (WaitOutcome.SUCCESS, WaitOutcome.FAILED):
            self._finish(context, order_id, run)  # raises for SERVING_ERROR / STOPPED_SERVING
            if wait.outcome is WaitOutcome.SUCCESS:
                return order_id
            raise PermanentOrdersError(wait.message)
        if wait.outcome is WaitOutcome.TIMEOUT:
            if self.timeout is not None and (timeout_at is None or time.time() >= timeout_at - 1.0):
                self._stop_after_timeout(order_id, run)
            self._done = True
            stopped = self._stop(order_id, run)
            raise AirflowTaskTimeout(
                f"execution_timeout ({self.execution_timeout}) passed while the triggerer waited for "
                f"{self._describe(order_id, self._order_run_id)}: {stopped}. A next try of this task "
                "submits a new order."
            )
        self._done = True
        raise wait.error()

    # ------------------------------------------------------------------ misc

    def _publish_run(self, context: Context, run_id: str | None) -> None:
        """Push the run id and its web-app URL (for the extra link) as soon as the run is known."""
        if not run_id:
            return
        self._order_run_id = run_id
        self._order_run_url = push_order_run_link(context["ti"], self.hook, self.kitchen, run_id, self.log)

    def _describe(self, order_id: str | None, run_id: str | None = None) -> str:
        return describe_order(
            self.kitchen, order_id, recipe=self.recipe, variation=self.variation, order_run_id=run_id
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (the ``openlineage`` extra): the DataKitchen order run as this task's external run
        (the ``externalQuery`` facet and a ``dataKitchen_orderRun`` facet with ids, status and URL).

        The OpenLineage provider also calls this when the task fails (there is no ``..._on_failure``)."""
        from airflow_provider_orders.operators._openlineage import order_run_lineage

        return order_run_lineage(
            kitchen=self.kitchen,
            recipe=self.recipe,
            variation=self.variation,
            order_id=self._order_id,
            order_run_id=self._order_run_id,
            order_run_url=self._order_run_url,
            status=self._order_run_status,
        )

    def on_kill(self) -> None:
        """Stop the remote run (or the order, if no run started yet) when Airflow kills the task.

        Airflow calls this from its SIGTERM handler, in the thread it interrupted, and after an
        ``execution_timeout``: the stop never waits on a lock the interrupted code may hold and ends
        within a short budget (``DataKitchenHook.stop_on_kill``).
        """
        if self._done or self._order_id is None:
            return
        self._killed = True
        where = self._describe(self._order_id, self._order_run_id)
        self.log.info("Task killed: stopping %s", where)
        try:
            stopped = self.hook.stop_on_kill(self.kitchen, self._order_id, self._order_run_id)
        except Exception as exc:
            self.log.warning("Could not stop %s: %s", where, exc)
        else:
            self.log.info("%s: %s", where, stopped)


def _listing(orders: list[ListedOrder]) -> str:
    return "; ".join(
        f"'{o.id}' (created {iso_utc(o.created_at) or 'at an unlisted time'} by {o.created_by or 'unlisted'})"
        for o in orders[:10]
    ) + (f"; and {len(orders) - 10} more" if len(orders) > 10 else "")


__all__ = ["ORDER_RUN_SUMMARY_XCOM_KEY", "ORDER_STATE_KEY", "SubmitRecipeOrderOperator"]
