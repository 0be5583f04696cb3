"""A distributed deployment under faults (``make test-distributed``): CeleryExecutor, two workers.

One deployment for the module (``conftest.deployment``: PostgreSQL, Redis, both sandboxes, api-server,
scheduler, dag-processor, triggerer, Celery workers ``w1`` and ``w2``). The scenarios, in this order:

1. a triggerer restart (SIGTERM + start, then SIGKILL + start) while several deferrable submits wait:
   every wait resumes, each run has exactly one order, none is lost;
2. the api-server SIGKILLed during a burst of ezCater deliveries: the sandbox's delivery retries land once
   it is back, each order is accepted exactly once, none is missed;
3. SIGKILL of the worker running a non-deferrable submit mid-wait: the retry runs on the other worker
   and reattaches to the order: one order, success on try 2.

Assertions read user-visible outcomes only (the sandboxes' orders and mutations, Airflow's task states,
tries and the worker of each try). Each scenario writes a row to ``.artifacts/distributed/results.json``;
docs/reliability.md ("Distributed deployment (CeleryExecutor)") shows those rows.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dist_harness import (
    KITCHEN,
    WORKERS,
    CeleryCluster,
    Deployment,
    descendants,
    non_loopback_listeners,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_orders.sandbox import DataKitchenSandbox

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]

STEP = 240.0  # one wait (Airflow on two busy cores)
DEFERRED_RUNS = 5
BURST = 20
KILL_AFTER = 6  # burst orders delivered before the api-server is killed
FINAL = ("success", "failed")
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
DOC_SECTION = "## Distributed deployment (CeleryExecutor)"
SCENARIOS = ("triggerer_restart", "api_server_kill", "worker_sigkill")  # the ids of the results rows


# ---------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def explained(cluster: CeleryCluster, *logs: str) -> Iterator[None]:
    """A failing check's message ends with the tails of the component logs that explain it."""
    try:
        yield
    except (AssertionError, pytest.fail.Exception) as exc:
        pytest.fail(f"{exc}\n\n{cluster.log_tails(*logs)}", pytrace=True)


def orders_of_run(dk: DataKitchenSandbox, run_id: str) -> list[Any]:
    return [o for o in dk.orders.values() if o.kitchen == KITCHEN and o.parameters.get("dag_run") == run_id]


def reads_of(dk: DataKitchenSandbox, order_id: str) -> int:
    """Status reads of one order or of one of its runs (the worker's or the trigger's polls)."""
    keys = [order_id, *(run.hid for run in dk.orders[order_id].runs)]
    return sum(
        1
        for r in dk.requests
        if r.route in ("servings", "details") and any(k in r.path or k in r.body for k in keys)
    )


def active_run(dk: DataKitchenSandbox, order: Any) -> Any:
    now = time.time()
    runs = [r for r in order.runs if r.status(now) == "ACTIVE_SERVING"]
    return runs[-1] if runs else None


def ti_state(cluster: CeleryCluster, dag_id: str, run_id: str) -> dict[str, Any]:
    return cluster.task_instance(dag_id, run_id, "submit")


def asset_events_per_order(cluster: CeleryCluster, uri: str) -> dict[str, int]:
    """order id -> asset events of ``uri`` that carry it (every page of the asset events list)."""
    counts: dict[str, int] = {}
    for event in cluster.asset_events(uri):
        order_id = str((event.get("extra") or {}).get("order_id"))
        counts[order_id] = counts.get(order_id, 0) + 1
    return counts


def wait(what: str, check: Callable[[], Any], timeout: float = STEP) -> Any:
    return wait_until(what, check, timeout, interval=1.0)


# ---------------------------------------------------------------------------------------------- scenarios
def test_deployment_is_distributed_and_loopback_only(deployment: Deployment) -> None:
    cluster = deployment.cluster
    jobs = {job["job_type"] for job in cluster.api("jobs", limit=100)["jobs"]}
    assert {"SchedulerJob", "TriggererJob"} <= jobs
    assert cluster.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert all(cluster.worker_ready(name) for name in WORKERS)
    pids = {p for proc in cluster.processes for p in (proc.popen.pid, *descendants(proc.popen.pid))}
    assert not non_loopback_listeners(pids, deployment.ports())


