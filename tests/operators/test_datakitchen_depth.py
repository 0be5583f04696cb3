"""SubmitRecipeOrderOperator's DataKitchen depth, in real DAG runs (``dag.test()``) against the sandbox:
retry from the point of failure (resume), the failed run's story in the task log, the run summary, and
an order whose create answer was lost.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from airflow_versions import needs_airflow_3_3, reads_task_exceptions
from dag_runner import make_dag, run_dag

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox

pytestmark = pytest.mark.usefixtures("airflow_db")

K, R = "demo-kitchen", "demo-recipe"
DATA_TEST_MESSAGE = "expected at least 1000 rows in orders_clean, found 12"


def _submit(task_id: str, variation: str, **kwargs: Any) -> Any:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    kwargs.setdefault("poll_interval", 0.2)
    return SubmitRecipeOrderOperator(task_id=task_id, kitchen=K, recipe=R, variation=variation, **kwargs)


def _orders(dk: DataKitchenSandbox, variation: str) -> list[Any]:
    return [o for o in dk.orders.values() if o.variation == variation]


def _statuses(order: Any) -> list[str]:
    return [run.status() for run in order.runs]


# ------------------------------------------------------------------------------------------ resume


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_retry_from_failure_resumes_the_failed_run_instead_of_ordering_again(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    sync_dk = dk_sandbox_factory("dk_resume_sync")
    deferred_dk = dk_sandbox_factory("dk_resume_deferred")
    with make_dag("dk_resume", default_args={"retries": 2}) as dag:
        _submit(
            "sync",
            "flaky",
            wait_for_completion=True,
            retry_from_failure=True,
            datakitchen_conn_id="dk_resume_sync",
        )
        _submit(
            "deferred",
            "flaky",
            wait_for_completion=True,
            retry_from_failure=True,
            deferrable=True,
            datakitchen_conn_id="dk_resume_deferred",
        )

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    assert result.state == "success"
    for task_id, dk in (("sync", sync_dk), ("deferred", deferred_dk)):
        ti = result.ti(task_id)
        assert (ti.state, ti.try_number) == ("success", 2), task_id
        assert dk.count(route="create_order") == 1, task_id
        assert dk.count(route="resume_run") == 1, task_id
        (order,) = dk.orders.values()
        # the failed run was superseded by a new run of the same order, which completed
        assert _statuses(order) == ["SERVING_RERAN", "COMPLETED_SERVING"], task_id
        assert result.xcom(task_id) == order.order_id, task_id  # the order id survives the resume
        assert result.xcom(task_id, "order_run_id") == order.runs[1].hid, task_id
        assert result.xcom(task_id, "order_run_status") == "COMPLETED_SERVING", task_id
    # try 1 said what the next try would do
    assert "retry_from_failure=True: the next try resumes order run" in out


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_retry_from_failure_with_retries_spent_fails_with_the_runs_cause(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = dk_sandbox_factory("dk_resume_spent")
    with make_dag("dk_resume_spent", default_args={"retries": 1}) as dag:
        _submit(
            "submit",
            "fails-data-test",
            wait_for_completion=True,
            retry_from_failure=True,
            datakitchen_conn_id="dk_resume_spent",
        )

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    ti = result.ti("submit")
    assert (ti.state, ti.try_number) == ("failed", 2)
    assert dk.count(route="create_order") == 1
    assert dk.count(route="resume_run") == 1  # try 2 resumed once; no third try, no third run
    (order,) = dk.orders.values()
    assert _statuses(order) == ["SERVING_RERAN", "SERVING_ERROR"]
    assert "the task's retries are spent: the run was not resumed" in out
    assert DATA_TEST_MESSAGE in out


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_a_resume_datakitchen_refuses_fails_the_task_for_good(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = dk_sandbox_factory("dk_resume_refused")
    refusal = {
        "message": {
            "status": "failed",
            "error": {"message": "order run", "detail": "resuming is disabled for this kitchen"},
        }
    }
    dk.inject_fault("resume_run", status=400, body=refusal)
    with make_dag("dk_resume_refused", default_args={"retries": 3}) as dag:
        _submit(
            "submit",
            "fails",
            wait_for_completion=True,
            retry_from_failure=True,
            datakitchen_conn_id="dk_resume_refused",
        )

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    ti = result.ti("submit")
    assert (ti.state, ti.try_number) == ("failed", 2)  # try 2's refusal did not burn tries 3 and 4
    assert "DataKitchen refused to resume" in out
    assert "resuming is disabled for this kitchen" in out
    assert dk.count(route="create_order") == 1


def test_retry_from_failure_needs_wait_for_completion() -> None:
    with pytest.raises(ValueError, match="needs wait_for_completion=True"):
        _submit("submit", "flaky", retry_from_failure=True)


# ------------------------------------------------------------------------------------------ story


@reads_task_exceptions
def test_a_failed_runs_story_names_its_node_lines_and_tests(
    datakitchen_sandbox: DataKitchenSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = datakitchen_sandbox
    with make_dag("dk_story") as dag:
        _submit("data_test", "fails-data-test", wait_for_completion=True)
        _submit("noisy", "noisy-failure", wait_for_completion=True, deferrable=True)

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    for task_id in ("data_test", "noisy"):
        assert (result.ti(task_id).state, result.ti(task_id).try_number) == ("failed", 1), task_id
    (order,) = _orders(dk, "fails-data-test")
    run_id = order.runs[0].hid
    # the one-line summary names the failing node and the first failed test, with its message
    assert re.search(
        rf"order run '{run_id}'\) ended with status SERVING_ERROR(: [^\n]*)? \(failing node 'load'; failed "
        rf"test 'row_count_check': {re.escape(DATA_TEST_MESSAGE)}\)",
        out,
    ), out[-3000:]
    # the story: the node's last log lines, the failed and the warning tests
    assert "Log of node 'load'" in out
    assert "Failed tests (1):" in out
    assert "Warning tests (1):" in out
    assert "null_ratio" in out
    # ... and how to resume by hand (retry_from_failure is off)
    assert f"resume order run '{run_id}' in DataKitchen (PUT /v2/order/resume/{run_id})" in out

    # a run with thousands of log lines: the task log gets the last lines of the failing node only
    (noisy,) = _orders(dk, "noisy-failure")
    noisy_lines = [line for line in out.splitlines() if "noisy-failure" in line or "Log of node" in line]
    assert re.search(r"Log of node '\w+' \(last 20 of \d{4,}\)", out), noisy_lines[:5]
    assert out.count(noisy.runs[0].hid) < 60
    assert len(out) < 400_000


def test_a_completed_run_pushes_its_summary_and_logs_its_tests(
    datakitchen_sandbox: DataKitchenSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = datakitchen_sandbox
    dk.add_variation(
        K,
        R,
        "tested",
        tests=(
            ("load", "schema_check", "PASSED", "12 columns as expected"),
            ("load", "freshness", "WARNING", "newest row is 26 hours old"),
        ),
    )
    with make_dag("dk_summary") as dag:
        _submit("submit", "tested", wait_for_completion=True, parameters={"api_key": "s3cret-value"})

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    assert result.state == "success"
    (order,) = _orders(dk, "tested")
    summary = result.xcom("submit", "order_run_summary")
    assert summary["order_id"] == order.order_id
    assert summary["order_run_id"] == order.runs[0].hid
    assert summary["status"] == "COMPLETED_SERVING"
    assert summary["tests"] == {"passed": 1, "warnings": 1, "failed": 0, "total": 2}
    assert summary["warning_tests"] == ["freshness"]
    assert summary["duration_seconds"] is not None
    assert summary["duration_seconds"] >= 0
    assert summary["started_at"] < summary["finished_at"]
    assert "s3cret-value" not in json.dumps(summary)  # no override values
    assert "1 passed, 1 warnings, 0 failed" in out
    assert "Warning test load/freshness: newest row is 26 hours old" in out


# ------------------------------------------------------------------------------------------ lost answers


def test_a_lost_create_answer_adopts_the_order_it_made(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = dk_sandbox_factory("dk_lost_adopt")
    dk.inject_fault("create_order", status=502, apply=True)  # created, then the answer is lost
    with make_dag("dk_lost_adopt") as dag:
        _submit("submit", "success", wait_for_completion=True, datakitchen_conn_id="dk_lost_adopt")

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    assert result.state == "success"
    assert result.ti("submit").try_number == 1
    assert dk.count(route="create_order") == 1
    (order,) = dk.orders.values()
    assert result.xcom("submit") == order.order_id
    assert "Found the order this request created in the order list" in out


def test_a_lost_create_answer_with_no_order_listed_submits_once_more(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = dk_sandbox_factory("dk_lost_none")
    dk.inject_fault("create_order", status=504)  # the gateway gave up before DataKitchen created it
    with make_dag("dk_lost_none") as dag:
        _submit(
            "submit",
            "success",
            wait_for_completion=True,
            lost_order_grace=0.5,
            datakitchen_conn_id="dk_lost_none",
        )

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    assert result.state == "success"
    assert dk.count(route="create_order") == 2
    assert len(dk.orders) == 1
    assert "DataKitchen did not create it, so submitting again is safe" in out


def test_a_lost_answer_among_lookalike_orders_fails_listing_them_unless_a_reference_tells(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Another DAG run ordered the same variation with the same overrides at the same moment: without a
    reference the task cannot tell which order is its own and fails listing both; with one it adopts its
    own and never the other's."""
    plain = dk_sandbox_factory("dk_lost_plain")
    marked = dk_sandbox_factory("dk_lost_marked")
    overrides = {"region": "emea"}
    for dk in (plain, marked):
        dk.model.create_order(K, R, "success", overrides, username=dk.username)  # the other DAG run's
        dk.inject_fault("create_order", status=502, apply=True)
    with make_dag("dk_lost_lookalike") as dag:
        _submit("plain", "success", parameters=overrides, datakitchen_conn_id="dk_lost_plain")
        _submit(
            "marked",
            "success",
            parameters=overrides,
            reference_variable="AIRFLOW_ORDER_REFERENCE",
            datakitchen_conn_id="dk_lost_marked",
        )

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    assert (result.ti("plain").state, result.ti("plain").try_number) == ("failed", 1)
    assert "holds 2 orders that could be it" in out
    for order_id in plain.orders:
        assert order_id in out
    assert result.state_of("marked") == "success"
    mine = [o for o in marked.orders.values() if "AIRFLOW_ORDER_REFERENCE" in o.parameters]
    assert len(mine) == 1
    assert len(marked.orders) == 2
    assert result.xcom("marked") == mine[0].order_id
    reference = mine[0].parameters["AIRFLOW_ORDER_REFERENCE"]
    assert reference.startswith(f"airflow/dk_lost_lookalike/{result.run_id}/marked/-1/1/")


