"""SubmitRecipeOrderOperator and RecipeOrderRunSensor in real DAG runs (``dag.test()``) against the
DataKitchen sandbox: success, failures, modes (poke / reschedule / deferrable), timeouts, retries.

Each DAG holds several independent tasks to keep the number of ``dag.test()`` runs small. Test DAGs
have ``retries=2`` and ``retry_delay=0``: a task that ends "failed on try 1" did not use its retries.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from airflow_versions import needs_airflow_3_3, reads_task_exceptions
from dag_runner import make_dag, run_dag

from airflow_provider_orders.version_compat import AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox

pytestmark = pytest.mark.usefixtures("airflow_db")

K, R = "demo-kitchen", "demo-recipe"
TRIGGER_CLASSPATH = "airflow_provider_orders.triggers.datakitchen.OrderRunTrigger"


def _submit(task_id: str, variation: str, **kwargs: Any) -> Any:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    kwargs.setdefault("poll_interval", 0.2)
    return SubmitRecipeOrderOperator(task_id=task_id, kitchen=K, recipe=R, variation=variation, **kwargs)


def _sensor(task_id: str, **kwargs: Any) -> Any:
    from airflow_provider_orders.sensors.datakitchen import RecipeOrderRunSensor

    kwargs.setdefault("poke_interval", 0.2)
    return RecipeOrderRunSensor(task_id=task_id, kitchen=K, **kwargs)


def _deferred_order_ids() -> set[str]:
    """Orders some task deferred on: the OrderRunTrigger rows the execution API wrote."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Trigger).where(Trigger.classpath == TRIGGER_CLASSPATH)).all()
        return {str(row.kwargs.get("order_id")) for row in rows}


def _order(dk: DataKitchenSandbox, variation: str) -> Any:
    (order,) = [o for o in dk.orders.values() if o.variation == variation]
    return order


def _run_url(dk: DataKitchenSandbox, run_id: str) -> str:
    return f"{dk.url}/#/orders/{dk.customer}/{K}/runs/{run_id}"