def test_triggerer_restart_during_deferred_waits(deployment: Deployment, record: Callable[..., None]) -> None:
    cluster, dk = deployment.cluster, deployment.dk
    dag_id = "dist_submit_deferred"
    run_ids = [cluster.trigger_dag(dag_id, run_id=f"deferred-{i}") for i in range(DEFERRED_RUNS)]
    observed: dict[str, Any] = {}
    with explained(cluster, "triggerer", "scheduler", "worker-w1", "worker-w2"):

        def all_deferred() -> bool:
            return all(
                ti_state(cluster, dag_id, r)["state"] == "deferred"
                and cluster.scheduler_saw_deferral(dag_id, r, "submit")
                for r in run_ids
            )

        wait(f"all {DEFERRED_RUNS} submits deferred", all_deferred)
        orders = {r: orders_of_run(dk, r) for r in run_ids}
        assert all(len(o) == 1 for o in orders.values()), f"orders per run before: {orders}"
        order_ids = {r: o[0].order_id for r, o in orders.items()}

        for how in ("SIGTERM", "SIGKILL"):
            before = {r: reads_of(dk, o) for r, o in order_ids.items()}
            if how == "SIGTERM":
                cluster.restart_component("triggerer")
            else:
                cluster.crash_component("triggerer")
                cluster.start_component("triggerer")
            wait("the new triggerer healthy", cluster.healthy)
            polling_again = time.monotonic()

            def every_trigger_polls(before: dict[str, int] = before) -> bool:
                return all(reads_of(dk, o) >= before[r] + 2 for r, o in order_ids.items())

            wait(f"every wait to poll again after the triggerer's {how}", every_trigger_polls)
            observed[f"resumed_after_{how}_s"] = round(time.monotonic() - polling_again, 1)
            states = {r: ti_state(cluster, dag_id, r)["state"] for r in run_ids}
            assert set(states.values()) == {"deferred"}, f"after the {how}: {states}"

        for order_id in order_ids.values():
            order = dk.orders[order_id]
            run = active_run(dk, order)
            assert run is not None, f"order {order_id} has no active run: {order.runs}"
            dk.finish_run(run.hid)

        def finished() -> dict[str, dict[str, Any]] | None:
            tis = {r: ti_state(cluster, dag_id, r) for r in run_ids}
            return tis if all(t["state"] in FINAL for t in tis.values()) else None

        tis = wait("every deferred submit to finish", finished)
        per_run = {r: len(orders_of_run(dk, r)) for r in run_ids}
        states = {r: t["state"] for r, t in tis.items()}
        tries = {r: t["try_number"] for r, t in tis.items()}
        creates = dk.count("create_order")
        observed.update(states=states, tries=tries, orders=per_run, creates=creates)
        record(
            scenario="triggerer_restart",
            fault=f"triggerer restarted (SIGTERM + start, then SIGKILL + start) while {DEFERRED_RUNS} "
            "deferrable submits wait",
            checked="every task success, every wait polls again after each restart, exactly 1 order per run",
            observed=observed,
            passed=set(states.values()) == {"success"} and set(per_run.values()) == {1},
        )
        assert set(states.values()) == {"success"}, f"task states: {states}"
        assert per_run == dict.fromkeys(run_ids, 1), f"orders per run: {per_run}"
        assert creates == DEFERRED_RUNS
        assert set(tries.values()) == {1}, f"try numbers: {tries}"


