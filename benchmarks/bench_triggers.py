"""What the deferred-scale benchmarks share: run many triggers at once in one asyncio loop while a ticker
measures event-loop lag and RSS, and the rows every deferred-scale table reports.

A ticker task wakes every :data:`TICK` seconds and records how late it woke (event-loop lag) and this
process's RSS; the control is the same ticker with nothing else in the loop. The run ends when every
trigger fired its first event (or at a hard deadline).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench_common import MIB, Row, Table, current_rss, median, percentile

TICK = 0.05
MEMORY_TARGET_MIB = 50.0
LAG_TARGET_S = 0.100


async def _ticker(lags: list[float], rss: list[int] | None, stop: asyncio.Event) -> None:
    expected = time.perf_counter() + TICK
    while not stop.is_set():
        await asyncio.sleep(max(0.0, expected - time.perf_counter()))
        now = time.perf_counter()
        lags.append(now - expected)
        if rss is not None:
            rss.append(current_rss())
        expected = max(expected + TICK, now)  # never schedule in the past: one lag per wake-up


async def _idle(seconds: float) -> list[float]:
    lags: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(_ticker(lags, None, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return lags


def idle_lags(seconds: float) -> list[float]:
    """The ticker alone: the lag this machine shows with nothing else in the loop (the control)."""
    return asyncio.run(_idle(seconds))


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

    tick = asyncio.create_task(_ticker(lags, rss, stop))
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
    from airflow_provider_orders.hooks._http import aclose_shared_async_clients

    await aclose_shared_async_clients()
    return {"lags": lags, "rss": rss, "wall": wall, "outcomes": outcomes}


def run_all(triggers: list[Any], hard_deadline: float) -> dict[str, Any]:
    """Run every trigger until its first event: ``lags``, ``rss`` samples, ``wall`` seconds, ``outcomes``
    (event outcome → count, plus exceptions and those still waiting at ``hard_deadline``)."""
    return asyncio.run(_wait_all(triggers, hard_deadline))


def add_lag_and_memory_rows(table: Table, result: dict[str, Any], idle: int, control: list[float]) -> None:
    """Memory above ``idle`` RSS, max / p99 / median lag, and the control ticker's lag."""
    lags = result["lags"]
    peak = max(result["rss"]) if result["rss"] else idle
    extra_mib = (peak - idle) / MIB
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
            f"{max(control) * 1000:.0f} ms / {percentile(control, 99) * 1000:.1f} ms",
            note="machine noise",
        )
    )


def polls_row(what: str, reads: int, wall: float, n: int, poll: float) -> Row:
    """Polls per second: ``reads`` the sandbox received (described as ``what``) ÷ wall time."""
    return Row(
        f"polls per second ({what} ÷ wall time)",
        f"{reads / wall:.1f}/s ({reads} reads in {wall:.1f} s; "
        f"ideal {n / poll:.0f}/s at one read per trigger per interval)",
    )


def fired_row(result: dict[str, Any], n: int) -> Row:
    """How many triggers fired their success event (all must)."""
    ok = result["outcomes"].get("success", 0)
    return Row(
        "triggers that fired their success event",
        f"{ok} of {n}" + ("" if ok == n else f" ({json.dumps(result['outcomes'])})"),
        f"{n} of {n}",
        ok == n,
    )


__all__ = [
    "TICK",
    "add_lag_and_memory_rows",
    "fired_row",
    "idle_lags",
    "polls_row",
    "run_all",
]
