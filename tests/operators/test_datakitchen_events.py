"""The DataKitchen asset watcher's trigger on its own, as the triggerer runs it: one event per finished
run whoever started it, filters and statuses, the watermark stored and honoured through an
``asset_state_store``-like object, and a restart that neither repeats nor loses a run.

Each test drives ``FinishedOrderRunsTrigger.run()`` in an asyncio loop against the DataKitchen sandbox.
"Nothing more fired" is checked after the trigger has listed the kitchen again (the sandbox's request
log), never after a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_orders.triggers.datakitchen import (
    WATERMARK_KEY,
    WATERMARK_OVERLAP_SECONDS,
    FinishedOrderRunsTrigger,
    Watermark,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_orders.sandbox import DataKitchenSandbox

K, R = "demo-kitchen", "demo-recipe"
DEADLINE = 30.0
FIELDS = {"kitchen", "order_id", "order_run_id", "recipe", "variation", "status", "finished_at"}


class FakeStateStore:
    """What the triggerer hands a watcher on Airflow 3.3 (``aget`` / ``aset`` of JSON values), in memory;
    values are copied through JSON as the real store does."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0
        self.fail_writes = False

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        if self.fail_writes:
            raise RuntimeError("state store unavailable")
        assert value is not None
        self.values[key] = json.loads(json.dumps(value))
        self.writes += 1


