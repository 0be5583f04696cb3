"""The notification-driven examples (``example_accept_notified_orders``, ``example_record_cancelled_orders``)
in real DAG runs (``dag.test()``) against the ezCater sandbox, and their order-id task on asset events.

``dag.test()`` creates a manual run, which carries no triggering asset events: the runs here name their
orders through ``run_conf={"order_ids": [...]}``, the DAGs' replay path. The asset-event path is tested on
the id task itself, with triggering events in the Task SDK's own shape.
"""

from __future__ import annotations

import inspect
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dag_runner import make_dag, run_dag

from airflow_provider_orders.version_compat import AIRFLOW_V_3_2_PLUS

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_provider_orders.sandbox import EzCaterSandbox

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
ACCEPT_DAG = "example_accept_notified_orders"
RECORD_DAG = "example_record_cancelled_orders"
GROUP = "notified_order"
REVIEW, ACCEPT, REJECT = f"{GROUP}.review", f"{GROUP}.accept", f"{GROUP}.reject"
SHOULD_ACCEPT, SHOULD_REJECT = f"{GROUP}.should_accept", f"{GROUP}.should_reject"


def _load(dag_id: str, dags_folder: Path | None = None) -> DAG:
    """The example DAG; copied into the session's dags folder first when it is to run (``dag.test()``)."""
    from airflow_versions import dagbag_class

    DagBag = dagbag_class()

    path = EXAMPLE_DAGS / f"{dag_id}.py"
    if dags_folder is not None:
        path = Path(shutil.copyfile(path, dags_folder / path.name))
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _seed(ez: EzCaterSandbox, *, headcount: int, state: str = "submitted") -> str:
    """A sandbox order of ``headcount`` guests (through ``add_order(headcount=...)`` where it exists)."""
    add_order: Any = ez.add_order
    if "headcount" in inspect.signature(add_order).parameters:
        return str(add_order(state=state, headcount=headcount))
    order_id = ez.add_order(state=state)
    ez.orders[order_id].headcount = headcount
    return order_id


def _states(run: Any) -> dict[tuple[str, int], str | None]:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def _mutations(ez: EzCaterSandbox, order_id: str) -> list[str]:
    return [
        r.root_field
        for r in ez.requests
        if r.root_field in ("acceptOrder", "rejectOrder") and order_id in r.body
    ]


# ------------------------------------------------------------------------------ the order-id tasks


