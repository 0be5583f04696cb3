"""AcceptOrderOperator, RejectOrderOperator and OrderLifecycleSensor in real DAG runs (``dag.test()``)
against the ezCater sandbox: permanent errors, the modification flag, lost answers, mapping, conf /
params / XCom ids, and the sensor's modes.

Test DAGs have ``retries=2`` and ``retry_delay=0``: "failed on try 1" means the retries were not used.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from airflow_versions import needs_airflow_3_3, reads_task_exceptions
from dag_runner import make_dag, run_dag

from airflow_provider_orders.version_compat import AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import EzCaterSandbox

pytestmark = pytest.mark.usefixtures("airflow_db")

TRIGGER_CLASSPATH = "airflow_provider_orders.triggers.ezcater.OrderLifecycleTrigger"


def _accept(task_id: str, order_id: Any, **kwargs: Any) -> Any:
    from airflow_provider_orders.operators.ezcater import AcceptOrderOperator

    return AcceptOrderOperator(task_id=task_id, order_id=order_id, **kwargs)


def _lifecycle_sensor(task_id: str, order_id: Any, **kwargs: Any) -> Any:
    from airflow_provider_orders.sensors.ezcater import OrderLifecycleSensor

    kwargs.setdefault("poke_interval", 0.2)
    return OrderLifecycleSensor(task_id=task_id, order_id=order_id, **kwargs)


def _mutations_for(ez: EzCaterSandbox, order_id: str, root_field: str = "acceptOrder") -> int:
    return sum(1 for r in ez.requests if r.root_field == root_field and order_id in r.body)


def _deferred_order_ids() -> set[str]:
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Trigger).where(Trigger.classpath == TRIGGER_CLASSPATH)).all()
        return {str(row.kwargs.get("order_id")) for row in rows}


@reads_task_exceptions
def test_permanent_errors_and_the_modification_flag(
    ezcater_sandbox: EzCaterSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_orders.operators.ezcater import RejectOrderOperator

    ez = ezcater_sandbox
    missing = str(uuid.uuid4())
    orders = {
        "not_authorized": ez.add_order(authorized=False),
        "feature_not_enabled": ez.add_order(feature_enabled=False),
        "cancelled": ez.add_order(state="cancelled"),
        "rejected": ez.add_order(state="rejected"),
        "modification_without_flag": ez.add_order(state="accepted", pending_modification=True),
        "accepted_before": ez.add_order(state="accepted"),
    }
    modified = ez.add_order(state="accepted", pending_modification=True)
    to_reject = ez.add_order()
    with make_dag("ez_errors", params={"why": "kitchen closed"}) as dag:
        _accept("not_found", missing)
        for task_id, order_id in orders.items():
            _accept(task_id, order_id)
        _accept("modification_with_flag", modified, accept_modification=True)
        _accept("blank_order_id", "   ")
        RejectOrderOperator(
            task_id="reject",
            order_id=f" {to_reject} ",
            reason="AT_DAILY_CAPACITY",
            explanation="{{ params.why }}",
        )

    result = run_dag(dag)
    out = result.output(capfd.readouterr())

    for task_id in ("not_found", *orders, "blank_order_id"):
        ti = result.ti(task_id)
        assert (ti.state, ti.try_number) == ("failed", 1), task_id
    # one mutation each: neither the hook nor Airflow retried a permanent error
    assert _mutations_for(ez, missing) == 1
    for order_id in orders.values():
        assert _mutations_for(ez, order_id) == 1
    # the API's own messages reach the task log
    assert "Couldn't find Order" in out
    assert "You are not authorized to access this data" in out
    assert "Feature not enabled for the caterer associated with this order" in out
    assert "Sorry, we were unable to accept this order." in out
    assert "accept_modification=True" in out
    assert "sandbox-token" not in out
    # an order accepted before this task sent anything is not counted as this task's success
    assert ez.orders[orders["modification_without_flag"]].pending_modification is True

    ti = result.ti("modification_with_flag")
    assert (ti.state, ti.try_number) == ("success", 1)
    assert result.xcom("modification_with_flag")["lifecycle"]["orderIsCurrently"] == "accepted"
    assert ez.orders[modified].pending_modification is False

    assert result.state_of("reject") == "success"
    assert result.xcom("reject")["uuid"] == to_reject
    assert ez.order_state(to_reject) == "rejected"
    assert ez.orders[to_reject].rejection == {"reason": "AT_DAILY_CAPACITY", "explanation": "kitchen closed"}


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_lost_accept_answer_is_recognised(ez_sandbox_factory: Any) -> None:
    across_tries = ez_sandbox_factory("ez_lost_across_tries", max_retries=2)
    in_call = ez_sandbox_factory("ez_lost_in_call", max_retries=2)
    first = across_tries.add_order()
    second = in_call.add_order()
    # every attempt of try 1 applies the accept, then the answer is lost (502): the hook gives up
    across_tries.inject_fault("acceptOrder", status=502, apply=True, times=3)
    # one lost answer: the hook's next attempt meets "invalid state transition" and heals it itself
    in_call.inject_fault("acceptOrder", status=502, apply=True, times=1)
    with make_dag("ez_lost_answer") as dag:
        _accept("across_tries", first, ezcater_conn_id="ez_lost_across_tries")
        _accept("in_call", second, ezcater_conn_id="ez_lost_in_call")

    result = run_dag(dag)

    assert result.state == "success"
    ti = result.ti("across_tries")
    assert (ti.state, ti.try_number) == ("success", 2)
    assert result.xcom("across_tries")["uuid"] == first
    assert result.xcom("across_tries")["lifecycle"]["orderIsCurrently"] == "accepted"
    assert across_tries.count(route="acceptOrder") == 4  # 3 lost answers in try 1, 1 refusal in try 2
    ti = result.ti("in_call")
    assert (ti.state, ti.try_number) == ("success", 1)
    assert in_call.count(route="acceptOrder") == 2
    assert across_tries.order_state(first) == in_call.order_state(second) == "accepted"


def test_order_ids_from_mapping_conf_params_and_xcom(ezcater_sandbox: EzCaterSandbox) -> None:
    from airflow.sdk import task

    ez = ezcater_sandbox
    mapped = [ez.add_order() for _ in range(3)]
    from_conf, from_params, from_xcom = ez.add_order(), ez.add_order(), ez.add_order()
    from airflow_provider_orders.operators.ezcater import AcceptOrderOperator

    with make_dag("ez_ids", params={"fallback_order_id": from_params}) as dag:

        @task
        def upstream_order_id() -> str:
            return from_xcom

        AcceptOrderOperator.partial(task_id="mapped").expand(order_id=mapped)
        _accept("from_conf", "{{ dag_run.conf['order_id'] }}")
        _accept("from_params", "{{ params.fallback_order_id }}")
        _accept("from_xcom", upstream_order_id())

    result = run_dag(dag, run_conf={"order_id": from_conf})

    assert result.state == "success"
    for index, order_id in enumerate(mapped):
        ti = result.ti("mapped", map_index=index)
        assert (ti.state, ti.try_number) == ("success", 1)
        assert result.xcom("mapped", map_index=index)["uuid"] == order_id
    for task_id, order_id in (
        ("from_conf", from_conf),
        ("from_params", from_params),
        ("from_xcom", from_xcom),
    ):
        assert result.xcom(task_id)["uuid"] == order_id, task_id
    assert all(ez.order_state(o) == "accepted" for o in [*mapped, from_conf, from_params, from_xcom])
    assert ez.count(route="acceptOrder") == 6


def test_lifecycle_sensor_modes_failure_and_unknown_states(ezcater_sandbox: EzCaterSandbox) -> None:
    from airflow.sdk import task

    ez = ezcater_sandbox
    created: dict[str, str] = {}

    def new_order(name: str, *transitions: tuple[str, float]) -> Any:
        @task(task_id=f"create_{name}")
        def create() -> str:
            created[name] = ez.add_order(state="draft", transitions=list(transitions))
            return created[name]

        return create()

    @task(task_id="create_odd", trigger_rule="all_done")
    def create_odd() -> str:
        created["odd"] = order_id = ez.add_order(state="draft", transitions=[("submitted", 1.0)])
        odd_answer = {"data": {"order": {"uuid": order_id, "lifecycle": {"orderIsCurrently": "on_hold"}}}}
        ez.inject_fault("order", status=200, body=odd_answer, times=2)
        return order_id

    with make_dag("ez_lifecycle_sensor") as dag:
        order_a = new_order("a", ("submitted", 2.5))
        poke = _lifecycle_sensor("sensor_poke", order_a)
        order_b = new_order("b", ("submitted", 2.5))
        resched = _lifecycle_sensor("sensor_reschedule", order_b, mode="reschedule", poke_interval=1)
        order_c = new_order("c", ("submitted", 2.5))
        defer = _lifecycle_sensor("sensor_deferrable", order_c, deferrable=True)
        order_d = new_order("d", ("submitted", 0.5), ("cancelled", 0.5))
        fail = _lifecycle_sensor("sensor_failure_state", order_d, target_states=["Accepted"])
        odd = create_odd()
        unknown = _lifecycle_sensor("sensor_unknown_state", odd, trigger_rule="all_done")
        order_a >> poke >> order_b >> resched >> order_c >> defer >> order_d >> fail
        fail >> odd >> unknown  # all_done: runs although `fail` failed

    result = run_dag(dag)

    for sensor in ("sensor_poke", "sensor_reschedule", "sensor_deferrable", "sensor_unknown_state"):
        ti = result.ti(sensor)
        assert (ti.state, ti.try_number) == ("success", 1), sensor
        assert result.xcom(sensor) == "submitted", sensor
    if AIRFLOW_V_3_3_PLUS:  # before 3.3, dag.test() pokes a reschedule sensor again in place, no row
        assert result.reschedule_count("sensor_reschedule") >= 1
    if AIRFLOW_V_3_3_PLUS:  # before 3.3, dag.test() may already have deleted the finished trigger's row
        assert created["c"] in _deferred_order_ids()
    assert created["a"] not in _deferred_order_ids()
    ti = result.ti("sensor_failure_state")
    assert (ti.state, ti.try_number) == ("failed", 1)
    # "on_hold" is no state this provider knows: the sensor kept waiting instead of failing
    odd_reads = [r for r in ez.requests if r.root_field == "order" and created["odd"] in r.body]
    assert [r.fault is not None for r in odd_reads][:2] == [True, True]
    assert len(odd_reads) >= 3
    assert json.loads(odd_reads[-1].body)["variables"]["orderId"] == created["odd"]
