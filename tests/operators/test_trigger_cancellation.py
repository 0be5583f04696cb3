"""A trigger the triggerer cancels (its task cleared or marked, the trigger moved to another triggerer)
stops: it sends no further request and fires no event, even when code it awaited swallowed the
cancellation.

anyio before 4.16, which httpx runs on, loses a ``Task.cancel()`` that lands in the loop iteration in
which one of its own cancel scopes fires (agronholm/anyio#1214; every httpx connect opens one). The
request then returns normally. Airflow 3.0 to 3.3 shipped with such an anyio; on Airflow 3.1 a cancelled
asset watcher was seen polling on for minutes. No sandbox can make the client library swallow a
cancellation, so here ``httpx.AsyncClient.send`` (or the watcher's state store) does it the way anyio
does: it catches the ``CancelledError`` and carries on.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.triggers.base import BaseTrigger

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox
    from airflow_provider_orders.triggers.datakitchen import FinishedOrderRunsTrigger

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Python 3.10's asyncio does not count a task's cancellations"
)

K, R = "demo-kitchen", "demo-recipe"
DEADLINE = 30.0


class Swallower:
    """Once armed, the next call it wraps waits, and a cancellation arriving then is swallowed."""

    def __init__(self) -> None:
        self.armed = False
        self.waiting: asyncio.Event | None = None
        self.swallowed = 0

    async def swallow_a_cancellation(self) -> None:
        if not self.armed:
            return
        self.armed = False
        assert self.waiting is not None
        self.waiting.set()
        try:
            await asyncio.sleep(DEADLINE)
        except asyncio.CancelledError:
            self.swallowed += 1  # and carry on, as anyio < 4.16's cancel scope does


def _swallowing_http(monkeypatch: pytest.MonkeyPatch, swallower: Swallower) -> None:
    import httpx

    send = httpx.AsyncClient.send

    async def swallowing_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        response = await send(self, request, **kwargs)
        await swallower.swallow_a_cancellation()
        return response

    monkeypatch.setattr(httpx.AsyncClient, "send", swallowing_send)


def _assert_stops_when_cancelled_mid_request(
    trigger: BaseTrigger, swallower: Swallower, requests: Callable[[], int], what: str
) -> None:
    """Run ``trigger``; once it is inside the call the swallower holds, cancel it as the triggerer does.
    It must end as cancelled, the swallower having swallowed that cancellation, with no event (``what``
    says which one it would be) and no request sent after the cancel."""

    async def scenario() -> tuple[list[dict[str, Any]], int, int]:
        events: list[dict[str, Any]] = []

        async def collect() -> None:
            async for event in trigger.run():
                events.append(event.payload)

        swallower.waiting = asyncio.Event()
        swallower.armed = True
        task = asyncio.create_task(collect())
        await asyncio.wait_for(swallower.waiting.wait(), DEADLINE)
        at_cancel = requests()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=DEADLINE)
        if not done:
            polled_on = requests() - at_cancel
            task.cancel()
            raise AssertionError(
                f"the cancelled trigger went on: {polled_on} more request(s), events {events}"
            )
        assert task.cancelled(), "the trigger ended, but not as cancelled"
        return events, at_cancel, requests()

    events, at_cancel, at_end = asyncio.run(scenario())
    assert swallower.swallowed == 1
    assert events == [], f"the cancelled trigger {what}"
    assert at_end == at_cancel, "a request was sent after the cancel"


def _slow_order_run_wait() -> BaseTrigger:
    """A DataKitchen run wait on an order whose run is still going (nothing to stop on kill)."""
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    return OrderRunTrigger(
        datakitchen_conn_id="datakitchen_default",
        kitchen=K,
        order_id=DataKitchenHook().create_order(K, R, "slow")["order_id"],
        poll_interval=0.1,
        stop_on_kill=False,
    )


def _kitchen_watcher() -> FinishedOrderRunsTrigger:
    from airflow_provider_orders.triggers.datakitchen import FinishedOrderRunsTrigger

    return FinishedOrderRunsTrigger(datakitchen_conn_id="datakitchen_default", kitchen=K, poll_interval=0.1)


def test_a_cancelled_order_run_wait_stops_even_if_the_http_client_swallowed_the_cancel(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dk = datakitchen_sandbox
    trigger = _slow_order_run_wait()
    swallower = Swallower()
    _swallowing_http(monkeypatch, swallower)

    _assert_stops_when_cancelled_mid_request(trigger, swallower, lambda: len(dk.requests), "fired")


def test_a_cancelled_asset_watcher_stops_even_if_the_http_client_swallowed_the_cancel(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dk = datakitchen_sandbox
    swallower = Swallower()
    _swallowing_http(monkeypatch, swallower)

    _assert_stops_when_cancelled_mid_request(_kitchen_watcher(), swallower, lambda: len(dk.requests), "fired")


def test_a_cancelled_asset_watcher_stops_even_if_its_state_store_swallowed_the_cancel(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    """The watermark store (Airflow's, over the supervisor channel) is awaited outside any request:
    the watcher's own loop notices the swallowed cancellation."""
    dk = datakitchen_sandbox
    swallower = Swallower()

    class SwallowingStore:
        def __init__(self) -> None:
            self.values: dict[str, Any] = {}

        async def aget(self, key: str, default: Any = None) -> Any:
            return self.values.get(key, default)

        async def aset(self, key: str, value: Any) -> None:
            await swallower.swallow_a_cancellation()
            self.values[key] = value

    watcher = _kitchen_watcher()
    watcher.asset_state_store = SwallowingStore()  # type: ignore[assignment]  # what the triggerer does on 3.3

    _assert_stops_when_cancelled_mid_request(watcher, swallower, lambda: len(dk.requests), "fired")


def test_a_cancelled_ezcater_wait_stops_even_if_the_http_client_swallowed_the_cancel(
    ezcater_sandbox: EzCaterSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger

    ez = ezcater_sandbox
    order_id = ez.add_order(state="draft", transitions=[("submitted", 0.3)])
    swallower = Swallower()
    _swallowing_http(monkeypatch, swallower)
    trigger = OrderLifecycleTrigger(
        ezcater_conn_id="ezcater_default",
        order_id=order_id,
        target_states=("submitted",),
        poll_interval=0.1,
    )

    _assert_stops_when_cancelled_mid_request(
        trigger, swallower, lambda: len(ez.requests), "fired once the order was submitted"
    )


def test_a_cancelled_order_run_wait_sends_no_error_event_when_the_cancel_came_back_as_an_error(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Awaited code that turns the cancellation into an error (outside any request) must not make the
    cancelled wait report that error as its outcome."""
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    dk = datakitchen_sandbox
    trigger = _slow_order_run_wait()
    swallower = Swallower()
    read_runs = DataKitchenHook.aget_order_runs

    async def read_then_fail_on_cancel(self: DataKitchenHook, *args: Any, **kwargs: Any) -> Any:
        runs = await read_runs(self, *args, **kwargs)
        await swallower.swallow_a_cancellation()
        if swallower.swallowed:
            raise RuntimeError("the cancellation came back as this error")
        return runs

    monkeypatch.setattr(DataKitchenHook, "aget_order_runs", read_then_fail_on_cancel)

    _assert_stops_when_cancelled_mid_request(
        trigger, swallower, lambda: len(dk.requests), "reported an error event"
    )
