"""Table 3b: deferred scale, ezCater: 1,000 concurrent ``OrderLifecycleTrigger.run()`` waits in one loop.

The ezCater sandbox runs in a child process. Each trigger waits for its own order, seeded ``submitted``
with a timed transition to ``accepted``; every trigger starts at once in one event loop, as a triggerer
holding that many deferred tasks would, and reads through ``EzCaterHook.aget_order`` (the async GraphQL
path: gql's httpx transport on the loop's shared client). A ticker task wakes every 50 ms and records
how late it woke (event-loop lag) and this process's RSS. The run ends when every trigger fired its event
(or at a hard deadline).

Figures as in table 3: memory above idle = peak RSS while waiting - RSS just before the triggers started;
lag = ticker lateness; polls per second = ``order`` reads the sandbox received ÷ wall time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from typing import Any

from bench_common import MIB, Row, SandboxProcess, Table, current_rss, main_for, median, percentile

TICK = 0.05
MEMORY_TARGET_MIB = 50.0
LAG_TARGET_S = 0.100


def _ticker_lags(lags: list[float], rss: list[int] | None, stop: asyncio.Event) -> Any:
    async def ticker() -> None:
        expected = time.perf_counter() + TICK
        while not stop.is_set():
            await asyncio.sleep(max(0.0, expected - time.perf_counter()))
            now = time.perf_counter()
            lags.append(now - expected)
            if rss is not None:
                rss.append(current_rss())
            expected = max(expected + TICK, now)  # never schedule in the past: one lag per wake-up

    return ticker()


async def _idle_lags(seconds: float) -> list[float]:
    """The ticker alone: the lag this machine shows with nothing else in the loop (the control)."""
    lags: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(_ticker_lags(lags, None, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return lags


async def _close_shared_clients() -> None:
    try:
        from airflow_provider_orders.hooks._http import aclose_shared_async_clients
    except ImportError:  # pragma: no cover - older layout
        from airflow_provider_orders.hooks._common import aclose_shared_async_clients
    await aclose_shared_async_clients()


def _outcome(payload: Any) -> str:
    """The event's outcome (``outcome``; 0.1 events said ``status``)."""
    if not isinstance(payload, dict):
        return repr(payload)
    return str(payload.get("outcome") or payload.get("status"))


async def _wait_all(triggers: list[Any], hard_deadline: float) -> dict[str, Any]:
    lags: list[float] = []
    rss: list[int] = []
    stop = asyncio.Event()

    async def first_event(trigger: Any) -> Any:
        agen = trigger.run()
        try:
            return await agen.__anext__()
        finally:
            await agen.aclose()

    tick = asyncio.create_task(_ticker_lags(lags, rss, stop))
    started = time.perf_counter()
    tasks = [asyncio.create_task(first_event(t)) for t in triggers]
    done, pending = await asyncio.wait(tasks, timeout=max(1.0, hard_deadline - time.time()))
    wall = time.perf_counter() - started
    for task in pending:
        task.cancel()
    stop.set()
    await tick
    outcomes: dict[str, int] = {}
    for task in done:
        exc = task.exception()
        key = f"raised {type(exc).__name__}" if exc else _outcome(task.result().payload)
        outcomes[key] = outcomes.get(key, 0) + 1
    if pending:
        outcomes["still waiting at the deadline"] = len(pending)
    await _close_shared_clients()
    return {"lags": lags, "rss": rss, "wall": wall, "outcomes": outcomes}


def measure(quick: bool) -> Table:
    n = 100 if quick else 1000
    poll = 2.0 if quick else 10.0
    active = 6.0 if quick else 45.0
    with SandboxProcess("ezcater") as sb:
        os.environ["AIRFLOW_CONN_EZCATER_DEFAULT"] = sb.call("connection_json")

        from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger

        gc.collect()
        idle_lags = asyncio.run(_idle_lags(2.0 if quick else 10.0))
        order_ids = [
            sb.call("add_order", state="submitted", transitions=[("accepted", active)]) for _ in range(n)
        ]
        sb.call("clear_requests")
        gc.collect()
        idle = current_rss()
        hard_deadline = time.time() + active + 4 * poll + 60
        triggers = [
            OrderLifecycleTrigger(
                ezcater_conn_id="ezcater_default",
                order_id=oid,
                target_states=["accepted"],
                failure_states=["rejected", "cancelled"],
                poll_interval=poll,
                end_time=hard_deadline,
            )
            for oid in order_ids
        ]
        result = asyncio.run(_wait_all(triggers, hard_deadline))
        reads = int(sb.call("count", route="order"))

    lags = result["lags"]
    peak = max(result["rss"]) if result["rss"] else idle
    extra_mib = (peak - idle) / MIB
    table = Table(
        key="deferred_scale_ezcater",
        title="3b. Deferred scale, ezCater",
        method=(
            f"{n} `OrderLifecycleTrigger` instances (one order each, `poll_interval` {poll:g} s) started at "
            f"once in one asyncio loop against the sandbox ezCater (child process), reading through "
            f"`EzCaterHook.aget_order` (gql's httpx transport on the loop's shared client); each order "
            f"turns `accepted` {active:g} s after it was seeded. Ticker every {TICK * 1000:.0f} ms "
            "measures lag and RSS; the run ends when all triggers fired."
        ),
    )
    table.rows.append(
        Row(
            "memory above idle (peak RSS - RSS before the triggers)",
            f"{extra_mib:.1f} MiB",
            f"≤ {MEMORY_TARGET_MIB:g} MiB",
            extra_mib <= MEMORY_TARGET_MIB,
        )
    )
    max_lag = max(lags) if lags else float("nan")
    table.rows.append(
        Row(
            "event-loop lag, max",
            f"{max_lag * 1000:.0f} ms",
            f"≤ {LAG_TARGET_S * 1000:.0f} ms",
            max_lag <= LAG_TARGET_S,
        )
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
            "polls per second (sandbox order reads ÷ wall time)",
            f"{reads / result['wall']:.1f}/s ({reads} reads in {result['wall']:.1f} s; "
            f"ideal {n / poll:.0f}/s at one read per trigger per interval)",
        )
    )
    ok = result["outcomes"].get("success", 0)
    table.rows.append(
        Row(
            "triggers that fired their success event",
            f"{ok} of {n}" + ("" if ok == n else f" ({json.dumps(result['outcomes'])})"),
            f"{n} of {n}",
            ok == n,
        )
    )
    table.raw = {
        "n": n,
        "poll": poll,
        "reads": reads,
        "outcomes": result["outcomes"],
        "wall": result["wall"],
    }
    return table


if __name__ == "__main__":
    main_for(measure)