class Watch:
    """A trigger running in the test's loop; its payloads in ``events``."""

    def __init__(self, trigger: FinishedOrderRunsTrigger, dk: DataKitchenSandbox) -> None:
        self.trigger = trigger
        self.dk = dk
        self.events: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    async def _collect(self) -> None:
        async for event in self.trigger.run():
            self.events.append(event.payload)

    async def __aenter__(self) -> Watch:
        self.task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()  # as the triggerer does
        done, _ = await asyncio.wait({self.task}, timeout=DEADLINE)
        if not done:
            raise AssertionError(f"the watcher went on after it was cancelled; events: {self.events}")
        with contextlib.suppress(asyncio.CancelledError):
            self.task.result()

    async def until(self, what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.task is not None
            if self.task.done():
                self.task.result()
                raise AssertionError(f"the trigger ended while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events: {self.events}")
            await asyncio.sleep(0.02)

    async def fired(self, count: int) -> list[dict[str, Any]]:
        await self.until(f"{count} event(s)", lambda: len(self.events) >= count)
        return self.events

    async def listings(self, more: int = 2) -> None:
        """Wait until the trigger listed the kitchen ``more`` more times (so the previous listing's
        events have all been yielded)."""
        target = self.dk.count("order_status") + more
        await self.until(f"{more} more listings", lambda: self.dk.count("order_status") >= target)


def _trigger(**kwargs: Any) -> FinishedOrderRunsTrigger:
    from airflow_versions import import_string

    options: dict[str, Any] = {
        "datakitchen_conn_id": "datakitchen_default",
        "kitchen": K,
        "poll_interval": 0.1,
    }
    trigger = FinishedOrderRunsTrigger(**{**options, **kwargs})
    classpath, serialized = trigger.serialize()
    revived = import_string(classpath)(**json.loads(json.dumps(serialized)))
    assert revived.serialize() == (classpath, serialized)
    return revived


def _create(variation: str, recipe: str = R) -> str:
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    return str(DataKitchenHook().create_order(K, recipe, variation)["order_id"])


def _run_id(dk: DataKitchenSandbox, order_id: str) -> str:
    return dk.orders[order_id].runs[-1].hid


def _wait_finished(dk: DataKitchenSandbox, *order_ids: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not all(dk.orders[o].runs and dk.orders[o].runs[-1].is_terminal(time.time()) for o in order_ids):
        assert time.monotonic() < deadline, f"orders {order_ids} did not finish"
        time.sleep(0.02)


@pytest.fixture
def dk(datakitchen_sandbox: DataKitchenSandbox) -> DataKitchenSandbox:
    return datakitchen_sandbox


def test_one_event_per_finished_run_whoever_started_it_and_no_history(dk: DataKitchenSandbox) -> None:
    before = _create("success")
    _wait_finished(dk, before)

    async def scenario() -> list[dict[str, Any]]:
        async with Watch(_trigger(recipe=R), dk) as watch:
            await watch.listings()
            assert watch.events == []  # a run that finished before the watcher started is history
            mine = _create("success")
            scheduled = dk.start_scheduled_order(K, R, "success")  # DataKitchen's scheduler started it
            failed = _create("fails")  # not COMPLETED_SERVING: no event by default
            _wait_finished(dk, mine, scheduled, failed)
            events = await watch.fired(2)
            await watch.listings()
            assert len(watch.events) == 2, "each finished run fires exactly once"
            assert {e["order_id"] for e in events} == {mine, scheduled}
            return events

    events = asyncio.run(scenario())
    for event in events:
        assert set(event) == FIELDS
        assert event["kitchen"] == K
        assert event["recipe"] == R
        assert event["variation"] == "success"
        assert event["status"] == "COMPLETED_SERVING"
        assert event["order_run_id"] == _run_id(dk, event["order_id"])
        assert event["finished_at"].endswith("+00:00")
    assert [e["finished_at"] for e in events] == sorted(e["finished_at"] for e in events)


def test_filters_and_statuses(dk: DataKitchenSandbox) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        only_success = Watch(_trigger(variation="success"), dk)
        failures = Watch(_trigger(statuses=["serving_error", "STOPPED_SERVING"]), dk)
        other_recipe = Watch(_trigger(recipe="no-such-recipe"), dk)
        async with only_success, failures, other_recipe:
            await only_success.listings()
            orders = {v: _create(v) for v in ("success", "fails", "stopped", "slow")}
            _wait_finished(dk, orders["success"], orders["fails"], orders["stopped"])
            await only_success.fired(1)
            await failures.fired(2)
            await failures.listings()
            return only_success.events, failures.events, other_recipe.events

    success, failures, other = asyncio.run(scenario())
    assert [(e["variation"], e["status"]) for e in success] == [("success", "COMPLETED_SERVING")]
    assert sorted((e["variation"], e["status"]) for e in failures) == [
        ("fails", "SERVING_ERROR"),
        ("stopped", "STOPPED_SERVING"),
    ]
    assert other == []


def test_the_watermark_is_stored_before_each_event_and_a_restart_neither_repeats_nor_loses(
    dk: DataKitchenSandbox,
) -> None:
    store = FakeStateStore()

    def trigger() -> FinishedOrderRunsTrigger:
        watcher = _trigger(variation="success")
        watcher.asset_state_store = store  # type: ignore[assignment]  # what the triggerer does on 3.3
        return watcher

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, str, str]:
        async with Watch(trigger(), dk) as first:
            await first.listings()
            one = _create("success")
            _wait_finished(dk, one)
            await first.fired(1)
            stored = Watermark.from_json(store.values[WATERMARK_KEY])
            assert stored is not None
            assert _run_id(dk, one) in stored.seen
        # The triggerer is down: two runs finish meanwhile.
        two, three = _create("success"), dk.start_scheduled_order(K, R, "success")
        _wait_finished(dk, two, three)
        async with Watch(trigger(), dk) as second:
            await second.fired(2)
            await second.listings()
        return first.events, second.events, one, two, three

    first, second, one, two, three = asyncio.run(scenario())
    assert [e["order_id"] for e in first] == [one]
    assert sorted(e["order_id"] for e in second) == sorted([two, three])  # not `one` again, none lost
    assert len(second) == 2


def test_without_a_store_a_restart_starts_afresh(dk: DataKitchenSandbox) -> None:
    """Airflow 3.0-3.2 (no ``asset_state_store``): the watermark is in memory; a run that finishes while
    the trigger is down is history for the next one. With ``since``, the next one starts there."""

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        async with Watch(_trigger(variation="success"), dk) as first:
            await first.listings()
        down = _create("success")
        _wait_finished(dk, down)
        async with Watch(_trigger(variation="success"), dk) as second:
            await second.listings()
        since = dk.orders[down].created_at - 1
        async with Watch(_trigger(variation="success", since=since), dk) as replay:
            await replay.fired(1)
            await replay.listings()
        return second.events, replay.events, down

    fresh, replay, down = asyncio.run(scenario())
    assert fresh == []
    assert [e["order_id"] for e in replay] == [down]


def test_a_failing_store_write_still_fires_once(dk: DataKitchenSandbox) -> None:
    store = FakeStateStore()
    store.fail_writes = True
    watcher = _trigger(variation="success")
    watcher.asset_state_store = store  # type: ignore[assignment]

    async def scenario() -> list[dict[str, Any]]:
        async with Watch(watcher, dk) as watch:
            await watch.listings()
            order = _create("success")
            _wait_finished(dk, order)
            await watch.fired(1)
            await watch.listings()
            return watch.events

    assert len(asyncio.run(scenario())) == 1


def test_read_errors_are_logged_and_retried_never_an_event(
    dk: DataKitchenSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        async with (
            Watch(_trigger(variation="success"), dk) as flaky,
            Watch(_trigger(kitchen="no-such-kitchen"), dk) as unknown,
        ):
            await flaky.listings()
            dk.inject_fault("order_status", status=503, times=6)
            order = _create("success")
            _wait_finished(dk, order)
            await flaky.fired(1)
            await unknown.listings(3)
            assert unknown.task is not None
            return flaky.events, unknown.events, unknown.task.done()

    flaky, unknown, ended = asyncio.run(scenario())
    assert len(flaky) == 1
    assert unknown == []
    assert not ended, "a permanent error must not end the watcher"
    logged = capsys.readouterr()
    errors = [
        line
        for line in (logged.out + logged.err).splitlines()
        if "error" in line.lower() and "Cannot read" in line and "no-such-kitchen" in line
    ]
    assert errors, "a permanent error is logged as an error"


def test_runs_ending_at_the_same_second_or_listed_late_fire_once() -> None:
    mark = Watermark(1000.0)
    assert mark.is_new("a", 1000.5)
    mark.add("a", 1000.5)
    assert not mark.is_new("a", 1000.5)
    assert mark.is_new("b", 1000.5)  # same end time, other run
    assert mark.is_new("late", 1000.5 - WATERMARK_OVERLAP_SECONDS / 2)  # listed late
    assert not mark.is_new("ancient", 1000.5 - WATERMARK_OVERLAP_SECONDS - 1)
    mark.add("b", 1000.5)
    revived = Watermark.from_json(json.loads(json.dumps(mark.to_json())))
    assert revived == mark
    assert Watermark.from_json(None) is None
    assert Watermark.from_json({"v": 99}) is None
    merged = Watermark.merge([Watermark(5.0, {"x": 5.0}), Watermark(3.0, {"y": 3.0})])
    assert merged == Watermark(3.0, {"x": 5.0, "y": 3.0})


def test_serialization_is_deterministic_and_statuses_are_checked() -> None:
    from airflow.triggers.base import BaseEventTrigger

    a = _trigger(statuses=["STOPPED_SERVING", "serving_error", "SERVING_ERROR"])
    b = _trigger(statuses=("SERVING_ERROR", "STOPPED_SERVING"))
    assert a.serialize() == b.serialize()
    assert BaseEventTrigger.hash(*a.serialize()) == BaseEventTrigger.hash(*b.serialize())
    assert a.serialize()[1]["statuses"] == ["SERVING_ERROR", "STOPPED_SERVING"]
    assert _trigger().serialize()[1]["statuses"] == ["COMPLETED_SERVING"]
    with pytest.raises(ValueError, match="finished order-run statuses"):
        _trigger(statuses=["ACTIVE_SERVING"])
    with pytest.raises(ValueError, match="finished order-run statuses"):
        _trigger(statuses=["DONE"])
