"""DataKitchen runs as Airflow events, in a real Airflow (``make test-notifications``).

DataKitchen's scheduler starts a ``nightly`` order (the sandbox's ``start_scheduled_order``: no Airflow
task involved) → the run completes → the asset watcher's trigger in the triggerer fires exactly one asset
event → one asset-triggered DAG run whose task sees the order id. Then a triggerer restart between two
runs finishing: the watermark in the asset's ``asset_state_store`` (Airflow 3.3) makes each run fire
exactly once, including the one that finished while no triggerer ran.

The stack (sandboxes, PostgreSQL, Airflow's four components) is the notification tests' harness, started
once for this module.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import pytest
from e2e_harness import wait_until
from notif_harness import HERE, REPO, NotificationStack, notification_stack

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_orders.sandbox import DataKitchenSandbox

pytestmark = [pytest.mark.notifications, pytest.mark.timeout(900)]
ARTIFACTS = REPO / ".artifacts" / "notifications-datakitchen"
DAG_ID = "dk_after_nightly"
K, R, V = "demo-kitchen", "demo-recipe", "nightly"
TIMEOUT = 120.0
FIELDS = {"kitchen", "order_id", "order_run_id", "recipe", "variation", "status", "finished_at"}


def _dk(stack: NotificationStack) -> DataKitchenSandbox:
    assert stack.dk is not None
    return stack.dk


@pytest.fixture(scope="module")
def stack() -> Iterator[NotificationStack]:
    with notification_stack(ARTIFACTS) as started:
        # A variation whose runs last until the test ends them (``finish_run``).
        _dk(started).add_variation(K, R, V, planned_seconds=0.2, active_seconds=3600.0)
        started.deploy_dag(HERE / "dags" / "dk_after_nightly.py", "dk_after_nightly.py")
        wait_until(
            f"the dag-processor to parse {DAG_ID}",
            lambda: started.cluster.dag(DAG_ID),
            120,
            describe=lambda: f"Import errors: {started.cluster.import_errors()}",
        )
        yield started


def asset_uri() -> str:
    from airflow_provider_orders.assets import datakitchen_order_runs_asset_uri

    return datakitchen_order_runs_asset_uri(kitchen=K, recipe=R, variation=V)


def events(stack: NotificationStack) -> list[dict[str, Any]]:
    return stack.cluster.asset_events(asset_uri())


def fired_runs(stack: NotificationStack) -> list[str]:
    return [e["extra"]["payload"]["order_run_id"] for e in events(stack)]


def wait_listings(dk: DataKitchenSandbox, more: int) -> None:
    """Wait until the watcher listed the kitchen ``more`` more times (it is running and caught up)."""
    target = dk.count("order_status") + more
    wait_until(
        f"{more} more listings of the kitchen",
        lambda: dk.count("order_status") >= target,
        TIMEOUT,
        interval=0.2,
    )


def start_run(dk: DataKitchenSandbox) -> tuple[str, str]:
    """A ``nightly`` order started by DataKitchen's scheduler; (order id, run id) once its run exists."""
    order_id = dk.start_scheduled_order(K, R, V)
    run_id = wait_until(
        f"the run of order {order_id}",
        lambda: dk.orders[order_id].runs[-1].hid if dk.orders[order_id].runs else None,
        30,
        interval=0.1,
    )
    return order_id, str(run_id)


def orders_seen_by_dag_runs(stack: NotificationStack) -> list[str]:
    seen: list[str] = []
    for run in stack.dag_runs(DAG_ID):
        quoted = urllib.parse.quote(run["dag_run_id"], safe="")
        xcom = stack.cluster.api(
            f"dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/finished_orders/xcomEntries/return_value",
            deserialize="true",
            stringify="false",
        )
        value = xcom["value"]
        seen.extend(json.loads(value) if isinstance(value, str) else value)
    return seen


def all_dag_runs_done(stack: NotificationStack) -> bool:
    runs = stack.dag_runs(DAG_ID)
    return bool(runs) and all(r["state"] in ("success", "failed") for r in runs)


def test_a_run_started_by_datakitchen_completes_and_runs_the_dag_once(stack: NotificationStack) -> None:
    dk = _dk(stack)
    wait_listings(dk, 2)  # the watcher is running (and took "now" as its start)
    order_id, run_id = start_run(dk)
    dk.finish_run(run_id)
    wait_until(
        "the asset event of the finished run",
        lambda: run_id in fired_runs(stack),
        TIMEOUT,
        describe=lambda: f"events: {events(stack)}",
    )
    wait_until(
        "the asset-triggered DAG run to succeed",
        lambda: any(r["state"] == "success" for r in stack.dag_runs(DAG_ID)),
        TIMEOUT,
        describe=lambda: f"DAG runs: {stack.dag_runs(DAG_ID)}",
    )
    wait_listings(dk, 3)
    (event,) = events(stack)
    assert event["extra"]["from_trigger"] is True
    payload = event["extra"]["payload"]
    assert set(payload) == FIELDS
    assert payload | {"finished_at": None} == {
        "kitchen": K,
        "order_id": order_id,
        "order_run_id": run_id,
        "recipe": R,
        "variation": V,
        "status": "COMPLETED_SERVING",
        "finished_at": None,
    }
    runs = stack.dag_runs(DAG_ID)
    assert [r["run_type"] for r in runs] == ["asset_triggered"]
    assert orders_seen_by_dag_runs(stack) == [order_id]


def test_a_triggerer_restart_between_two_runs_finishing_fires_each_once(stack: NotificationStack) -> None:
    dk = _dk(stack)
    before = fired_runs(stack)
    (o1, r1), (o2, r2) = start_run(dk), start_run(dk)
    dk.finish_run(r1)
    wait_until("the first run's event", lambda: r1 in fired_runs(stack), TIMEOUT)
    stack.cluster.stop_component("triggerer")
    dk.finish_run(r2)  # finishes while no triggerer runs
    down_at = dk.count("order_status")
    stack.cluster.start_component("triggerer")
    wait_until(
        "the run that finished while the triggerer was down to fire after the restart",
        lambda: r2 in fired_runs(stack),
        TIMEOUT,
        describe=lambda: (
            f"listings since the restart: {dk.count('order_status') - down_at}; events: {fired_runs(stack)}"
        ),
    )
    wait_listings(dk, 3)
    fired = fired_runs(stack)
    assert sorted(fired) == sorted([*before, r1, r2]), "each run fires exactly once across the restart"
    wait_until("every DAG run to finish", lambda: all_dag_runs_done(stack), TIMEOUT)
    seen = orders_seen_by_dag_runs(stack)
    assert {o1, o2} <= set(seen)
    assert len(seen) == len(set(seen)), f"an order reached two DAG runs: {seen}"
    assert all(r["state"] == "success" for r in stack.dag_runs(DAG_ID))


def test_no_datakitchen_secret_reaches_a_log_or_an_asset_event(stack: NotificationStack) -> None:
    """Runs last: the DataKitchen password appears in no component or task log, nor in any event."""
    secret = _dk(stack).password
    files = [*stack.cluster.artifacts.glob("*.log"), *(stack.cluster.home / "logs").rglob("*")]
    found = [str(p) for p in files if p.is_file() and secret in p.read_text(errors="replace")]
    assert not found, f"the DataKitchen password is in {found}"
    assert not any(secret in json.dumps(event) for event in events(stack))
