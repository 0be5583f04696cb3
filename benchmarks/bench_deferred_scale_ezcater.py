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

import gc
import os
import time

from bench_common import SandboxProcess, Table, current_rss, main_for
from bench_triggers import TICK, add_lag_and_memory_rows, fired_row, idle_lags, polls_row, run_all


def measure(quick: bool) -> Table:
    n = 100 if quick else 1000
    poll = 2.0 if quick else 10.0
    active = 6.0 if quick else 45.0
    with SandboxProcess("ezcater") as sb:
        os.environ["AIRFLOW_CONN_EZCATER_DEFAULT"] = sb.call("connection_json")

        from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger

        gc.collect()
        control = idle_lags(2.0 if quick else 10.0)
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
        result = run_all(triggers, hard_deadline)
        reads = int(sb.call("count", route="order"))

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
    add_lag_and_memory_rows(table, result, idle, control)
    table.rows.append(polls_row("sandbox order reads", reads, result["wall"], n, poll))
    table.rows.append(fired_row(result, n))
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