def _events(*events: tuple[str, dict[str, Any]]) -> Any:
    """``context["triggering_asset_events"]`` as the Task SDK builds it: asset → its events (``.extra``)."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    return TriggeringAssetEventsAccessor.build(
        AssetEventDagRunReferenceResult(
            asset={"name": uri, "uri": uri, "extra": {}},
            extra=extra,
            source_task_id=None,
            source_dag_id=None,
            source_run_id=None,
            source_map_index=None,
            source_aliases=[],
            timestamp=datetime(2026, 7, 1, 12, minute, tzinfo=timezone.utc),
        )
        for minute, (uri, extra) in enumerate(events)
    )


def _extra(order_id: str, key: str) -> dict[str, Any]:
    return {
        "delivery_id": f"d-{order_id}-{key}",
        "order_id": order_id,
        "key": key,
        "caterer_id": "c0ffee00-0000-4000-8000-000000000001",
        "occurred_at": "2026-07-01T12:00:00Z",
    }


SUBMITTED_URI = "ezcater://ezcater_default/orders/submitted"
CANCELLED_URI = "ezcater://ezcater_default/orders/cancelled"


def test_notified_order_ids_reads_the_events_then_the_param_each_id_once() -> None:
    ids_task: Any = _load(ACCEPT_DAG).task_dict["notified_order_ids"]
    events = _events(
        (SUBMITTED_URI, _extra("order-1", "submitted")),
        (SUBMITTED_URI, _extra("order-2", "submitted")),
        (SUBMITTED_URI, _extra("order-1", "submitted")),  # ezCater notified twice
        (CANCELLED_URI, _extra("order-3", "cancelled")),  # another key: not to accept
        ("ezcater://ezcater_other/orders/submitted", _extra("order-4", "submitted")),  # another connection
        (SUBMITTED_URI, {"from_trigger": True}),  # an event that names no order
    )
    assert len(events) == 3  # three assets, as the scheduler would hand them over

    ids = ids_task.python_callable(
        triggering_asset_events=events, params={"order_ids": [" order-5 ", "order-2"]}
    )

    assert ids == ["order-1", "order-2", "order-5"]
    # A manual run: no events (the SDK's empty accessor), ids from the trigger form only; none at all: [].
    assert ids_task.python_callable(triggering_asset_events=_events(), params={"order_ids": ["x"]}) == ["x"]
    assert ids_task.python_callable(triggering_asset_events=_events(), params={"order_ids": []}) == []


def test_cancelled_order_ids_reads_only_cancelled_events() -> None:
    ids_task: Any = _load(RECORD_DAG).task_dict["cancelled_order_ids"]
    events = _events(
        (SUBMITTED_URI, _extra("order-1", "submitted")),
        (CANCELLED_URI, _extra("order-2", "cancelled")),
        (CANCELLED_URI, _extra("order-2", "cancelled")),
    )

    ids = ids_task.python_callable(triggering_asset_events=events, params={"order_ids": ["order-3"]})

    assert ids == ["order-2", "order-3"]


def test_the_dags_are_scheduled_on_their_connections_order_assets() -> None:
    from airflow_provider_orders.assets import ezcater_order_asset

    for dag_id, key in ((ACCEPT_DAG, "submitted"), (RECORD_DAG, "cancelled")):
        dag = _load(dag_id)
        condition: Any = dag.timetable.asset_condition  # AssetAll of the schedule's assets
        assert list(condition.objects) == [ezcater_order_asset("ezcater_default", key)], dag_id
        assert dag.catchup is False
        assert dag.params["order_ids"] == []
        dag.params.validate()


# -------------------------------------------------------------------------------- dag.test() runs


def test_each_notified_order_takes_its_own_branch(airflow_db: Path, ezcater_sandbox: EzCaterSandbox) -> None:
    """One run, four copies of the mapped group, three different decisions: each skip stays in its own
    copy (map index) of the group."""
    from airflow.utils.state import DagRunState, TaskInstanceState

    ez = ezcater_sandbox
    ordinary = _seed(ez, headcount=25)
    too_large = _seed(ez, headcount=400)
    cancelled = _seed(ez, headcount=25, state="cancelled")
    taken = _seed(ez, headcount=25, state="accepted")
    dag = _load(ACCEPT_DAG, airflow_db / "dags")

    run = dag.test(run_conf={"order_ids": [ordinary, too_large, cancelled, ordinary, taken]})

    states = _states(run)
    assert run.state == DagRunState.SUCCESS, states
    success, skipped = TaskInstanceState.SUCCESS, TaskInstanceState.SKIPPED
    expected = {("notified_order_ids", -1): success}
    # per copy: (review, should_accept, accept, should_reject, reject)
    for index, decided in enumerate(["accept", "reject", "neither", "neither"]):
        expected[(REVIEW, index)] = success
        expected[(SHOULD_ACCEPT, index)] = expected[(ACCEPT, index)] = (
            success if decided == "accept" else skipped
        )
        expected[(SHOULD_REJECT, index)] = expected[(REJECT, index)] = (
            success if decided == "reject" else skipped
        )
    assert states == expected
    decisions = {
        ti.map_index: ti.xcom_pull(task_ids=REVIEW, map_indexes=ti.map_index)
        for ti in run.get_task_instances()
        if ti.task_id == REVIEW
    }
    assert decisions == {0: "accept", 1: "reject", 2: "neither", 3: "neither"}
    # The sandbox agrees: one accept, one reject with the capacity reason, nothing sent for the others.
    assert ez.order_state(ordinary) == "accepted"
    assert _mutations(ez, ordinary) == ["acceptOrder"]  # once, although listed twice
    assert ez.order_state(too_large) == "rejected"
    assert _mutations(ez, too_large) == ["rejectOrder"]
    rejection = ez.orders[too_large].rejection
    assert rejection is not None
    assert rejection["reason"] == "AT_DAILY_CAPACITY"
    assert "150 guests" in rejection["explanation"]
    for untouched, state in ((cancelled, "cancelled"), (taken, "accepted")):
        assert ez.order_state(untouched) == state
        assert _mutations(ez, untouched) == []
        assert ez.orders[untouched].mutations == []


def test_capacity_comes_from_the_param(airflow_db: Path, ezcater_sandbox: EzCaterSandbox) -> None:
    from airflow.utils.state import DagRunState

    ez = ezcater_sandbox
    order = _seed(ez, headcount=25)
    dag = _load(ACCEPT_DAG, airflow_db / "dags")

    run = dag.test(run_conf={"order_ids": [order], "daily_headcount_capacity": 20})

    assert run.state == DagRunState.SUCCESS, _states(run)
    assert ez.order_state(order) == "rejected"
    rejection = ez.orders[order].rejection
    assert rejection is not None
    assert rejection["reason"] == "AT_DAILY_CAPACITY"
    assert "20 guests" in rejection["explanation"]
    assert ez.count(route="acceptOrder") == 0


def test_a_run_without_order_ids_succeeds_and_does_nothing(
    airflow_db: Path, ezcater_sandbox: EzCaterSandbox
) -> None:
    from airflow.utils.state import DagRunState, TaskInstanceState

    dag = _load(ACCEPT_DAG, airflow_db / "dags")

    run = dag.test(run_conf={"order_ids": []})

    states = _states(run)
    assert run.state == DagRunState.SUCCESS, states
    assert states[("notified_order_ids", -1)] == TaskInstanceState.SUCCESS
    # Mapped over an empty list: each task of the group is one skipped, unexpanded instance.
    group = {key: state for key, state in states.items() if key[0].startswith("notified_order.")}
    assert group == {
        (task_id, -1): TaskInstanceState.SKIPPED
        for task_id in (REVIEW, SHOULD_ACCEPT, ACCEPT, SHOULD_REJECT, REJECT)
    }
    assert ezcater_sandbox.requests == []


def test_record_cancelled_orders_returns_one_record_per_order(
    airflow_db: Path, ezcater_sandbox: EzCaterSandbox
) -> None:
    from airflow.utils.state import DagRunState

    ez = ezcater_sandbox
    cancelled = _seed(ez, headcount=30, state="cancelled")
    dag = _load(RECORD_DAG, airflow_db / "dags")

    run = dag.test(run_conf={"order_ids": [cancelled]})

    assert run.state == DagRunState.SUCCESS, _states(run)
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "record_cancelled_order"]
    order = ez.orders[cancelled]
    assert ti.xcom_pull(task_ids="record_cancelled_order", map_indexes=0) == {
        "order_id": cancelled,
        "order_number": order.order_number,
        "caterer": order.caterer_name,
        "state": "cancelled",
        "event_time": order.event_time.isoformat(),
    }
    assert [r.root_field for r in ez.requests] == ["order"]


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS, reason="the regression (apache/airflow#67265) came with Airflow 3.2"
)
def test_why_the_example_does_not_branch_a_branch_in_a_mapped_group_skips_nothing() -> None:
    """On the installed Airflow (3.3.2; apache/airflow#67265, open) a ``@task.branch`` inside a mapped task
    group skips none of its siblings: the branch writes its decision at its map index, the scheduler looks
    for it at -1. The example's review therefore hands its decision to two tasks that skip themselves.
    Should this test fail, Airflow has fixed it and the example could use ``@task.branch`` again."""
    from airflow.sdk import task, task_group

    with make_dag("branch_in_mapped_group") as dag:

        @task.branch
        def pick(n: int) -> str:
            return "group.chosen"

        @task
        def chosen() -> None: ...

        @task
        def not_chosen() -> None: ...

        @task_group(group_id="group")
        def group(n: int) -> None:
            pick(n) >> [chosen(), not_chosen()]

        group.expand(n=[1, 2])

    result = run_dag(dag)

    assert result.state_of("group.chosen", map_index=0) == "success"
    assert [result.state_of("group.not_chosen", map_index=i) for i in (0, 1)] == ["success", "success"], (
        "the branch now skips its sibling inside a mapped group: Airflow fixed apache/airflow#67265"
    )
