"""The triggers on their own, as the triggerer runs them: serialize round trip, exactly one event per
outcome (against the sandboxes), and on_kill stopping the DataKitchen run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

K, R = "demo-kitchen", "demo-recipe"


def _events(trigger: BaseTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout=60))


def _roundtrip(trigger: BaseTrigger) -> BaseTrigger:
    from airflow_versions import import_string

    classpath, kwargs = trigger.serialize()
    revived = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert revived.serialize() == (classpath, kwargs)
    return revived


def _new_order(dk: DataKitchenSandbox, variation: str) -> str:
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    return DataKitchenHook().create_order(K, R, variation)["order_id"]


def test_order_run_trigger_one_event_per_outcome(datakitchen_sandbox: DataKitchenSandbox) -> None:
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    dk = datakitchen_sandbox
    ok, failed, slow = (_new_order(dk, v) for v in ("success", "fails", "slow"))

    def trigger(order_id: str, **kwargs: Any) -> BaseTrigger:
        return _roundtrip(
            OrderRunTrigger(
                datakitchen_conn_id="datakitchen_default",
                kitchen=K,
                order_id=order_id,
                poll_interval=0.1,
                recipe=R,
                **kwargs,
            )
        )

    (success,) = _events(trigger(ok))
    assert success["outcome"] == "success"
    assert success["run_status"] == "COMPLETED_SERVING"
    assert success["order_run_id"] == dk.orders[ok].runs[0].hid

    (failure,) = _events(trigger(failed, variation="fails"))
    assert failure["outcome"] == "failed"
    assert failure["run_status"] == "SERVING_ERROR"
    assert failure["run_message"] == dk.orders[failed].runs[0].orderrun_status()
    assert f"order '{failed}'" in failure["message"]
    assert "variation 'fails'" in failure["message"]

    (timeout,) = _events(trigger(slow, end_time=time.time() + 1.0))
    assert timeout["outcome"] == "timeout"
    assert timeout["run_status"] in ("PLANNED_SERVING", "ACTIVE_SERVING")
    assert dk.orders[slow].runs[0].status() != "STOPPED_SERVING"  # a timeout event stops nothing itself

    (error,) = _events(trigger(str(uuid.uuid4())))
    assert error["outcome"] == "error"
    assert error["permanent"] is True
    assert K in error["message"]
    assert dk.count(route="create_order") == 3  # the trigger never submits


def _run_then_kill(dk: DataKitchenSandbox, trigger: BaseTrigger) -> float:
    """Run the trigger until it polls the run by id, cancel it as the triggerer does on a user kill, then
    call on_kill (under the triggerer's own 30 s bound); the seconds on_kill took."""

    async def run_then_kill() -> float:
        from airflow_provider_orders.hooks._http import aclose_shared_async_clients

        task = asyncio.ensure_future(anext(trigger.run(), None))
        deadline = time.monotonic() + 10
        while dk.count(route="details") < 1:  # the trigger found the run and polls it by id
            assert time.monotonic() < deadline, "the trigger never polled"
            await asyncio.sleep(0.05)
        task.cancel()  # what the triggerer does when the user marks the deferred task failed
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        await asyncio.wait_for(trigger.on_kill(), 30)
        seconds = time.monotonic() - started
        await aclose_shared_async_clients()
        return seconds

    return asyncio.run(run_then_kill())


def _no_sync_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every sync stop of the hook fail the test: on_kill must stop through the async path."""
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    def sync_stop(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the trigger stopped through the sync hook (a thread with the full budget)")

    for name in ("stop_run_or_order", "stop_on_kill", "stop_order_run", "stop_order"):
        monkeypatch.setattr(DataKitchenHook, name, sync_stop)


def test_order_run_trigger_on_kill_stops_the_run(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    dk = datakitchen_sandbox
    order_id = _new_order(dk, "slow")
    trigger = OrderRunTrigger(
        datakitchen_conn_id="datakitchen_default", kitchen=K, order_id=order_id, poll_interval=0.1
    )
    _no_sync_stop(monkeypatch)

    _run_then_kill(dk, trigger)

    (run,) = dk.orders[order_id].runs
    assert run.status() == "STOPPED_SERVING"
    (stop,) = [r for r in dk.requests if r.route == "stop_run"]
    assert json.loads(stop.body)["serving_hid"] == run.hid


def test_order_run_trigger_on_kill_ends_within_its_budget_when_datakitchen_hangs(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    dk = datakitchen_sandbox
    order_id = _new_order(dk, "slow")
    trigger = OrderRunTrigger(
        datakitchen_conn_id="datakitchen_default", kitchen=K, order_id=order_id, poll_interval=0.1
    )
    monkeypatch.setattr(OrderRunTrigger, "ON_KILL_STOP_BUDGET", 2.0)
    dk.inject_fault("stop_run", times=10, delay=120)  # the connection's timeout: 60 s, 5 retries

    seconds = _run_then_kill(dk, trigger)  # logs the failure, raises nothing

    assert seconds < 10.0
    assert OrderRunTrigger.ON_KILL_STOP_BUDGET + 2 < 30  # the default one fits the triggerer's 30 s too
    assert dk.orders[order_id].runs[0].status() != "STOPPED_SERVING"


def test_a_watching_trigger_stops_nothing_on_kill(datakitchen_sandbox: DataKitchenSandbox) -> None:
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    dk = datakitchen_sandbox
    order_id = _new_order(dk, "slow")
    trigger = _roundtrip(
        OrderRunTrigger(
            datakitchen_conn_id="datakitchen_default",
            kitchen=K,
            order_id=order_id,
            poll_interval=0.1,
            stop_on_kill=False,
        )
    )
    assert trigger.serialize()[1]["stop_on_kill"] is False

    _run_then_kill(dk, trigger)

    assert dk.orders[order_id].runs[0].status() != "STOPPED_SERVING"
    assert dk.count(route="stop_run") == dk.count(route="stop_order") == 0


def test_stop_on_kill_is_serialized_and_an_older_payload_means_true() -> None:
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    trigger = OrderRunTrigger(datakitchen_conn_id="dk", kitchen=K, order_id="o")
    _, kwargs = _roundtrip(trigger).serialize()
    assert kwargs["stop_on_kill"] is True
    older = {k: v for k, v in kwargs.items() if k != "stop_on_kill"}  # serialized before the flag
    assert OrderRunTrigger(**older).stop_on_kill is True


def test_the_run_sensor_defers_with_a_trigger_that_does_not_stop_the_run() -> None:
    from airflow_provider_orders.sensors.datakitchen import RecipeOrderRunSensor

    sensor = RecipeOrderRunSensor(task_id="watch", kitchen=K, order_id="o")
    sensor._resolved_order_id = "o"
    trigger = sensor.make_trigger(time.time() + 60)

    assert trigger.stop_on_kill is False
    assert trigger.serialize()[1]["stop_on_kill"] is False


def test_order_lifecycle_trigger_one_event_per_outcome(ezcater_sandbox: EzCaterSandbox) -> None:
    from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger

    ez = ezcater_sandbox

    def trigger(order_id: str, **kwargs: Any) -> BaseTrigger:
        return _roundtrip(
            OrderLifecycleTrigger(
                ezcater_conn_id="ezcater_default",
                order_id=order_id,
                target_states=("Submitted",),
                failure_states=["rejected", "cancelled"],
                poll_interval=0.1,
                **kwargs,
            )
        )

    soon = ez.add_order(state="draft", transitions=[("submitted", 0.3)])
    (success,) = _events(trigger(soon))
    assert (success["outcome"], success["order_state"], success["order_id"]) == ("success", "submitted", soon)

    cancelled = ez.add_order(state="cancelled")
    (failure,) = _events(trigger(cancelled))
    assert (failure["outcome"], failure["order_state"]) == ("failed", "cancelled")

    never = ez.add_order(state="draft")
    (timeout,) = _events(trigger(never, end_time=time.time() + 0.5))
    assert (timeout["outcome"], timeout["order_state"]) == ("timeout", "draft")

    (error,) = _events(trigger(str(uuid.uuid4())))
    assert error["outcome"] == "error"
    assert error["permanent"] is True
    assert "Couldn't find Order" in error["message"]
    assert ez.count(route="acceptOrder") == ez.count(route="rejectOrder") == 0


def test_an_event_in_the_0_1_shape_still_resumes_its_task() -> None:
    """A trigger that fired before an upgrade left its payload (0.1 keys) in the metadata DB: the new
    code must read it the same way, or the resumed task would fail on a success."""
    from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome

    legacy = {
        "status": "failed",
        "message": "order 'o' ended with status SERVING_ERROR: disk full",
        "kitchen": K,
        "order_id": "o",
        "order_run_id": "r",
        "order_run_status": "SERVING_ERROR",
        "orderrun_status": "disk full",
    }
    event = WaitEvent.from_payload(legacy)
    assert event.outcome is WaitOutcome.FAILED
    assert (event.get("run_status"), event.get("run_message"), event.get("order_run_id")) == (
        "SERVING_ERROR",
        "disk full",
        "r",
    )
    assert WaitEvent.from_payload(event.payload()) == event

    error = WaitEvent.from_payload({"status": "error", "message": "boom", "permanent": True})
    assert error.outcome is WaitOutcome.ERROR
    assert error.error().__class__.__name__ == "PermanentOrdersError"
    assert str(error.error()) == "boom"
