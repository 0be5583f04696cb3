"""The async request gates: one per (event loop, service, host), with a bounded wait.

A triggerer's loop runs the triggers of both APIs. A hung DataKitchen (60 s timeouts x retries) must
hold only DataKitchen's slots, and a request that cannot get a slot within its timeout fails as a
retryable error, as a request timeout would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import pytest
from hook_test_support import run_async

from airflow_provider_orders.exceptions import TransientOrdersError
from airflow_provider_orders.hooks._http import (
    ASYNC_MAX_CONNECTIONS,
    ASYNC_MAX_IN_FLIGHT,
    RequestGateTimeout,
    _loop_state,
    async_request_gate,
    request_gate,
    url_host,
)
from airflow_provider_orders.hooks._retry import RetryableError
from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
from airflow_provider_orders.hooks.ezcater import EzCaterHook

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

KITCHEN, RECIPE = "demo-kitchen", "demo-recipe"


def test_url_host_is_the_gate_key_of_a_base_url() -> None:
    assert url_host("https://API.ezcater.com/graphql") == "api.ezcater.com"
    assert url_host("http://127.0.0.1:8123") == "127.0.0.1:8123"
    assert url_host("https://user:pw@dk.example.com:8443/v2") == "dk.example.com:8443"


def test_a_full_gate_holds_only_its_own_service_and_host_and_its_wait_is_bounded() -> None:
    async def scenario() -> tuple[RequestGateTimeout, int, int]:
        gate = request_gate("datakitchen", "dk.example.com")
        held = [gate(None) for _ in range(ASYNC_MAX_IN_FLIGHT)]
        for slot in held:
            await slot.__aenter__()
        with pytest.raises(RequestGateTimeout) as info:
            async with async_request_gate("datakitchen", "dk.example.com", wait=0.1):
                pass
        async with async_request_gate("ezcater", "dk.example.com", wait=0.1):
            pass  # another service
        async with async_request_gate("datakitchen", "dk2.example.com", wait=0.1):
            pass  # another host
        in_flight = gate.in_flight
        for slot in held:
            await slot.__aexit__(None, None, None)
        async with async_request_gate("datakitchen", "dk.example.com", wait=0.1):
            pass  # free again
        return info.value, in_flight, gate.in_flight

    error, in_flight, after = run_async(scenario)

    assert isinstance(error, RetryableError)  # the hooks' retry policy retries it
    assert "DataKitchen at dk.example.com" in str(error)
    assert f"{ASYNC_MAX_IN_FLIGHT} request(s) already in flight" in str(error)
    assert "was not sent" in str(error)
    assert (in_flight, after) == (ASYNC_MAX_IN_FLIGHT, 0)


@pytest.mark.datakitchen_sandbox(conn_extra={"timeout": 0.2, "max_retries": 1})
def test_a_hook_request_that_waits_too_long_for_a_slot_is_retried_then_transient(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    order_id = DataKitchenHook().create_order(KITCHEN, RECIPE, "success")["order_id"]
    dk.clear_requests()

    async def scenario() -> TransientOrdersError:
        gate = request_gate("datakitchen", url_host(dk.url))
        held = [gate(None) for _ in range(ASYNC_MAX_IN_FLIGHT)]
        for slot in held:
            await slot.__aenter__()  # slow requests of other triggers hold every slot
        try:
            with pytest.raises(TransientOrdersError) as info:
                await DataKitchenHook().aget_order_runs(KITCHEN, order_id)
        finally:
            for slot in held:
                await slot.__aexit__(None, None, None)
        return info.value

    error = run_async(scenario)

    assert "failed after 2 attempt(s)" in str(error)
    assert f"DataKitchen at {url_host(dk.url)} is slow to answer" in str(error)
    assert f"{ASYNC_MAX_IN_FLIGHT} request(s) already in flight" in str(error)
    assert dk.count(route="servings") == 0  # nothing was sent


def test_a_hung_datakitchen_does_not_stall_ezcater_reads_on_the_same_loop(
    datakitchen_sandbox: DataKitchenSandbox, ezcater_sandbox: EzCaterSandbox
) -> None:
    dk, ez = datakitchen_sandbox, ezcater_sandbox
    order_id = DataKitchenHook().create_order(KITCHEN, RECIPE, "success")["order_id"]  # logs in
    catering_order = ez.add_order(state="submitted")
    hung = ASYNC_MAX_IN_FLIGHT + 5
    dk.inject_fault("servings", times=hung, delay=120)  # DataKitchen hangs: 60 s timeouts, retries...

    async def scenario() -> tuple[dict[str, Any], float, int, int, int]:
        readers = [
            asyncio.ensure_future(DataKitchenHook().aget_order_runs(KITCHEN, order_id)) for _ in range(hung)
        ]
        try:
            deadline = time.monotonic() + 20
            while dk.count(route="servings") < ASYNC_MAX_IN_FLIGHT:  # DataKitchen's gate is full
                assert time.monotonic() < deadline, "the DataKitchen reads never reached the sandbox"
                await asyncio.sleep(0.05)
            gate = request_gate("datakitchen", url_host(dk.url))
            started = time.monotonic()
            order = await asyncio.wait_for(EzCaterHook().aget_order(catering_order), 15)
            seconds = time.monotonic() - started
            clients = len(_loop_state().clients)
            return order, seconds, gate.in_flight, gate.waiting, clients
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    order, seconds, in_flight, waiting, clients = run_async(scenario)

    assert order["uuid"] == catering_order
    assert seconds < 10.0  # not behind DataKitchen's hung requests (60 s each)
    assert (in_flight, waiting) == (ASYNC_MAX_IN_FLIGHT, hung - ASYNC_MAX_IN_FLIGHT)
    assert dk.count(route="servings") == ASYNC_MAX_IN_FLIGHT  # the gate held the others back
    assert clients == 2  # one shared client per gate, each pool larger than its gate
    assert ASYNC_MAX_CONNECTIONS > ASYNC_MAX_IN_FLIGHT


def test_a_cancellation_swallowed_inside_a_slot_is_raised_again_and_the_slot_freed() -> None:
    """What anyio < 4.16 does to a request cancelled at the wrong moment (agronholm/anyio#1214): the
    ``CancelledError`` never leaves the client. Leaving the slot raises it again; nothing else does."""

    async def scenario() -> tuple[bool, int, str]:
        gate = request_gate("datakitchen", "dk.example.com")
        inside = asyncio.Event()
        after: list[str] = []

        async def swallowing_request() -> None:
            async with async_request_gate("datakitchen", "dk.example.com", wait=None):
                inside.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(30)
            after.append("went on after the cancel")

        task = asyncio.create_task(swallowing_request())
        await inside.wait()
        task.cancel()
        await asyncio.wait({task})
        async with async_request_gate("datakitchen", "dk.example.com", wait=None):
            pass  # an untouched task passes through
        return task.cancelled(), gate.in_flight, "".join(after)

    cancelled, in_flight, after = run_async(scenario)
    assert cancelled
    assert after == ""
    assert in_flight == 0
