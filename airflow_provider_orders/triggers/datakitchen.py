"""DataKitchen triggers.

:class:`OrderRunTrigger` waits in the triggerer for one order run to end (a deferred task). Reads only
(never submits: a triggerer restart replays ``run()``), with the hook's async client and the async
connection lookup. Yields exactly one :class:`~airflow_provider_orders.triggers.events.WaitEvent`:
``success`` / ``failed`` / ``timeout`` / ``error``, with the fields ``kitchen``, ``order_id``,
``order_run_id``, ``run_status`` and ``run_message`` (DataKitchen's ``orderrun_status`` text).

:class:`FinishedOrderRunsTrigger` is an asset watcher's trigger: it watches a kitchen and yields one
event per order run that finishes, with a watermark in the asset's state store (Airflow 3.3+).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger

from airflow_provider_orders.exceptions import (
    OrderRunFailedError,
    OrdersProviderError,
    PermanentOrdersError,
)
from airflow_provider_orders.models.datakitchen import DEFAULT_FINISHED_STATUSES, describe_order, iso_utc
from airflow_provider_orders.triggers._polling import MIN_POLL_INTERVAL, PollingTrigger
from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome
from airflow_provider_orders.version_compat import AIRFLOW_V_3_3_PLUS, warn_missing_once

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow.triggers.base import TriggerEvent

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
    from airflow_provider_orders.models.datakitchen import ListedRun, OrderRun


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


# ---------------------------------------------------------------------------------- finished runs

#: The key of the watermark in the watched asset's ``asset_state_store`` (Airflow 3.3+).
WATERMARK_KEY = "datakitchen_finished_runs"
#: Version of the stored watermark's shape.
_WATERMARK_VERSION = 1
#: Runs that finish up to this many seconds before the watermark are still checked against the ids it
#: remembers: a run listed a little late, or stamped by a DataKitchen clock behind ours, still fires once.
WATERMARK_OVERLAP_SECONDS = 600.0
#: At most this many run ids are remembered (oldest dropped first).
WATERMARK_MAX_IDS = 2000
#: Defaults of :class:`FinishedOrderRunsTrigger`.
DEFAULT_LOOKBACK_MINUTES = 24 * 60
DEFAULT_SERVINGS_PER_ORDER = 10


def normalize_statuses(statuses: str | Iterable[str] | None) -> list[str]:
    """Order-run statuses as the trigger stores them: upper case, sorted, each once; refuses unknown
    and non-terminal ones (a watcher fires when a run *finishes*)."""
    from airflow_provider_orders.models.datakitchen import OrderRunStatus

    given = [statuses] if isinstance(statuses, str) else list(statuses or DEFAULT_FINISHED_STATUSES)
    parsed: set[str] = set()
    for value in given:
        status = OrderRunStatus.parse(value)
        if status is None or not status.is_terminal:
            terminal = sorted(s.value for s in OrderRunStatus if s.is_terminal)
            raise ValueError(
                f"statuses must be finished order-run statuses ({', '.join(terminal)}), got {value!r}"
            )
        parsed.add(status.value)
    return sorted(parsed)


@dataclass
class Watermark:
    """What a :class:`FinishedOrderRunsTrigger` has already fired for.

    ``finished_at`` is the newest end time (epoch seconds) fired or skipped; ``seen`` maps the ids of the
    runs that ended within :data:`WATERMARK_OVERLAP_SECONDS` before it to their end times. A run fires
    when it ended after ``finished_at - overlap`` and its id is not in ``seen``: runs that ended at the
    same second, or were listed late, neither repeat nor get lost.
    """

    finished_at: float
    seen: dict[str, float] = field(default_factory=dict)

    def is_new(self, run_id: str, finished_at: float) -> bool:
        return finished_at > self.finished_at - WATERMARK_OVERLAP_SECONDS and run_id not in self.seen

    def add(self, run_id: str, finished_at: float) -> None:
        self.finished_at = max(self.finished_at, finished_at)
        self.seen[run_id] = finished_at
        self.prune()

    def prune(self) -> None:
        """Forget the ids that ended more than the overlap before the watermark (and the oldest beyond
        :data:`WATERMARK_MAX_IDS`)."""
        floor = self.finished_at - WATERMARK_OVERLAP_SECONDS
        kept = sorted(((t, i) for i, t in self.seen.items() if t > floor), reverse=True)
        self.seen = {i: t for t, i in kept[:WATERMARK_MAX_IDS]}

    def to_json(self) -> dict[str, Any]:
        return {"v": _WATERMARK_VERSION, "finished_at": self.finished_at, "seen": dict(self.seen)}

    @classmethod
    def from_json(cls, value: Any) -> Watermark | None:
        """The stored watermark; None for nothing stored or a shape this version cannot read."""
        if not isinstance(value, Mapping) or not isinstance(value.get("finished_at"), (int, float)):
            return None
        seen = value.get("seen")
        ids = {
            str(k): float(v)
            for k, v in (seen.items() if isinstance(seen, Mapping) else ())
            if isinstance(v, (int, float))
        }
        return cls(float(value["finished_at"]), ids)

    @classmethod
    def merge(cls, marks: Iterable[Watermark]) -> Watermark | None:
        """Several assets watched by one trigger: the oldest watermark, with every remembered id."""
        marks = list(marks)
        if not marks:
            return None
        merged = cls(min(m.finished_at for m in marks))
        for mark in marks:
            merged.seen.update(mark.seen)
        return merged


class FinishedOrderRunsTrigger(BaseEventTrigger):
    """An asset watcher's trigger: one event per DataKitchen order run that finishes in a kitchen.

    Use it through :func:`airflow_provider_orders.assets.datakitchen_order_runs_asset`. Every
    ``poll_interval`` seconds it lists the kitchen's orders (``GET /v2/order/status/{kitchen}``, created
    within ``lookback_minutes``, up to ``servings_per_order`` runs each), keeps the runs of ``recipe`` /
    ``variation`` (when given) whose status is one of ``statuses`` and that it has not fired for, and
    yields one event per run, oldest end first, whoever started the run (an Airflow task, DataKitchen's
    scheduler, a person in the UI). The payload, which Airflow stores as the asset event's
    ``extra["payload"]``::

        {"kitchen", "order_id", "order_run_id", "recipe", "variation", "status", "finished_at"}

    (``status`` the run's status, e.g. ``COMPLETED_SERVING``; ``finished_at`` ISO 8601 UTC.)

    **Watermark.** On Airflow 3.3+ the triggerer gives the trigger its asset's ``asset_state_store``; the
    trigger reads its :class:`Watermark` from there when it starts and writes it before yielding each
    event, so a triggerer restart (or a move to another triggerer) resumes where it stopped: runs that
    finished while no triggerer ran fire after the restart, and none fires twice. Without a store
    (Airflow 3.0-3.2, or the trigger run by hand) the watermark lives in memory only: each (re)start
    begins afresh as below, so runs that finish while the trigger is down are not fired.

    **First start** (no stored watermark): from ``since`` (epoch seconds) when given, else from now:
    runs that had already finished are history and do not fire.

    **Errors.** The trigger never yields an error event (that would be an asset event and run the DAG):
    a failed read is logged and retried at the next poll: a transient one (the hook already retried it)
    as a warning, a permanent one (bad credentials, unknown kitchen, missing connection) as an error,
    every poll, until it is fixed. The trigger never ends by itself.

    :param datakitchen_conn_id: connection of type ``datakitchen``.
    :param kitchen: the kitchen to watch.
    :param recipe: only runs of this recipe (None: any).
    :param variation: only runs of this variation (None: any).
    :param statuses: the finished statuses that fire (default ``["COMPLETED_SERVING"]``); any of
        ``COMPLETED_SERVING``, ``SERVING_ERROR``, ``STOPPED_SERVING``, ``SERVING_RERAN``.
    :param poll_interval: seconds between two listings.
    :param since: on the very first start only, fire for runs that finished after this epoch time.
    :param lookback_minutes: how far back the listing reaches (orders created within it); a run of an
        older order is not seen. Keep it longer than the longest run plus any triggerer downtime.
    :param servings_per_order: runs listed per order (a resumed order has several).
    """

    def __init__(
        self,
        *,
        datakitchen_conn_id: str,
        kitchen: str,
        recipe: str | None = None,
        variation: str | None = None,
        statuses: Iterable[str] | None = None,
        poll_interval: float = 60.0,
        since: float | None = None,
        lookback_minutes: int = DEFAULT_LOOKBACK_MINUTES,
        servings_per_order: int = DEFAULT_SERVINGS_PER_ORDER,
    ) -> None:
        super().__init__()
        if not kitchen:
            raise ValueError("FinishedOrderRunsTrigger needs a kitchen")
        self.datakitchen_conn_id = datakitchen_conn_id
        self.kitchen = kitchen
        self.recipe = recipe or None
        self.variation = variation or None
        self.statuses = normalize_statuses(statuses)
        self.poll_interval = max(float(poll_interval), MIN_POLL_INTERVAL)
        self.since = float(since) if since is not None else None
        self.lookback_minutes = max(int(lookback_minutes), 1)
        self.servings_per_order = max(int(servings_per_order), 1)
        self._hook: DataKitchenHook | None = None
        self._mark: Watermark | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # Deterministic: Airflow de-duplicates asset watchers by classpath + these kwargs.
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "datakitchen_conn_id": self.datakitchen_conn_id,
                "kitchen": self.kitchen,
                "recipe": self.recipe,
                "variation": self.variation,
                "statuses": list(self.statuses),
                "poll_interval": self.poll_interval,
                "since": self.since,
                "lookback_minutes": self.lookback_minutes,
                "servings_per_order": self.servings_per_order,
            },
        )

    @property
    def hook(self) -> DataKitchenHook:
        if self._hook is None:
            from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

            self._hook = DataKitchenHook(datakitchen_conn_id=self.datakitchen_conn_id)
        return self._hook

    def describe(self) -> str:
        what = [f"kitchen '{self.kitchen}'"]
        if self.recipe:
            what.append(f"recipe '{self.recipe}'")
        if self.variation:
            what.append(f"variation '{self.variation}'")
        return f"order runs ending {'/'.join(self.statuses)} in {', '.join(what)}"

    # ------------------------------------------------------------------ the watermark's store

    def _store(self) -> Any:
        """The triggerer's ``asset_state_store`` (Airflow 3.3+); None before, said once per process."""
        store = getattr(self, "asset_state_store", None)
        if store is None and not AIRFLOW_V_3_3_PLUS:
            warn_missing_once("asset_state_store", self.log, self.describe())
        return store

    def _accessors(self) -> list[Any]:
        """The per-asset accessors of ``asset_state_store``: usually one; several when one trigger
        watches several assets (same kwargs), in which case each gets the watermark."""
        store = self._store()
        if store is None:
            return []
        by_name = getattr(store, "_by_name", None)
        by_uri = getattr(store, "_by_uri", None)
        if isinstance(by_name, dict) and isinstance(by_uri, dict):
            return [*by_name.values(), *by_uri.values()]
        return [store]

    async def _load(self) -> Watermark | None:
        """The stored watermark (None: nothing stored, or no store). Raises when the store fails."""
        marks = []
        for accessor in self._accessors():
            mark = Watermark.from_json(await accessor.aget(WATERMARK_KEY))
            if mark is not None:
                marks.append(mark)
        return Watermark.merge(marks)

    async def _save(self, mark: Watermark) -> None:
        value = mark.to_json()
        for accessor in self._accessors():
            try:
                await accessor.aset(WATERMARK_KEY, value)
            except Exception as exc:
                # The in-memory watermark still holds in this process; a restart may repeat this run.
                self.log.warning("Could not store the watermark of %s: %s", self.describe(), exc)

    # ------------------------------------------------------------------ reading DataKitchen

    def _matches(self, run: ListedRun) -> bool:
        return (
            run.status is not None
            and run.status.value in self.statuses
            and (self.recipe is None or run.recipe == self.recipe)
            and (self.variation is None or run.variation == self.variation)
        )

    async def _finished_runs(self) -> list[tuple[float, ListedRun]]:
        """The kitchen's runs that match, with their end times, oldest end first."""
        from airflow_provider_orders.models.datakitchen import listed_runs

        body = await self.hook.alist_orders(
            self.kitchen,
            recipe=self.recipe,
            variation=self.variation,
            time_period_minutes=self.lookback_minutes,
            servings_count=self.servings_per_order,
        )
        found = []
        for run in listed_runs(body):
            if not self._matches(run):
                continue
            ended = run.finished_at if run.finished_at is not None else run.started_at
            if ended is not None:
                found.append((float(ended), run))
        return sorted(found, key=lambda item: (item[0], item[1].id))

    def payload(self, run: ListedRun, finished_at: float) -> dict[str, Any]:
        return {
            "kitchen": self.kitchen,
            "order_id": run.order_id,
            "order_run_id": run.id,
            "recipe": run.recipe,
            "variation": run.variation,
            "status": run.status.value if run.status else run.status_text,
            "finished_at": iso_utc(finished_at),
        }

    async def _start(self, started: float, runs: list[tuple[float, ListedRun]]) -> Watermark:
        """The watermark to begin with: the stored one; else ``since`` (or ``started``) with the runs of
        the first listing (``runs``) that had finished by then remembered as history."""
        stored = await self._load()
        if stored is not None:
            self.log.info("Resuming from the stored watermark (%s)", iso_utc(stored.finished_at))
            return stored
        base = self.since if self.since is not None else started
        mark = Watermark(base, {run.id: ended for ended, run in runs if ended <= base})
        mark.prune()
        self.log.info(
            "No stored watermark: firing for runs that finish after %s (%d earlier one(s) are history)",
            iso_utc(base),
            len(mark.seen),
        )
        return mark

    def _log_failure(self, exc: Exception) -> None:
        from airflow.providers.common.compat.sdk import AirflowNotFoundException

        if isinstance(exc, PermanentOrdersError | AirflowNotFoundException):
            self.log.error(
                "Cannot read %s (retrying every %g s): %s", self.describe(), self.poll_interval, exc
            )
        elif isinstance(exc, OrdersProviderError):
            self.log.warning("Reading %s failed; retrying at the next poll: %s", self.describe(), exc)
        else:
            self.log.exception("Reading %s failed; retrying at the next poll", self.describe())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.triggers.base import TriggerEvent

        from airflow_provider_orders.hooks._http import (  # not at DAG parse time
            pending_cancellations,
            reraise_swallowed_cancellation,
        )

        started = time.time()
        cancellations = pending_cancellations()
        self.log.info(
            "Watching %s every %g s (watermark %s)",
            self.describe(),
            self.poll_interval,
            "in the asset's state store" if self._store() is not None else "in memory only",
        )
        while True:
            try:
                runs = await self._finished_runs()
                if self._mark is None:
                    self._mark = await self._start(started, runs)
                    await self._save(self._mark)
            except Exception as exc:
                reraise_swallowed_cancellation(cancellations)
                self._log_failure(exc)
                await asyncio.sleep(self.poll_interval)
                continue
            # A cancelled watcher never polls on nor fires, even if a library swallowed the cancel.
            reraise_swallowed_cancellation(cancellations)
            mark = self._mark
            for ended, run in runs:
                if not mark.is_new(run.id, ended):
                    continue
                mark.add(run.id, ended)
                # Stored before the event is handed over: a restart never fires a run twice.
                await self._save(mark)
                self.log.info("Order run %s of %s finished: %s", run.id, self.describe(), run.status_text)
                yield TriggerEvent(self.payload(run, ended))
            await asyncio.sleep(self.poll_interval)


__all__ = ["FinishedOrderRunsTrigger", "OrderRunTrigger", "Watermark", "normalize_statuses"]
