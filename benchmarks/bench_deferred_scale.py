"""Table 3: deferred scale: 1,000 concurrent ``OrderRunTrigger.run()`` waits in one asyncio loop.

The DataKitchen sandbox runs in a child process with a variation whose runs stay ACTIVE for a while and
then complete. This process creates one order per trigger (one hook, before the idle measurement), then
starts every trigger at once in one event loop, as a triggerer holding that many deferred tasks would.
A ticker task wakes every 50 ms and records how late it woke (event-loop lag) and this process's RSS.
The run ends when every trigger fired its event (or at a hard deadline).

Figures: memory above idle = peak RSS while waiting - RSS just before the triggers started; lag = ticker
lateness; polls per second = requests the sandbox received on the read routes ÷ wall time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from typing import Any

from bench_common import MIB, Row, SandboxProcess, Table, current_rss, main_for, median, percentile

KITCHEN, RECIPE, VARIATION = "demo-kitchen", "demo-recipe", "bench-long"
TICK = 0.05
MEMORY_TARGET_MIB = 50.0
LAG_TARGET_S = 0.100


async def _idle_lags(seconds: float) -> list[float]:
    """The ticker alone: the lag this machine shows with nothing else in the loop (the control)."""
    lags: list[float] = []
    expected = time.perf_counter() + TICK
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        await asyncio.sleep(max(0.0, expected - time.perf_counter()))
        now = time.perf_counter()
        lags.append(now - expected)
        expected = max(expected + TICK, now)
    return lags


async def _wait_all(triggers: list[Any], hard_deadline: float) -> dict[str, Any]:
    lags: list[float] = []
    rss: list[int] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        expected = time.perf_counter() + TICK
        while not stop.is_set():
            await asyncio.sleep(max(0.0, expected - time.perf_counter()))
            now = time.perf_counter()
            lags.append(now - expected)
            rss.append(current_rss())
            expected = max(expected + TICK, now)  # never schedule in the past: one lag per wake-up

    async def first_event(trigger: Any) -> Any:
        agen = trigger.run()
        try:
            return await agen.__anext__()
        finally:
            await agen.aclose()

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    tasks = [asyncio.create_task(first_event(t)) for t in triggers]
    done, pending = await asyncio.wait(tasks, timeout=max(1.0, hard_deadline - time.time()))
    wall = time.perf_counter() - started
    for task in pending:
        task.cancel()
    stop.set()
    await tick
    statuses: dict[str, int] = {}
    for task in done:
        exc = task.exception()
        key = f"raised {type(exc).__name__}" if exc else str(task.result().payload.get("outcome"))
        statuses[key] = statuses.get(key, 0) + 1
    if pending:
        statuses["still waiting at the deadline"] = len(pending)
    try:
        from airflow_provider_orders.hooks._http import aclose_shared_async_clients

        await aclose_shared_async_clients()
    except ImportError:  # pragma: no cover
        pass
    return {"lags": lags, "rss": rss, "wall": wall, "statuses": statuses}


def measure(quick: bool) -> Table:
    n = 100 if quick else 1000
    poll = 2.0 if quick else 10.0
    active = 6.0 if quick else 45.0
    with SandboxProcess("datakitchen") as sb:
        sb.call("add_variation", KITCHEN, RECIPE, VARIATION, planned_seconds=1.0, active_seconds=active)
        os.environ["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"] = sb.call("connection_json")

        from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
        from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

        hook = DataKitchenHook()
        order_ids = [hook.create_order(KITCHEN, RECIPE, VARIATION)["order_id"] for _ in range(n)]
        hook.close()
        del hook
        from airflow_provider_orders.hooks._datakitchen_session import TOKENS

        TOKENS.clear()  # the triggerer logs in for itself
        gc.collect()
        sb.call("clear_requests")
        idle_lags = asyncio.run(_idle_lags(2.0 if quick else 10.0))
        idle = current_rss()
        hard_deadline = time.time() + active + 4 * poll + 60
        triggers = [
            OrderRunTrigger(
                datakitchen_conn_id="datakitchen_default",
                kitchen=KITCHEN,
                order_id=oid,
                poll_interval=poll,
                end_time=hard_deadline,
            )
            for oid in order_ids
        ]
        result = asyncio.run(_wait_all(triggers, hard_deadline))
        routes = sb.routes()

    reads = routes.get("servings", 0) + routes.get("details", 0)
    lags = result["lags"]
    peak = max(result["rss"]) if result["rss"] else idle
    extra_mib = (peak - idle) / MIB
    table = Table(
        key="deferred_scale",
        title="3. Deferred scale",
        method=(
            f"{n} `OrderRunTrigger` instances (one order each, `poll_interval` {poll:g} s) started at once in "
            f"one asyncio loop against the sandbox DataKitchen (child process); runs are PLANNED 1 s, "
            f"ACTIVE {active:g} s after their order was created, then COMPLETED. Ticker every "
            f"{TICK * 1000:.0f} ms measures lag and RSS; the run ends when all triggers fired."
        ),
    )
    table.rows.append(
        Row(
            "memory above idle (peak RSS - RSS before the triggers)",
            f"{extra_mib:.1f} MiB",
            "≤ 50 MiB",
            extra_mib <= MEMORY_TARGET_MIB,
        )
    )
    max_lag = max(lags) if lags else float("nan")
    table.rows.append(
        Row("event-loop lag, max", f"{max_lag * 1000:.0f} ms", "≤ 100 ms", max_lag <= LAG_TARGET_S)
    )
    table.rows.append(
        Row(
            "event-loop lag, p99 / median",
            f"{percentile(lags, 99) * 1000:.1f} ms / {median(lags) * 1000:.1f} ms" if lags else "n/a",
        )
    )
    table.rows.append(
        Row(
            "control: lag of the same ticker with no triggers, max / p99",
            f"{max(idle_lags) * 1000:.0f} ms / {percentile(idle_lags, 99) * 1000:.1f} ms",
            note="machine noise",
        )
    )
    table.rows.append(
        Row(
            "polls per second (sandbox read requests ÷ wall time)",
            f"{reads / result['wall']:.1f}/s ({reads} reads in {result['wall']:.1f} s; "
            f"ideal {n / poll:.0f}/s at one read per trigger per interval)",
        )
    )
    table.rows.append(
        Row("logins for all triggers", str(routes.get("login", 0)), "1", routes.get("login", 0) == 1)
    )
    ok = result["statuses"].get("success", 0)
    table.rows.append(
        Row(
            "triggers that fired their success event",
            f"{ok} of {n}" + ("" if ok == n else f" ({json.dumps(result['statuses'])})"),
            f"{n} of {n}",
            ok == n,
        )
    )
    table.raw = {
        "n": n,
        "poll": poll,
        "routes": routes,
        "statuses": result["statuses"],
        "wall": result["wall"],
    }
    return table


if __name__ == "__main__":
    main_for(measure)