def test_api_server_killed_during_a_burst_of_deliveries(
    deployment: Deployment, record: Callable[..., None]
) -> None:
    cluster, ez = deployment.cluster, deployment.ez

    def answers(order_id: str) -> list[Any]:
        return [a["status"] for d in ez.deliveries(order_id=order_id) for a in d["attempts"]]

    def mutations(order_id: str) -> list[str]:
        return [m["mutation"] for m in ez.model.orders[order_id].to_admin()["mutations"]]

    with explained(cluster, "api-server", "scheduler", "worker-w1", "worker-w2"):
        orders = [ez.place_order(headcount=25) for _ in range(KILL_AFTER)]
        wait(
            f"the first {KILL_AFTER} deliveries answered 202",
            lambda: all(202 in answers(o) for o in orders),
            120,
        )
        cluster.crash_component("api-server")
        for _ in range(BURST - KILL_AFTER):
            orders.append(ez.place_order(headcount=25))
        during = orders[KILL_AFTER:]
        wait(
            "deliveries to meet the dead api-server",
            lambda: all(answers(o) for o in during),
            60,
        )
        cluster.start_component("api-server")
        wait("the api-server back and healthy", cluster.healthy)
        wait(
            f"all {BURST} orders accepted",
            lambda: all(ez.order_state(o) == "accepted" for o in orders),
            360,
        )
        ez.wait_for_deliveries(timeout=120)

        def runs() -> list[dict[str, Any]]:
            return list(cluster.api("dags/dist_accept_burst/dagRuns", limit=100)["dag_runs"])

        wait(
            "every burst run to finish",
            lambda: runs() and all(r["state"] in FINAL for r in runs()),
        )
        refused = sum(1 for o in during for s in answers(o) if s is None or s >= 500)
        accepts = {o: mutations(o) for o in orders}
        last = {o: answers(o)[-1] for o in orders}
        delivered = {o: [d["state"] for d in ez.deliveries(order_id=o)] for o in orders}
        events = asset_events_per_order(cluster, "ezcater://ezcater_default/orders/submitted")
        consumed: list[str] = []
        for run in runs():
            quoted = urllib.parse.quote(run["dag_run_id"], safe="")
            value = cluster.api(
                f"dags/dist_accept_burst/dagRuns/{quoted}/taskInstances/accept_all/xcomEntries/return_value",
                deserialize="true",
                stringify="false",
            )["value"]
            consumed.extend(json.loads(value) if isinstance(value, str) else value)
        run_states = sorted({r["state"] for r in runs()})
        once = all(m == ["acceptOrder"] for m in accepts.values())
        all_delivered = all(states == ["delivered"] for states in delivered.values())
        landed = all_delivered and set(last.values()) <= {200, 202}
        observed = {
            "orders": BURST,
            "accepted_once": sum(m == ["acceptOrder"] for m in accepts.values()),
            "failed_attempts_while_down": refused,
            "deliveries_delivered": sum(states == ["delivered"] for states in delivered.values()),
            # 200: an attempt timed out after the receiver recorded it; its retry was a known duplicate
            "last_answer_202": sum(a == 202 for a in last.values()),
            "last_answer_200_duplicate": sum(a == 200 for a in last.values()),
            "asset_events_per_order": sorted({events.get(o, 0) for o in orders}),
            "runs": len(runs()),
            "run_states": run_states,
            "orders_consumed_by_runs": len(consumed),
            "distinct_orders_consumed": len(set(consumed)),
        }
        record(
            scenario="api_server_kill",
            fault=f"api-server SIGKILLed after {KILL_AFTER} of {BURST} ezCater deliveries, restarted after "
            "the rest met it down",
            checked="every delivery lands (last answer 202, or 200 for a retry of a recorded one), one "
            "asset event per order, each order accepted exactly once and reaching exactly one run",
            observed=observed,
            passed=once
            and landed
            and sorted(consumed) == sorted(orders)
            and all(events.get(o) == 1 for o in orders),
        )
        assert refused > 0, "no delivery met the dead api-server: the kill did not land mid-burst"
        assert once, f"accept mutations per order: {accepts}"
        assert landed, f"delivery states {delivered}, last answer per order: {last}"
        assert all(events.get(o) == 1 for o in orders), f"asset events per order: {events}"
        assert run_states == ["success"], f"burst run states: {run_states}"
        assert sorted(consumed) == sorted(orders), "an order reached no run, or more than one"


