"""The DataKitchen sandbox's depth, over real HTTP: resume from a failure, a failed run's story (logs and
test results), the order list with its filters, and orders DataKitchen's own scheduler starts."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_orders.sandbox import DataKitchenSandbox

from .conftest import DK, USERNAME, FakeClock, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

K, R = "demo-kitchen", "demo-recipe"
ROW_COUNT_FAILURE = "expected at least 1000 rows in orders_clean, found 12"


@pytest.fixture
def clocked() -> Iterator[tuple[DataKitchenSandbox, FakeClock, DK]]:
    """A sandbox on a fake clock: runs move only when the test advances it."""
    clock = FakeClock()
    with DataKitchenSandbox(clock=clock) as sandbox:
        yield sandbox, clock, DK(sandbox)


def admin(sandbox: DataKitchenSandbox, method: str, name: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{sandbox.url}/_sandbox/{name}", timeout=5, **kwargs)


def _error(response: requests.Response) -> tuple[str, Any]:
    body = response.json()
    assert body["message"]["status"] == "failed", body
    return body["message"]["error"]["message"], body["message"]["error"]["detail"]


def _details(dk: DK, run_id: str, **flags: bool) -> dict[str, Any]:
    response = dk.post(f"/v2/order/details/{K}", json={"serving_hid": run_id, **flags})
    assert response.status_code == 200, response.text
    (serving,) = response.json()["servings"]
    return dict(serving)


def _log(dk: DK, run_id: str) -> list[dict[str, Any]]:
    return list(_details(dk, run_id, logs=True)["log"]["lines"])


def _report(dk: DK, run_id: str) -> str:
    return str(_details(dk, run_id, testresults=True)["testresults"])


def _list(dk: DK, kitchen: str = K, **params: Any) -> dict[str, Any]:
    response = dk.get(f"/v2/order/status/{kitchen}", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _failed_run(clock: FakeClock, dk: DK, variation: str) -> tuple[str, str]:
    order_id = dk.create(variation)
    clock.advance(1)
    (run,) = dk.servings(order_id)
    assert run["status"] == "SERVING_ERROR", run
    return order_id, run["hid"]


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda run: {"kitchen_name": K}, id="dkutils"),
        pytest.param(
            lambda run: {"serving_hid": run, "kitchen_name": K, "skip-failed-nodes": False},
            id="dkcloudcommand",
        ),
    ],
)
def test_resume_starts_a_new_run_of_the_same_order_and_the_old_one_is_reran(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK], body: Any
) -> None:
    _, clock, dk = clocked
    order_id, first = _failed_run(clock, dk, "flaky")
    response = dk.put(f"/v2/order/resume/{first}", json=body(first))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"status", "order_id", "serving_hid"}
    assert (answer["status"], answer["order_id"]) == ("success", order_id)
    second = answer["serving_hid"]
    assert second != first
    servings = dk.servings(order_id)  # queue 0: the new run is listed at once
    assert [(s["hid"], s["status"]) for s in servings] == [
        (second, "PLANNED_SERVING"),
        (first, "SERVING_RERAN"),
    ]
    assert servings[0]["order_id"] == order_id
    clock.advance(1)
    assert [s["status"] for s in dk.servings(order_id)] == ["COMPLETED_SERVING", "SERVING_RERAN"]
    details = dk.post(f"/v2/order/details/{K}", json={"serving_hid": second}).json()
    assert details["orders"] == [{"hid": order_id, "order-status": "COMPLETED_ORDER"}]
    # the resumed run re-ran the failed node and what follows it, not extract
    assert [line["node"] for line in _log(dk, second) if line["node"]] == ["transform"] * 3 + ["load"] * 3


@pytest.mark.datakitchen_sandbox(resume_answer_has_run_id=False)
def test_resume_answer_without_the_run_id_as_datakitchen_documents_it(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    order_id = dk.create("fails")
    first = wait_for(lambda: [s for s in dk.servings(order_id) if s["status"] == "SERVING_ERROR"], timeout=5)[
        0
    ]["hid"]
    response = dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": K})
    assert (response.status_code, response.json()) == (200, {"status": "success", "order_id": order_id})
    servings = dk.servings(order_id)
    assert [s["hid"] for s in servings][1:] == [first]
    assert servings[0]["status"] in ("PLANNED_SERVING", "ACTIVE_SERVING", "SERVING_ERROR")


def test_resume_of_a_run_that_is_not_failed_or_stopped_is_refused(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    running = dk.create("slow")
    done = dk.create("success")
    clock.advance(5)
    (running_run,) = dk.servings(running)
    (done_run,) = dk.servings(done)
    for run, status in ((done_run["hid"], "COMPLETED_SERVING"), (running_run["hid"], "ACTIVE_SERVING")):
        response = dk.put(f"/v2/order/resume/{run}", json={"kitchen_name": K})
        assert response.status_code == 400
        assert response.json() == {
            "message": {
                "status": "failed",
                "error": {
                    "message": f"order run ({run})",
                    "detail": f"the order run {run} is {status}; only a failed or stopped run can be resumed",
                },
            }
        }
    assert [s["status"] for s in dk.servings(done)] == ["COMPLETED_SERVING"]


def test_resume_of_an_unknown_run_is_404_and_a_reran_one_400(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    unknown = dk.put("/v2/order/resume/no-such-run", json={"kitchen_name": K})
    assert unknown.status_code == 404
    assert _error(unknown) == (
        f"kitchen ({K}),order run (no-such-run)",
        f"unable to find the order run no-such-run in the kitchen {K}",
    )
    bare = dk.put("/v2/order/resume/no-such-run")
    assert bare.status_code == 404
    assert _error(bare)[0] == "order run (no-such-run)"
    _, first = _failed_run(clock, dk, "fails")
    assert dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": K}).status_code == 200
    again = dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": K})
    assert again.status_code == 400
    assert "is SERVING_RERAN" in _error(again)[1]


def test_a_data_test_failure_fails_again_on_resume_and_only_its_node_reruns(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    _, first = _failed_run(clock, dk, "fails-data-test")
    second = dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": K}).json()["serving_hid"]
    clock.advance(1)
    run = _details(dk, second, logs=True)
    assert run["status"] == "SERVING_ERROR"
    assert {line["node"] for line in run["log"]["lines"]} == {"", "load"}
    assert (
        run["log"]["lines"][0]["message"] == f"Order run planned: resuming order run {first} from node load"
    )


def test_skip_failed_nodes_and_resume_parameters(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation(K, R, "four", "SERVING_ERROR", nodes=["a", "b", "c", "d"], failing_node="b")
    order_id = dk.create("four", {"x": 1, "y": 2})
    clock.advance(1)
    first = dk.servings(order_id)[0]["hid"]
    response = dk.put(
        f"/v2/order/resume/{first}",
        json={"serving_hid": first, "kitchen_name": K, "skip-failed-nodes": True, "parameters": {"y": 3}},
    )
    second = response.json()["serving_hid"]
    clock.advance(1)
    run = _details(dk, second, logs=True)
    assert run["status"] == "COMPLETED_SERVING"  # the failing node was skipped
    assert run["variable_overrides"] == {"x": 1, "y": 3}
    assert [line["node"] for line in run["log"]["lines"] if line["node"]] == ["c"] * 3 + ["d"] * 3
    bad = dk.put(f"/v2/order/resume/{second}", json={"kitchen_name": K, "parameters": [1]})
    assert bad.status_code == 400
    assert '"parameters" must be a JSON object' in _error(bad)[1]


def test_resume_of_a_run_stopped_by_hand_restarts_the_node_it_stopped_in(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation(K, R, "long", planned_seconds=1, active_seconds=30)  # 10 s per node
    order_id = dk.create("long")
    clock.advance(1 + 15)  # in transform
    first = dk.servings(order_id)[0]["hid"]
    assert dk.servings(order_id)[0]["orderrun_status"] == "Order run in progress: node transform running"
    assert dk.put(f"/v2/serving/stop/{first}", json={"kitchen_name": K}).status_code == 200
    stopped_log = _log(dk, first)
    assert stopped_log[-1] == {
        "datetime": stopped_log[-1]["datetime"],
        "node": "",
        "message": f"Order run stopped by {USERNAME}",
        "level": "WARNING",
    }
    assert "Node transform completed" not in [line["message"] for line in stopped_log]
    second = dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": K}).json()["serving_hid"]
    clock.advance(31)
    assert _details(dk, second)["status"] == "COMPLETED_SERVING"
    assert [line["node"] for line in _log(dk, second) if line["node"]] == ["transform"] * 3 + ["load"] * 3


# ------------------------------------------------------------------------------------------ logs
def test_details_log_of_a_failed_data_test_run(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    order_id, run_id = _failed_run(clock, dk, "fails-data-test")
    lines = _log(dk, run_id)
    assert [line["node"] for line in lines] == [""] + ["extract"] * 3 + ["transform"] * 3 + ["load"] * 3
    assert all(set(line) == {"datetime", "node", "message", "level"} for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", line["datetime"]) for line in lines)
    assert [line["datetime"] for line in lines] == sorted(line["datetime"] for line in lines)
    assert lines[-1] == {
        "datetime": lines[-1]["datetime"],
        "node": "load",
        "message": f"Node load failed: test row_count_check FAILED: {ROW_COUNT_FAILURE}",
        "level": "ERROR",
    }
    assert lines[6]["level"] == "WARNING"  # transform ended with a test warning
    assert [line["level"] for line in lines].count("ERROR") == 1
    assert dk.servings(order_id)[0]["orderrun_status"] == lines[-1]["message"]


def test_logs_route_answers_the_same_lines(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    _, run_id = _failed_run(clock, dk, "flaky")
    response = dk.get(f"/v2/order/logs/{K}/{run_id}")
    assert response.status_code == 200
    assert response.json() == {"log": {"lines": _log(dk, run_id)}}
    assert response.json()["log"]["lines"][-1]["message"] == (
        "Node transform failed: the warehouse connection was reset (transient)"
    )
    assert dk.sandbox.count(route="logs") == 1
    missing = dk.get(f"/v2/order/logs/{K}/no-such-run")
    assert missing.status_code == 404
    assert _error(missing)[0] == f"kitchen ({K}),order run (no-such-run)"


def test_noisy_failure_log_is_bounded_only_by_the_variation(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    _, run_id = _failed_run(clock, dk, "noisy-failure")
    lines = _log(dk, run_id)
    assert len(lines) == 1 + 2 * 5000  # planned, then extract and transform (the failing node)
    assert lines[-1]["level"] == "ERROR"
    assert lines[-1]["node"] == "transform"
    assert len(dk.get(f"/v2/order/logs/{K}/{run_id}").json()["log"]["lines"]) == len(lines)


def test_log_grows_as_the_run_works_through_its_nodes(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation(K, R, "chatty", planned_seconds=1, active_seconds=3, log_lines_per_node=4)
    order_id = dk.create("chatty")
    run_id = dk.servings(order_id)[0]["hid"]
    assert [line["message"] for line in _log(dk, run_id)] == ["Order run planned"]
    clock.advance(1 + 0.5)  # half-way through extract (1 s per node, a line every 1/3 s)
    assert [line["message"] for line in _log(dk, run_id)] == [
        "Order run planned",
        "Node extract started",
        "Node extract: processed batch 1 of 2",
    ]
    clock.advance(2.5)
    lines = _log(dk, run_id)
    assert len(lines) == 1 + 3 * 4 + 1
    assert lines[-2:] == [
        {
            "datetime": lines[-2]["datetime"],
            "node": "load",
            "message": "Node load completed",
            "level": "INFO",
        },
        {"datetime": lines[-1]["datetime"], "node": "", "message": "Order run completed", "level": "INFO"},
    ]


# ------------------------------------------------------------------------------------------ test results
def test_test_report_of_a_failed_data_test_run_is_exact(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    _, run_id = _failed_run(clock, dk, "fails-data-test")
    assert _report(dk, run_id) == (
        f"Test results for order run {run_id}\n"
        "Node: extract\n"
        "  PASSED: source_freshness - orders_raw was updated 4 minutes ago\n"
        "Node: transform\n"
        "  PASSED: schema_check - orders_clean has the 12 expected columns\n"
        "  WARNING: null_ratio - 5.2% of customer_id values are null (limit 5%)\n"
        "Node: load\n"
        f"  FAILED: row_count_check - {ROW_COUNT_FAILURE}\n"
        "  PASSED: unique_order_id\n"
        "Totals: 3 passed, 1 warnings, 1 failed"
    )


def test_test_reports_of_a_flaky_run_and_its_resume(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation(
        K,
        R,
        "flaky-test",
        nodes=["extract", "check"],
        failing_node="check",
        fail_runs=1,
        tests=[{"node": "check", "name": "rows", "status": "FAILED", "message": "too few rows"}],
    )
    order_id = dk.create("flaky-test")
    clock.advance(1)
    first = dk.servings(order_id)[0]["hid"]
    assert _report(dk, first).splitlines()[1:] == [
        "Node: check",
        "  FAILED: rows - too few rows",
        "Totals: 0 passed, 0 warnings, 1 failed",
    ]
    second = dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": K}).json()["serving_hid"]
    clock.advance(1)
    assert _report(dk, second) == (
        f"Test results for order run {second}\nNode: check\n  PASSED: rows\nTotals: 1 passed, 0 warnings, 0 failed"
    )


def test_a_run_without_tests_reports_zero_totals(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    _, run_id = _failed_run(clock, dk, "noisy-failure")
    assert (
        _report(dk, run_id) == f"Test results for order run {run_id}\nTotals: 0 passed, 0 warnings, 0 failed"
    )


def test_serving_timings_are_kept_on_every_run(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    t0 = clock.now
    order_id, first = _failed_run(clock, dk, "flaky")
    dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": K})
    clock.advance(0.5)
    newest, oldest = dk.servings(order_id)
    assert oldest["timings"] == {
        "start-time": round(t0 * 1000),
        "end-time": round((t0 + 0.7) * 1000),
        "duration": 700,
    }
    assert newest["timings"] == {"start-time": round((t0 + 1) * 1000), "end-time": None, "duration": 500}


# ------------------------------------------------------------------------------------------ order list
def test_order_list_answer_shape(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    t0 = clock.now
    order_id = dk.create("success", {"n": 1})
    clock.advance(1)
    body = _list(dk)
    assert set(body) == {"kitchenname", "orders", "servings"}
    assert body["orders"] == [
        {
            "hid": order_id,
            "order-status": "COMPLETED_ORDER",
            "recipe_name": R,
            "variation_name": "success",
            "variable_overrides": {"n": 1},
            "created_time": round(t0 * 1000),
            "created_by": USERNAME,
            "schedule": None,
        }
    ]
    (serving,) = body["servings"]
    assert serving == dk.servings(order_id)[0]
    assert {
        "hid",
        "order_id",
        "recipe_name",
        "variation_name",
        "status",
        "orderrun_status",
        "timings",
    } <= set(serving)


def test_order_list_filters_each_narrow_the_list(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation(K, "other-recipe", "success")
    old = dk.create("success", {"region": "north"})
    clock.advance(600)  # ten minutes later
    failed = dk.create("fails", {"region": "south"})
    clock.advance(1)
    failed_run = dk.servings(failed)[0]["hid"]
    dk.put(f"/v2/order/resume/{failed_run}", json={"kitchen_name": K})  # a second run, planned
    other = dk.put(f"/v2/order/create/{K}/other-recipe/success", json={"parameters": {}}).json()["order_id"]
    clock.advance(0.1)

    def ids(**params: Any) -> list[str]:
        return [o["hid"] for o in _list(dk, **params)["orders"]]

    everything = ids()
    assert everything == [other, failed, old]
    assert ids(recipe=R) == ids(r=R) == [failed, old]
    assert ids(variation="success") == [other, old]
    assert ids(recipe=R, variation="success") == [old]
    assert ids(orderStatus="COMPLETED_ORDER") == [old]
    assert ids(orderStatus="ACTIVE_ORDER,COMPLETED_ORDER") == everything
    assert ids(orderRunStatus="SERVING_RERAN") == [failed]
    assert ids(timePeriod=5) == [other, failed]
    assert ids(timePeriod=11) == everything
    assert ids(search="NORTH") == [old]
    assert ids(search=failed[:13]) == [failed]
    assert ids(search="other-rec") == [other]
    assert ids(search="fails") == [failed]
    assert ids(count=2) == [other, failed]
    assert ids(recipe="no-such-recipe") == []

    servings = _list(dk)["servings"]
    assert [s["order_id"] for s in servings] == [other, failed, failed, old]  # newest start first
    assert [s["order_id"] for s in _list(dk, servingsCount=1)["servings"]] == [other, failed, old]
    assert [s["status"] for s in _list(dk, recipe=R, servingsCount=1)["servings"]] == [
        "PLANNED_SERVING",
        "COMPLETED_SERVING",
    ]
    reran = _list(dk, orderRunStatus="SERVING_RERAN")
    assert [(s["hid"], s["status"]) for s in reran["servings"]] == [(failed_run, "SERVING_RERAN")]


@pytest.mark.parametrize(("name", "value"), [("timePeriod", "yesterday"), ("servingsCount", "-1")])
def test_order_list_with_an_unusable_number_is_400(dk: DK, name: str, value: str) -> None:
    response = dk.get(f"/v2/order/status/{K}", params={name: value})
    assert response.status_code == 400
    message, detail = _error(response)
    assert message == f"kitchen ({K})"
    assert name in detail


def test_order_list_of_an_unknown_kitchen_is_417(dk: DK) -> None:
    response = dk.get("/v2/order/status/nowhere")
    assert response.status_code == 417
    assert _error(response) == ("kitchen (nowhere)", "unable to find the kitchen named nowhere")


def test_orders_are_listed_only_after_the_listing_delay() -> None:
    clock = FakeClock()
    with DataKitchenSandbox(clock=clock, listing_delay_seconds=5) as sandbox:
        dk = DK(sandbox)
        order_id = dk.create("success")
        clock.advance(1)
        assert _list(dk) == {"kitchenname": K, "orders": [], "servings": []}
        assert dk.servings(order_id)[0]["status"] == "COMPLETED_SERVING"  # the order itself is there
        clock.advance(3.999)
        assert _list(dk)["orders"] == []
        clock.advance(0.001)
        assert [o["hid"] for o in _list(dk)["orders"]] == [order_id]


# ------------------------------------------------------------------------------------------ scheduler
def test_scheduled_orders_are_listed_as_the_schedulers(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    sandbox, clock, dk = clocked
    by_python = sandbox.start_scheduled_order(K, R, "success", {"day": "monday"})
    response = admin(
        sandbox, "POST", "scheduled-orders", json={"kitchen": K, "recipe": R, "variation": "fails"}
    )
    assert response.status_code == 201
    by_admin = response.json()["order_id"]
    assert set(response.json()) == {"order_id"}
    by_user = dk.create("success")
    clock.advance(1)
    orders = {o["hid"]: o for o in _list(dk)["orders"]}
    assert set(orders) == {by_python, by_admin, by_user}
    for order_id in (by_python, by_admin):
        assert (orders[order_id]["created_by"], orders[order_id]["schedule"]) == (
            "DataKitchen Scheduler",
            "scheduled",
        )
    assert orders[by_python]["variable_overrides"] == {"day": "monday"}
    assert orders[by_admin]["order-status"] == "ORDER_ERROR"
    assert orders[by_user]["created_by"] == USERNAME
    assert sandbox.count(route="create_order") == 1  # the scheduler made no API request


@pytest.mark.parametrize(
    "body",
    [
        {"kitchen": K, "recipe": R},
        {"kitchen": K, "recipe": R, "variation": "nope"},
        {"kitchen": K, "recipe": R, "variation": "success", "parameters": [1]},
        {"kitchen": K, "recipe": R, "variation": "success", "colour": "red"},
    ],
)
def test_scheduled_order_admin_route_refusals(datakitchen_sandbox: DataKitchenSandbox, body: Any) -> None:
    response = admin(datakitchen_sandbox, "POST", "scheduled-orders", json=body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert datakitchen_sandbox.orders == {}


def _schedule_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("datakitchen-schedule-")]


def test_schedule_starts_orders_on_its_own_until_cancelled() -> None:
    with DataKitchenSandbox() as sandbox:
        dk = DK(sandbox)
        response = admin(
            sandbox,
            "POST",
            "schedules",
            json={
                "kitchen": K,
                "recipe": R,
                "variation": "success",
                "every_seconds": 0.05,
                "parameters": {"a": 1},
            },
        )
        assert response.status_code == 201
        schedule_id = response.json()["schedule_id"]
        assert admin(sandbox, "GET", "schedules").json() == {
            "schedules": [{"schedule_id": schedule_id, "every_seconds": 0.05}]
        }
        orders = wait_for(lambda: (o := _list(dk)["orders"]) and len(o) >= 2 and o, timeout=5)
        assert {(o["created_by"], o["schedule"]) for o in orders} == {("DataKitchen Scheduler", "scheduled")}
        assert all(o["variable_overrides"] == {"a": 1} for o in orders)
        assert admin(sandbox, "DELETE", f"schedules/{schedule_id}").json() == {"cleared": 1}
        assert admin(sandbox, "DELETE", f"schedules/{schedule_id}").status_code == 404
        assert _schedule_threads() == []  # its thread ended: no more orders
        sandbox.schedule_variation(K, R, "success", every_seconds=0.05)
        assert len(_schedule_threads()) == 1
    assert _schedule_threads() == []  # stopped with the sandbox


def test_schedules_requests_and_resumes_side_by_side_stay_consistent() -> None:
    """The model's lock keeps every answer whole while a ticker and client threads work at once."""
    with DataKitchenSandbox() as sandbox:
        sandbox.add_variation(K, R, "quick-fail", "SERVING_ERROR", planned_seconds=0, active_seconds=0)
        sandbox.schedule_variation(K, R, "quick-fail", every_seconds=0.01)
        problems: list[str] = []

        def client() -> None:
            dk = DK(sandbox)
            for _ in range(10):
                order_id = dk.create("quick-fail")
                run = dk.servings(order_id)[0]["hid"]
                for response in (
                    dk.put(f"/v2/order/resume/{run}", json={"kitchen_name": K}),
                    dk.get(f"/v2/order/status/{K}", params={"servingsCount": 2}),
                    dk.get(f"/v2/order/logs/{K}/{run}"),
                ):
                    if response.status_code != 200:
                        problems.append(f"{response.status_code} {response.text}")

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert problems == []
        mine = [o for o in sandbox.orders.values() if o.created_by == USERNAME]
        assert len(mine) == 40
        assert all(len(o.runs) == 2 for o in mine)
        assert any(o.created_by == "DataKitchen Scheduler" for o in sandbox.orders.values())