def test_submit_wait_success_pushes_ids_status_and_link(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    dk.add_variation(K, R, "quick", planned_seconds=1.0, active_seconds=1.0)
    params = {"region": "emea", "overrides": {"batch": 5, "dry_run": False}}
    with make_dag("dk_success", params=params) as dag:
        submit = _submit(
            "submit",
            "success",
            wait_for_completion=True,
            parameters={"n": 3, "region": "{{ params.region }}", "flag": True, "ids": [1, "{{ ds }}"]},
        )
        by_run = _sensor(
            "sensor_by_run_id",
            order_run_id="{{ ti.xcom_pull(task_ids='submit', key='order_run_id') }}",
        )
        submit >> by_run
        _submit(
            "submit_deferred",
            "quick",
            wait_for_completion=True,
            deferrable=True,
            parameters="{{ params.overrides | tojson }}",  # a whole-dict template renders to JSON text
        )

    result = run_dag(dag)

    assert result.state == "success"
    order = _order(dk, "success")
    (run,) = order.runs
    # return value, order id and run id XComs, final status, and the parameters with their types
    assert result.xcom("submit") == order.order_id
    assert result.xcom("submit", "order_id") == order.order_id
    assert result.xcom("submit", "order_run_id") == run.hid
    assert result.xcom("submit", "order_run_status") == "COMPLETED_SERVING"
    assert order.parameters["n"] == 3
    assert order.parameters["flag"] is True
    assert order.parameters["region"] == "emea"
    assert order.parameters["ids"][0] == 1
    # the extra link: the worker stored get_link()'s answer under _link_<class name>
    assert result.xcom("submit", "_link_DataKitchenOrderRunLink") == _run_url(dk, run.hid)

    # the sensor found the same run by its id
    summary = result.xcom("sensor_by_run_id")
    assert summary["order_run_id"] == run.hid
    assert summary["order_id"] == order.order_id
    assert summary["status"] == "COMPLETED_SERVING"
    assert result.xcom("sensor_by_run_id", "order_run_status") == "COMPLETED_SERVING"
    assert result.xcom("sensor_by_run_id", "_link_DataKitchenOrderRunLink") == _run_url(dk, run.hid)

    # deferrable: the task really deferred (a trigger row for its order), then finished on the worker
    deferred = _order(dk, "quick")
    assert deferred.order_id in _deferred_order_ids()
    assert deferred.parameters == {"batch": 5, "dry_run": False}
    assert result.xcom("submit_deferred") == deferred.order_id
    assert result.xcom("submit_deferred", "order_run_status") == "COMPLETED_SERVING"
    assert result.xcom("submit_deferred", "_link_DataKitchenOrderRunLink") == _run_url(
        dk, deferred.runs[0].hid
    )
    assert result.ti("submit_deferred").try_number == 1
    assert dk.count(route="create_order") == 2


def test_sensor_modes_poke_reschedule_deferrable(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    for name in ("medium_a", "medium_b", "medium_c"):
        dk.add_variation(K, R, name, planned_seconds=0.5, active_seconds=3.0)
    with make_dag("dk_sensor_modes") as dag:
        sub_a = _submit("submit_a", "medium_a")
        poke = _sensor("sensor_poke", order_id=sub_a.output, mode="poke")
        sub_b = _submit("submit_b", "medium_b")
        resched = _sensor("sensor_reschedule", order_id=sub_b.output, mode="reschedule", poke_interval=1)
        sub_c = _submit("submit_c", "medium_c")
        defer = _sensor("sensor_deferrable", order_id=sub_c.output, deferrable=True)
        # one after the other: each sensor starts while its own run is still going
        sub_a >> poke >> sub_b >> resched >> sub_c >> defer

    result = run_dag(dag)

    assert result.state == "success"
    for sensor, variation in (
        ("sensor_poke", "medium_a"),
        ("sensor_reschedule", "medium_b"),
        ("sensor_deferrable", "medium_c"),
    ):
        order = _order(dk, variation)
        assert result.xcom(sensor)["order_run_id"] == order.runs[0].hid, sensor
        assert result.xcom(sensor, "order_run_id") == order.runs[0].hid, sensor
        assert result.xcom(sensor, "order_run_status") == "COMPLETED_SERVING", sensor
    if AIRFLOW_V_3_3_PLUS:  # before 3.3, dag.test() pokes a reschedule sensor again in place, no row
        assert result.reschedule_count("sensor_reschedule") >= 1
    if AIRFLOW_V_3_3_PLUS:  # before 3.3, dag.test() may already have deleted the finished trigger's row
        assert _order(dk, "medium_c").order_id in _deferred_order_ids()
    assert _order(dk, "medium_a").order_id not in _deferred_order_ids()
    # submit without waiting: one create each, no stop
    assert dk.count(route="create_order") == 3
    assert dk.count(route="stop_run") == 0


@reads_task_exceptions
def test_failed_runs_and_permanent_errors_fail_on_first_try(
    datakitchen_sandbox: DataKitchenSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dk = datakitchen_sandbox
    dk.add_variation(
        K, R, "breaks", outcome="SERVING_ERROR", planned_seconds=1.0, active_seconds=0.5,
        orderrun_status="Node load_data failed: disk full",
    )  # fmt: skip
    dk.add_variation(K, R, "breaks_too", outcome="SERVING_ERROR", planned_seconds=1.0, active_seconds=0.5)
    dk.add_variation(K, R, "breaks_soft", outcome="SERVING_ERROR")
    bad = json.loads(dk.connection_json({"retry_delay": 0.01}))
    bad["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_DK_BAD_PASSWORD", json.dumps(bad))

    with make_dag("dk_failures") as dag:
        _submit("serving_error", "fails", wait_for_completion=True)
        _submit("stopped_serving", "stopped", wait_for_completion=True)
        _submit("serving_error_deferred", "breaks", wait_for_completion=True, deferrable=True)
        sub = _submit("submit_breaks_too", "breaks_too")
        sub >> _sensor("sensor_serving_error", order_id=sub.output, deferrable=True)
        sub_soft = _submit("submit_breaks_soft", "breaks_soft")
        sub_soft >> _sensor("sensor_soft_fail", order_id=sub_soft.output, soft_fail=True)
        _submit("bad_credentials", "success", datakitchen_conn_id="dk_bad_password")
        _submit("unknown_variation", "no-such-variation", wait_for_completion=True)

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    assert result.state == "failed"
    for task_id in (
        "serving_error",
        "stopped_serving",
        "serving_error_deferred",
        "sensor_serving_error",
        "bad_credentials",
        "unknown_variation",
    ):
        ti = result.ti(task_id)
        assert (ti.state, ti.try_number) == ("failed", 1), task_id
    assert result.state_of("sensor_soft_fail") == "skipped"
    assert result.state_of("submit_breaks_too") == "success"

    # the final status is pushed even when the run failed
    assert result.xcom("serving_error", "order_run_status") == "SERVING_ERROR"
    assert result.xcom("stopped_serving", "order_run_status") == "STOPPED_SERVING"
    assert result.xcom("sensor_serving_error", "order_run_status") == "SERVING_ERROR"
    # the deferred one deferred, and its message quotes the API's orderrun_status and names the run
    breaks = _order(dk, "breaks")
    assert breaks.order_id in _deferred_order_ids()
    failed_run = breaks.runs[0].hid
    assert (
        f"DataKitchen order '{breaks.order_id}' (kitchen '{K}', recipe '{R}', variation 'breaks', "
        f"order run '{failed_run}') ended with status SERVING_ERROR: Node load_data failed: disk full"
    ) in out
    assert "variation 'stopped'" in out
    assert "ended with status STOPPED_SERVING" in out
    # permanent errors: one attempt each, the API's words in the log, no secret
    assert "Credentials are invalid" in out or "refused the credentials" in out
    assert "not-the-password" not in out
    assert dk.count(route="create_order") == 6  # fails, stopped, breaks, breaks_too, breaks_soft, unknown
    assert not [o for o in dk.orders.values() if o.variation == "no-such-variation"]
    assert "no-such-variation" in out


@reads_task_exceptions
def test_timeouts_stop_the_remote_run(
    datakitchen_sandbox: DataKitchenSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = datakitchen_sandbox
    for name in ("slow_sync", "slow_deferred", "slow_killed", "slow_watched"):
        dk.add_variation(K, R, name, planned_seconds=0.5, active_seconds=60)
    with make_dag("dk_timeouts") as dag:
        _submit("timeout_sync", "slow_sync", wait_for_completion=True, timeout=1.5)
        _submit("timeout_deferred", "slow_deferred", wait_for_completion=True, deferrable=True, timeout=1.5)
        _submit(
            "execution_timeout",
            "slow_killed",
            wait_for_completion=True,
            execution_timeout=timedelta(seconds=2),
            retries=0,
        )
        sub = _submit("submit_watched", "slow_watched")
        sub >> _sensor("sensor_timeout", order_id=sub.output, timeout=1)

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    for task_id in ("timeout_sync", "timeout_deferred", "execution_timeout", "sensor_timeout"):
        ti = result.ti(task_id)
        assert (ti.state, ti.try_number) == ("failed", 1), task_id
    for variation in ("slow_sync", "slow_deferred", "slow_killed"):
        (run,) = _order(dk, variation).runs
        assert run.status() == "STOPPED_SERVING", variation
    assert _order(dk, "slow_deferred").order_id in _deferred_order_ids()
    assert "did not finish within timeout=1.5s" in out
    stopped = {json.loads(r.body)["serving_hid"] for r in dk.requests if r.route == "stop_run"}
    assert stopped == {_order(dk, v).runs[0].hid for v in ("slow_sync", "slow_deferred", "slow_killed")}
    # a sensor only watches: its timeout leaves the run alone
    assert _order(dk, "slow_watched").runs[0].status() != "STOPPED_SERVING"


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_airflow_retry_reattaches_instead_of_submitting_again(dk_sandbox_factory: Any) -> None:
    from airflow_provider_orders.exceptions import TransientOrdersError

    sync_dk = dk_sandbox_factory("dk_retry_sync", max_retries=2)
    deferred_dk = dk_sandbox_factory("dk_retry_deferred", max_retries=2)
    nowait_dk = dk_sandbox_factory("dk_retry_nowait", max_retries=2)
    deferred_dk.add_variation(K, R, "quick", planned_seconds=1.0, active_seconds=1.0)
    # try 1: the order is created, then every read of its runs fails (hook retries exhausted)
    sync_dk.inject_fault("servings", status=500, times=3)
    # try 1 defers; the trigger's reads fail → error event → transient failure → try 2
    deferred_dk.inject_fault("details", status=500, times=3)

    def fail_first_try(context: Any, result: Any) -> None:
        if context["ti"].try_number == 1:
            raise TransientOrdersError("simulated worker trouble after the order was created")

    with make_dag("dk_retries") as dag:
        _submit("sync", "success", wait_for_completion=True, datakitchen_conn_id="dk_retry_sync")
        _submit(
            "deferred",
            "quick",
            wait_for_completion=True,
            deferrable=True,
            datakitchen_conn_id="dk_retry_deferred",
        )
        _submit("no_wait", "success", datakitchen_conn_id="dk_retry_nowait", post_execute=fail_first_try)

    result = run_dag(dag)

    assert result.state == "success"
    for task_id, dk in (("sync", sync_dk), ("deferred", deferred_dk), ("no_wait", nowait_dk)):
        ti = result.ti(task_id)
        assert (ti.state, ti.try_number) == ("success", 2), task_id
        assert dk.count(route="create_order") == 1, task_id
        (order_id,) = dk.orders
        assert result.xcom(task_id) == order_id, task_id
    assert result.xcom("sync", "order_run_status") == "COMPLETED_SERVING"
    assert result.xcom("deferred", "order_run_status") == "COMPLETED_SERVING"
    assert sync_dk.count(route="servings") > 3  # the retry read the runs again


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_retry_that_finds_its_orders_run_failed_fails_without_a_second_order(dk_sandbox_factory: Any) -> None:
    """Try 1 loses sight of its order (reads fail); the run fails meanwhile. Try 2 must report that
    failure (permanent) rather than submit a second order behind the user's back."""
    import time

    dk = dk_sandbox_factory("dk_unwatched_failure", max_retries=2)
    dk.add_variation(K, R, "quick_fail", outcome="SERVING_ERROR", planned_seconds=0.2, active_seconds=0.2)
    dk.inject_fault("servings", status=500, times=3)  # try 1: every read of the runs fails

    def wait_until_run_ended(context: Any) -> None:
        """Try 2 starts only once the run has failed unwatched (a deadline, not a timing assert)."""
        if context["ti"].try_number < 2:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = [run for order in dk.orders.values() for run in order.runs]
            if runs and runs[-1].status() == "SERVING_ERROR":
                return
            time.sleep(0.05)
        raise AssertionError("the sandbox run never reached SERVING_ERROR")

    with make_dag("dk_unwatched_failure") as dag:
        _submit(
            "submit",
            "quick_fail",
            wait_for_completion=True,
            datakitchen_conn_id="dk_unwatched_failure",
            pre_execute=wait_until_run_ended,
        )

    result = run_dag(dag)

    ti = result.ti("submit")
    assert (ti.state, ti.try_number) == ("failed", 2)  # try 2 failed for good: no third try
    assert dk.count(route="create_order") == 1
    assert len(dk.orders) == 1
    assert result.xcom("submit", "order_run_status") == "SERVING_ERROR"
