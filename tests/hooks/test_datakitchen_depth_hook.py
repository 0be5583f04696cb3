"""The DataKitchen hook's resume, run report and order list over real HTTP against the sandbox, and the
model layer that reads them (including the answer variants the sandbox does not send)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from hook_test_support import run_async, wait_for

from airflow_provider_orders.exceptions import OrderOutcomeUnknownError, RequestRejectedError
from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
from airflow_provider_orders.models.datakitchen import (
    STORY_LINES_PER_NODE,
    ListedOrder,
    LostOrderQuery,
    OrderRunReport,
    OrderRunStatus,
    epoch_seconds,
    listed_orders,
    listed_runs,
    match_lost_order,
    parse_test_results,
)

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox

K, R = "demo-kitchen", "demo-recipe"


def _ended_run(hook: DataKitchenHook, order_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        runs = hook.get_order_runs(K, order_id)
        return runs[0] if runs and runs[0]["status"] not in ("PLANNED_SERVING", "ACTIVE_SERVING") else None

    return wait_for(ended)


# ------------------------------------------------------------------------------------------ hook


def test_resume_starts_a_new_run_of_the_same_order(datakitchen_sandbox: DataKitchenSandbox) -> None:
    hook = DataKitchenHook()
    order_id = hook.create_order(K, R, "flaky")["order_id"]
    failed = _ended_run(hook, order_id)
    assert failed["status"] == "SERVING_ERROR"

    answer = hook.resume_order_run(K, failed["hid"])

    assert answer["order_id"] == order_id
    new_run = _ended_run(hook, order_id)
    assert new_run["hid"] != failed["hid"]
    assert new_run["status"] == "COMPLETED_SERVING"
    assert hook.get_order_run(K, failed["hid"])["status"] == "SERVING_RERAN"


def test_resume_refused_quotes_datakitchen(datakitchen_sandbox: DataKitchenSandbox) -> None:
    hook = DataKitchenHook()
    order_id = hook.create_order(K, R, "success")["order_id"]
    run = _ended_run(hook, order_id)
    with pytest.raises(RequestRejectedError, match="only a failed or stopped run can be resumed"):
        hook.resume_order_run(K, run["hid"])


def test_a_resume_whose_answer_is_lost_is_not_sent_again(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id = hook.create_order(K, R, "fails")["order_id"]
    run = _ended_run(hook, order_id)
    dk.inject_fault("resume_run", status=502, apply=True)

    with pytest.raises(
        OrderOutcomeUnknownError, match=f"DataKitchen may have resumed order run '{run['hid']}'"
    ):
        hook.resume_order_run(K, run["hid"])

    assert dk.count(route="resume_run") == 1
    assert hook.get_order_run(K, run["hid"])["status"] == "SERVING_RERAN"  # it did happen


def test_run_details_carry_the_log_and_the_test_report(datakitchen_sandbox: DataKitchenSandbox) -> None:
    hook = DataKitchenHook()
    order_id = hook.create_order(K, R, "fails-data-test")["order_id"]
    run = _ended_run(hook, order_id)

    report = OrderRunReport.from_api(hook.get_order_run_details(K, run["hid"]))

    assert report.run.status is OrderRunStatus.SERVING_ERROR
    assert report.failing_nodes == ["load"]
    assert [t.name for t in report.tests_with("FAILED")] == ["row_count_check"]
    assert report.test_counts["failed"] == 1
    assert report.test_counts["warnings"] == 1
    assert report.started_at is not None
    assert report.finished_at is not None
    assert report.finished_at >= report.started_at
    assert "row_count_check" in report.headline()
    assert "'load'" in report.headline()


def test_list_orders_sends_datakitchens_filters(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    wanted = hook.create_order(K, R, "success", {"n": 1})["order_id"]
    hook.create_order(K, R, "fails")

    body = hook.list_orders(K, recipe=R, variation="success", time_period_minutes=5, servings_count=2)

    (request,) = [r for r in dk.requests if r.route == "order_status"]
    assert request.query["recipe"] == [R]
    assert request.query["variation"] == ["success"]
    assert request.query["timePeriod"] == ["5"]
    assert request.query["servingsCount"] == ["2"]
    orders = listed_orders(body)
    assert [o.id for o in orders] == [wanted]
    assert orders[0].overrides == {"n": 1}
    assert orders[0].created_by == dk.username
    assert orders[0].created_at is not None
    assert abs(orders[0].created_at - time.time()) < 60


def test_alist_orders_reads_finished_runs(datakitchen_sandbox: DataKitchenSandbox) -> None:
    hook = DataKitchenHook()
    order_id = hook.create_order(K, R, "success")["order_id"]
    _ended_run(hook, order_id)

    runs = listed_runs(run_async(lambda: hook.alist_orders(K, recipe=R)))

    (run,) = [r for r in runs if r.order_id == order_id]
    assert run.has_ended
    assert run.status is OrderRunStatus.COMPLETED_SERVING
    assert (run.recipe, run.variation) == (R, "success")
    assert run.finished_at is not None


# ------------------------------------------------------------------------------------------ models


def test_epoch_seconds_reads_milliseconds_seconds_and_iso() -> None:
    assert epoch_seconds(1_764_583_200_000) == 1_764_583_200.0
    assert epoch_seconds(1_764_583_200) == 1_764_583_200.0
    assert epoch_seconds("1764583200000") == 1_764_583_200.0
    assert epoch_seconds("2025-12-01T10:00:00Z") == 1_764_583_200.0
    assert epoch_seconds("2025-12-01 10:00:00") == 1_764_583_200.0  # naive: UTC
    for junk in (None, "", "soon", True, -5, float("nan")):
        assert epoch_seconds(junk) is None, junk


def test_order_list_variants_are_read_alike() -> None:
    sandbox_shape = {
        "orders": [
            {"hid": "o1", "recipe_name": "r", "variation_name": "v", "created_time": 1_764_583_200_000}
        ],
        "servings": [
            {
                "hid": "s1",
                "order_id": "o1",
                "status": "COMPLETED_SERVING",
                "timings": {"end-time": 1_764_583_260_000},
            }
        ],
    }
    bare_list = [
        {
            "order_id": "o1",
            "recipe": "r",
            "variation": "v",
            "created_at": "2025-12-01T10:00:00Z",
            "servings": [{"serving_hid": "s1", "status": "completed_serving", "end_time": 1_764_583_260}],
        }
    ]
    for body in (sandbox_shape, bare_list):
        (order,) = listed_orders(body)
        assert (order.id, order.recipe, order.variation, order.created_at) == (
            "o1",
            "r",
            "v",
            1_764_583_200.0,
        )
        assert order.overrides is None  # not listed, not "empty"
        (run,) = listed_runs(body)
        assert (run.id, run.order_id, run.finished_at) == ("s1", "o1", 1_764_583_260.0)
        assert run.status is OrderRunStatus.COMPLETED_SERVING
    assert listed_orders({"unexpected": 1}) == []
    assert listed_runs("junk") == []


def test_test_reports_text_and_json() -> None:
    text = (
        "Test results for order run x\nNode: load\n  PASSED: schema_check\n"
        "  WARNING: null_ratio - 3% nulls\n  FAILED: row_count_check - found 12 - of 1000\n"
        "Totals: 1 passed, 1 warnings, 1 failed"
    )
    tests, totals = parse_test_results(text)
    assert [(t.node, t.name, t.status, t.message) for t in tests] == [
        ("load", "schema_check", "PASSED", None),
        ("load", "null_ratio", "WARNING", "3% nulls"),
        ("load", "row_count_check", "FAILED", "found 12 - of 1000"),
    ]
    assert totals == {"passed": 1, "warnings": 1, "failed": 1}
    tests, totals = parse_test_results([{"node": "n", "test": "t", "result": "fail", "message": "m"}, "junk"])
    assert [(t.node, t.name, t.status) for t in tests] == [("n", "t", "FAILED")]
    assert totals is None
    # a report with totals only still counts
    report = OrderRunReport.from_api({"hid": "x", "testresults": "Totals: 4 passed, 0 warnings, 1 failed"})
    assert report.test_counts == {"passed": 4, "warnings": 0, "failed": 1, "total": 5}


def test_the_story_is_bounded() -> None:
    lines = [{"node": "transform", "level": "INFO", "message": f"row {i} " + "x" * 2000} for i in range(5000)]
    lines.append({"node": "transform", "level": "ERROR", "message": "boom"})
    report = OrderRunReport.from_api({"hid": "x", "status": "SERVING_ERROR", "log": {"lines": lines}})

    story = report.story()

    assert story[0] == f"Log of node 'transform' (last {STORY_LINES_PER_NODE} of 5001):"
    assert len(story) == STORY_LINES_PER_NODE + 1
    assert story[-1].endswith("boom")
    assert max(len(line) for line in story) < 500
    assert report.headline() == "failing node 'transform'"


def _order(order_id: str, **fields: Any) -> ListedOrder:
    base: dict[str, Any] = {
        "recipe": "r",
        "variation": "v",
        "overrides": {"a": 1},
        "created_at": 1000.0,
        "created_by": "me@example.com",
    }
    return ListedOrder(id=order_id, **{**base, **fields})


def test_lost_order_matching_rules() -> None:
    query = LostOrderQuery(
        "r", "v", {"a": 1}, created_after=990.0, created_before=1010.0, created_by="ME@example.com"
    )
    orders = [
        _order("mine"),
        _order("other-variation", variation="w"),
        _order("too-early", created_at=900.0),
        _order("someone-else", created_by="you@example.com"),
        _order("other-overrides", overrides={"a": 2}),
    ]
    assert match_lost_order(orders, query) == ([orders[0]], True)
    # fields the list does not show cannot rule an order out
    unlisted = _order("unlisted", overrides=None, created_at=None, created_by=None)
    assert match_lost_order([unlisted], query) == ([unlisted], True)

    ref = LostOrderQuery(
        "r", "v", {"a": 1, "REF": "airflow/d/r/t/-1/1/abc"}, 990.0, 1010.0, reference_variable="REF"
    )
    twin = _order("twin", overrides={"a": 1, "REF": "airflow/d/r2/t/-1/1/def"})
    own = _order("own", overrides={"a": 1, "REF": "airflow/d/r/t/-1/1/abc"})
    assert match_lost_order([twin, own], ref) == ([own], True)
    # with a reference, a list that shows no overrides cannot tell
    assert match_lost_order([unlisted], ref) == ([], False)
