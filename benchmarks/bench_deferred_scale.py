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

import gc
import os
import time

from bench_common import Row, SandboxProcess, Table, current_rss, main_for
from bench_triggers import TICK, add_lag_and_memory_rows, fired_row, idle_lags, polls_row, run_all

KITCHEN, RECIPE, VARIATION = "demo-kitchen", "demo-recipe", "bench-long"


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
        control = idle_lags(2.0 if quick else 10.0)
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
        result = run_all(triggers, hard_deadline)
        routes = sb.routes()

    reads = routes.get("servings", 0) + routes.get("details", 0)
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
    add_lag_and_memory_rows(table, result, idle, control)
    table.rows.append(polls_row("sandbox read requests", reads, result["wall"], n, poll))
    table.rows.append(
        Row("logins for all triggers", str(routes.get("login", 0)), "1", routes.get("login", 0) == 1)
    )
    table.rows.append(fired_row(result, n))
    table.raw = {
        "n": n,
        "poll": poll,
        "routes": routes,
        "statuses": result["outcomes"],
        "wall": result["wall"],
    }
    return table


if __name__ == "__main__":
    main_for(measure)