def test_schedule_refusals_and_reset(datakitchen_sandbox: DataKitchenSandbox) -> None:
    for body in (
        {"kitchen": K, "recipe": R, "variation": "success", "every_seconds": 0},
        {"kitchen": K, "recipe": R, "variation": "success", "every_seconds": "often"},
        {"kitchen": K, "recipe": R, "variation": "nope", "every_seconds": 1},
        {"kitchen": K, "recipe": R, "variation": "success"},
    ):
        response = admin(datakitchen_sandbox, "POST", "schedules", json=body)
        assert response.status_code == 400, body
    with pytest.raises(ValueError, match="every_seconds"):
        datakitchen_sandbox.schedule_variation(K, R, "success", every_seconds=-1)
    datakitchen_sandbox.schedule_variation(K, R, "success", every_seconds=60)
    assert len(datakitchen_sandbox.schedules) == 1
    assert admin(datakitchen_sandbox, "POST", "reset").status_code == 200
    assert datakitchen_sandbox.schedules == {}
    assert _schedule_threads() == []


# ------------------------------------------------------------------------------------------ catalogue
def test_add_variation_over_the_admin_route_with_nodes_and_tests(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    sandbox, clock, dk = clocked
    spec = {
        "kitchen": K,
        "recipe": R,
        "variation": "custom",
        "outcome": "SERVING_ERROR",
        "nodes": ["one", "two"],
        "failing_node": "one",
        "fail_runs": 2,
        "tests": [{"node": "one", "name": "t1", "status": "WARNING", "message": "hmm"}, ["two", "t2"]],
        "log_lines_per_node": 1,
    }
    response = admin(sandbox, "POST", "catalogue", json=spec)
    assert response.status_code == 201, response.text
    added = response.json()
    assert added["nodes"] == ["one", "two"]
    assert (added["failing_node"], added["fail_runs"], added["log_lines_per_node"]) == ("one", 2, 1)
    assert added["tests"] == [
        {"node": "one", "name": "t1", "status": "WARNING", "message": "hmm"},
        {"node": "two", "name": "t2", "status": "PASSED", "message": None},
    ]
    order_id = dk.create("custom")
    clock.advance(1)
    run = dk.servings(order_id)[0]["hid"]
    assert [line["node"] for line in _log(dk, run)] == ["", "one"]  # one line per node
    for _ in range(2):  # fail_runs=2: the first resume fails too, the second completes
        assert dk.servings(order_id)[0]["status"] == "SERVING_ERROR"
        run = dk.put(f"/v2/order/resume/{run}", json={"kitchen_name": K}).json()["serving_hid"]
        clock.advance(1)
    assert dk.servings(order_id)[0]["status"] == "COMPLETED_SERVING"
    assert [s["status"] for s in dk.servings(order_id)] == ["COMPLETED_SERVING"] + ["SERVING_RERAN"] * 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nodes", []),
        ("nodes", "extract"),
        ("nodes", ["a", "a"]),
        ("failing_node", "nowhere"),
        ("fail_runs", -1),
        ("log_lines_per_node", 0),
        ("tests", [{"node": "nowhere", "name": "t"}]),
        ("tests", [{"node": "load", "name": "t", "status": "MAYBE"}]),
        ("tests", [{"node": "load"}]),
    ],
)
def test_add_variation_refuses_unusable_new_fields(
    datakitchen_sandbox: DataKitchenSandbox, field: str, value: Any
) -> None:
    response = admin(
        datakitchen_sandbox,
        "POST",
        "catalogue",
        json={"kitchen": K, "recipe": R, "variation": "x", field: value},
    )
    assert response.status_code == 400
    assert "cannot add the variation" in response.json()["error"]
    assert "x" not in datakitchen_sandbox.model.catalogue[K][R]


def test_demo_catalogue_has_the_new_variations(datakitchen_sandbox: DataKitchenSandbox) -> None:
    catalogue = admin(datakitchen_sandbox, "GET", "catalogue").json()["catalogue"]
    assert catalogue[K][R] == sorted(
        ["success", "fails", "stopped", "slow", "fails-data-test", "flaky", "noisy-failure"]
    )