def test_worker_sigkill_mid_wait_retry_reattaches_on_the_other_worker(
    deployment: Deployment, record: Callable[..., None]
) -> None:
    cluster, dk = deployment.cluster, deployment.dk
    dag_id, run_id = "dist_submit_wait", "wait-1"
    cluster.trigger_dag(dag_id, run_id=run_id)
    with explained(cluster, "scheduler", "worker-w1", "worker-w2"):

        def waiting_on_a_worker() -> dict[str, Any] | None:
            ti = ti_state(cluster, dag_id, run_id)
            orders = orders_of_run(dk, run_id)
            if ti["state"] != "running" or ti.get("hostname") not in WORKERS or len(orders) != 1:
                return None
            order = orders[0]
            # mid-wait: the run is active and the try has read its status at least twice
            return ti if active_run(dk, order) and reads_of(dk, order.order_id) >= 2 else None

        ti = wait("try 1 waiting on a worker", waiting_on_a_worker)
        victim = str(ti["hostname"])
        other = next(w for w in WORKERS if w != victim)
        order_id = orders_of_run(dk, run_id)[0].order_id
        killed = cluster.crash_worker(victim)
        reads_at_kill = reads_of(dk, order_id)

        def try_2_running() -> dict[str, Any] | None:
            ti = ti_state(cluster, dag_id, run_id)
            return ti if ti["try_number"] >= 2 and ti["state"] == "running" else None

        retry = wait("try 2 running", try_2_running)
        wait("try 2 reading the stored order", lambda: reads_of(dk, order_id) > reads_at_kill)
        run = active_run(dk, dk.orders[order_id])
        assert run is not None, f"the order's run is no longer active: {dk.orders[order_id].runs}"
        dk.finish_run(run.hid)
        final = wait(
            "the task to finish",
            lambda: (lambda t: t if t["state"] in FINAL else None)(ti_state(cluster, dag_id, run_id)),
        )
        tries = cluster.tries(dag_id, run_id, "submit")
        per_run = len(orders_of_run(dk, run_id))
        log = " ".join(str(line.get("event")) for line in cluster.task_log(dag_id, run_id, "submit", 2))
        reattached = f"Reattaching to DataKitchen order '{order_id}'" in log
        observed = {
            "killed_worker": victim,
            "killed_pids": len(killed),
            "state": final["state"],
            "try_number": final["try_number"],
            "tries": [(t["try_number"], t["state"], t["hostname"]) for t in tries],
            "orders": per_run,
            "runs_of_order": len(dk.orders[order_id].runs),
            "try_2_log_says_reattaching": reattached,
        }
        record(
            scenario="worker_sigkill",
            fault="SIGKILL of the Celery worker (process group and task processes) running a "
            "non-deferrable submit mid-wait",
            checked="retry on the other worker reattaches (its log), success on try 2, exactly 1 order "
            "(1 run)",
            observed=observed,
            passed=final["state"] == "success"
            and final["try_number"] == 2
            and per_run == 1
            and retry["hostname"] == other
            and reattached,
        )
        assert final["state"] == "success", observed
        assert final["try_number"] == 2, observed
        assert per_run == 1, observed
        assert len(dk.orders[order_id].runs) == 1, observed
        assert [t["hostname"] for t in tries] == [victim, other], observed
        assert reattached, f"try 2's log does not say it reattached to order {order_id}"


def test_the_reliability_doc_shows_every_scenario() -> None:
    """docs/reliability.md ends with this test's table: one row per scenario, named by its id."""
    text = DOC.read_text()
    assert DOC_SECTION in text, f"{DOC} lacks the section {DOC_SECTION!r}"
    section = text[text.index(DOC_SECTION) :]
    for scenario in SCENARIOS:
        assert f"`{scenario}`" in section, f"the distributed section of {DOC} lacks the row {scenario}"