def test_a_retry_without_task_state_store_finds_its_order_by_reference(dk_sandbox_factory: Any) -> None:
    """On Airflow without task_state_store the reference variable carries the order to the retry."""
    dk = dk_sandbox_factory("dk_no_store", max_retries=2)
    dk.inject_fault("servings", status=500, times=3)  # try 1 loses sight of its order

    def no_task_state_store(context: Any) -> None:
        context.pop("task_state_store", None)

    with make_dag("dk_no_store", default_args={"retries": 2}) as dag:
        _submit(
            "submit",
            "success",
            wait_for_completion=True,
            reference_variable="AIRFLOW_ORDER_REFERENCE",
            pre_execute=no_task_state_store,
            datakitchen_conn_id="dk_no_store",
        )

    result = run_dag(dag)

    ti = result.ti("submit")
    assert (ti.state, ti.try_number) == ("success", 2)
    assert dk.count(route="create_order") == 1
    (order,) = dk.orders.values()
    assert result.xcom("submit") == order.order_id


def test_without_task_state_store_or_reference_a_retry_orders_again_and_says_so_once(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The degraded case of Airflow 3.0-3.2 (README: Airflow versions): with neither the store nor a
    reference variable, a retry cannot know its earlier try's order; the task log says so once."""
    from airflow_provider_orders import version_compat

    monkeypatch.setattr(version_compat, "_warned", set())
    dk = dk_sandbox_factory("dk_no_store_no_ref", max_retries=2)
    dk.inject_fault("servings", status=500, times=3)  # try 1 loses sight of its order

    def no_task_state_store(context: Any) -> None:
        context.pop("task_state_store", None)

    with make_dag("dk_no_store_no_ref", default_args={"retries": 2}) as dag:
        _submit(
            "submit",
            "success",
            wait_for_completion=True,
            lost_order_grace=0,
            pre_execute=no_task_state_store,
            datakitchen_conn_id="dk_no_store_no_ref",
        )

    result = run_dag(dag)

    out = result.output(capfd.readouterr())
    assert result.state_of("submit") == "success"
    assert out.count("gives no task_state_store") == 1
    assert "set reference_variable= to let a retry find its order" in out
    assert dk.count(route="create_order") >= 2  # the retry could not know the first order


# ------------------------------------------------------------------------------------------ clears


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_a_reattached_run_that_the_cleared_attempt_stops_is_ordered_again(
    dk_sandbox_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """A clear while deferred: the new try may reattach to the run before the old attempt's trigger
    stops it. When that run then ends STOPPED_SERVING, the new try orders again instead of failing."""
    import hashlib
    import threading

    from airflow_provider_orders.operators.datakitchen import ORDER_STATE_KEY

    empty_overrides = hashlib.sha256(b"{}").hexdigest()
    cases = {"sync": False, "deferred": True}
    sandboxes = {}
    for name in cases:
        dk = dk_sandbox_factory(f"dk_clear_{name}")
        dk.add_variation(K, R, "three_seconds", planned_seconds=0.2, active_seconds=3.0)
        sandboxes[name] = dk

    started: set[str] = set()

    def earlier_attempt(name: str) -> Any:
        def pre_execute(context: Any) -> None:
            if name in started:
                return  # pre_execute runs again when a deferred task resumes
            started.add(name)
            dk = sandboxes[name]
            old = dk.model.create_order(K, R, "three_seconds", {}, username=dk.username)
            record = {
                "order_id": old.order_id,
                "kitchen": K,
                "recipe": R,
                "variation": "three_seconds",
                "overrides_sha256": empty_overrides,
                "try_number": 0,  # written by a try of an attempt before this one (a clear)
            }
            context["task_state_store"].set(ORDER_STATE_KEY, record)
            # the cleared attempt's kill stops its run a moment after this try reattached to it
            threading.Timer(1.0, dk.model.stop_run, args=(old.runs[0].hid,)).start()

        return pre_execute

    with make_dag("dk_clear_race") as dag:
        for name, deferrable in cases.items():
            _submit(
                name,
                "three_seconds",
                wait_for_completion=True,
                deferrable=deferrable,
                pre_execute=earlier_attempt(name),
                datakitchen_conn_id=f"dk_clear_{name}",
            )

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    assert result.state == "success", out[-3000:]
    for name in cases:
        dk = sandboxes[name]
        ti = result.ti(name)
        assert (ti.state, ti.try_number) == ("success", 1), name
        old, new = sorted(dk.orders.values(), key=lambda o: o.created_at)
        assert _statuses(old) == ["STOPPED_SERVING"], name
        assert _statuses(new) == ["COMPLETED_SERVING"], name
        assert result.xcom(name) == new.order_id, name
    assert "the cleared attempt's kill stopped it after this try reattached" in out
