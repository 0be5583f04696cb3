"""What a try does with what earlier tries left behind (issue 11): kills, clears, changed overrides, a task
state store that refuses a write, stale "sent" records, and the small argument rules.

DAG-level cells run ``dag.test()`` against the sandboxes. Where only a scheduler can produce the situation
(a clear starts a new attempt), the operator runs against the sandbox over HTTP with the context a
cleared try gets (``try_number`` / ``max_tries`` as Airflow sets them, a dict-backed task state store);
the real clears, kills and restarts run in tests/lifecycle against a real Airflow.
"""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from airflow_versions import needs_airflow_3_3
from dag_runner import make_dag, run_dag

from airflow_provider_orders.version_compat import AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

pytestmark = pytest.mark.usefixtures("airflow_db")

K, R = "demo-kitchen", "demo-recipe"


def _submit(task_id: str, variation: str, **kwargs: Any) -> Any:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    kwargs.setdefault("poll_interval", 0.2)
    return SubmitRecipeOrderOperator(task_id=task_id, kitchen=K, recipe=R, variation=variation, **kwargs)


def _orders(dk: DataKitchenSandbox, variation: str) -> list[Any]:
    return sorted((o for o in dk.orders.values() if o.variation == variation), key=lambda o: o.created_at)


class DictStore:
    """A task state store kept in a dict (what ``context["task_state_store"]`` offers, minus the API)."""

    def __init__(self, **values: Any) -> None:
        self.values: dict[str, Any] = dict(values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def _context(store: DictStore, *, try_number: int, max_tries: int) -> dict[str, Any]:
    ti = SimpleNamespace(try_number=try_number, max_tries=max_tries, xcom_push=lambda **_: None)
    return {"ti": ti, "task_state_store": store}


# ------------------------------------------------------------------------------------------ DataKitchen


@pytest.mark.skipif(
    not AIRFLOW_V_3_1_PLUS,
    reason="under Airflow 3.0's dag.test() the retry of the deferred try places no second order; "
    "not investigated further (checked on 3.1+, and against a real Airflow in the lifecycle matrix)",
)
def test_a_try_killed_by_execution_timeout_is_ordered_again_on_retry(dk_sandbox_factory: Any) -> None:
    """Each try is killed by execution_timeout and stops its run; the retry runs the recipe again
    (it used to fail at once on the run the first try stopped, with one order in total)."""
    dk = dk_sandbox_factory("dk_exec_timeout", max_retries=1)
    for name in ("long_poke", "long_deferred"):
        dk.add_variation(K, R, name, planned_seconds=0.2, active_seconds=120)
    with make_dag("dk_exec_timeout", default_args={"retries": 1}) as dag:
        for name, deferrable in (("long_poke", False), ("long_deferred", True)):
            _submit(
                name,
                name,
                wait_for_completion=True,
                deferrable=deferrable,
                execution_timeout=timedelta(seconds=3),
                datakitchen_conn_id="dk_exec_timeout",
            )

    result = run_dag(dag)

    for name in ("long_poke", "long_deferred"):
        ti = result.ti(name)
        assert (ti.state, ti.try_number) == ("failed", 2), name
        orders = _orders(dk, name)
        assert len(orders) == 2, name  # one order per try
        for order in orders:
            assert [run.status() for run in order.runs] in (["STOPPED_SERVING"], []), name
            assert order.stopped_at is not None or order.runs, name


def test_changed_overrides_are_ordered_again_not_reattached(dk_sandbox_factory: Any) -> None:
    from airflow_provider_orders.exceptions import TransientOrdersError

    dk = dk_sandbox_factory("dk_overrides", max_retries=1)

    def fail_first_try(context: Any, result: Any) -> None:
        if context["ti"].try_number == 1:
            raise TransientOrdersError("simulated worker trouble after the order was created")

    with make_dag("dk_overrides") as dag:
        _submit(
            "changed",
            "success",
            wait_for_completion=True,
            parameters={"attempt": "{{ ti.try_number }}"},
            datakitchen_conn_id="dk_overrides",
            post_execute=fail_first_try,
        )

    result = run_dag(dag)

    ti = result.ti("changed")
    assert (ti.state, ti.try_number) == ("success", 2)
    first, second = _orders(dk, "success")
    assert (first.parameters, second.parameters) == ({"attempt": "1"}, {"attempt": "2"})
    assert result.xcom("changed") == second.order_id


@needs_airflow_3_3  # task_state_store carries the order / the send across tries
def test_an_order_the_state_store_refuses_is_stopped_before_the_retry(
    dk_sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retry could find an order the store did not take: try 1 stops it; try 2 orders again."""
    from airflow.sdk.execution_time.context import TaskStateStoreAccessor

    from airflow_provider_orders import _task_state
    from airflow_provider_orders.operators.datakitchen import ORDER_STATE_KEY

    dk = dk_sandbox_factory("dk_store_refuses", max_retries=1)
    dk.add_variation(K, R, "steady", planned_seconds=0.2, active_seconds=0.5)
    monkeypatch.setattr(_task_state, "WRITE_PAUSES", (0.01, 0.01))
    real_set = TaskStateStoreAccessor.set
    refused: list[str] = []

    def flaky_set(self: Any, key: str, value: Any, **kwargs: Any) -> None:
        if key == ORDER_STATE_KEY and len(refused) < 3:  # every write of try 1
            refused.append(key)
            raise RuntimeError("API server answered 500")
        real_set(self, key, value, **kwargs)

    monkeypatch.setattr(TaskStateStoreAccessor, "set", flaky_set)
    with make_dag("dk_store_refuses") as dag:
        _submit("submit", "steady", wait_for_completion=True, datakitchen_conn_id="dk_store_refuses")

    result = run_dag(dag)

    ti = result.ti("submit")
    assert (ti.state, ti.try_number) == ("success", 2)
    first, second = _orders(dk, "steady")
    assert first.stopped_at is not None  # the unrecorded order was stopped
    assert all(run.status() == "STOPPED_SERVING" for run in first.runs)
    assert result.xcom("submit") == second.order_id
    assert len(refused) == 3


def test_a_timeout_after_a_resume_stops_the_current_run_not_the_superseded_one(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    from airflow_provider_orders.exceptions import OrderRunFailedError
    from airflow_provider_orders.models.datakitchen import OrderRun, OrderRunStatus
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    dk = datakitchen_sandbox
    dk.add_variation(K, R, "resumed", planned_seconds=0.1, active_seconds=120)
    op = SubmitRecipeOrderOperator(
        task_id="t", kitchen=K, recipe=R, variation="resumed", wait_for_completion=True, timeout=5
    )
    order_id = str(op.hook.create_order(K, R, "resumed", {})["order_id"])
    (order,) = _orders(dk, "resumed")
    first = order.runs[0].hid
    dk.model.stop_run(first, kitchen=K)
    current = dk.model.resume_run(first, kitchen=K).hid
    superseded = OrderRun(id=first, order_id=order_id, status=OrderRunStatus.SERVING_RERAN)

    with pytest.raises(OrderRunFailedError, match="did not finish within timeout"):
        op._stop_after_timeout(order_id, superseded)

    stopped = [json.loads(r.body)["serving_hid"] for r in dk.requests if r.route == "stop_run"]
    assert stopped == [current]
    assert order.runs[-1].status() == "STOPPED_SERVING"


def test_poll_interval_zero_is_refused_and_a_trigger_never_busy_loops() -> None:
    from airflow_provider_orders.sensors.datakitchen import RecipeOrderRunSensor
    from airflow_provider_orders.sensors.ezcater import OrderLifecycleSensor
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    with pytest.raises(ValueError, match="poll_interval must be > 0"):
        _submit("zero", "success", wait_for_completion=True, poll_interval=0)
    with pytest.raises(ValueError, match="poke_interval must be > 0"):
        RecipeOrderRunSensor(task_id="s", kitchen=K, order_id="o", poke_interval=0)
    with pytest.raises(ValueError, match="poke_interval must be > 0"):
        OrderLifecycleSensor(task_id="e", order_id="o", poke_interval=0)
    # a trigger serialized by an older version with 0 still pauses between reads
    trigger = OrderRunTrigger(datakitchen_conn_id="c", kitchen=K, order_id="o", poll_interval=0)
    assert trigger.poll_interval > 0


# ------------------------------------------------------------------------------------------ ezCater


def _accept(order_id: str, **kwargs: Any) -> Any:
    from airflow_provider_orders.operators.ezcater import AcceptOrderOperator

    kwargs.setdefault("retries", 1)
    return AcceptOrderOperator(task_id="accept", order_id=order_id, **kwargs)


def test_a_cleared_accept_does_not_count_the_old_record_as_its_own(ezcater_sandbox: EzCaterSandbox) -> None:
    """Accepted by try 1; the customer modifies the order; the task is cleared (a new attempt): the
    new try's refusal must fail the task, not succeed on try 1's record."""
    from airflow_provider_orders.exceptions import InvalidStateTransitionError
    from airflow_provider_orders.operators.ezcater import ACCEPT_STATE_KEY

    ez = ezcater_sandbox
    order = ez.add_order()
    store = DictStore()
    first_try = _context(store, try_number=1, max_tries=1)
    _accept(order).execute(first_try)
    assert ACCEPT_STATE_KEY not in store.values  # a succeeded send leaves no record behind
    # a record as an older version (or a lost delete) would leave it
    store.set(ACCEPT_STATE_KEY, {"order_id": order, "try_number": 1, "accept_modification": False})
    ez.update_order(order, pending_modification=True)

    # the clear set max_tries = try_number + retries = 1 + 1: try 2 is the first of the new attempt
    cleared = _context(store, try_number=2, max_tries=2)
    with pytest.raises(InvalidStateTransitionError, match="accept_modification=True"):
        _accept(order).execute(cleared)
    assert ez.orders[order].pending_modification is True  # the modification was never accepted

    # the same record from a try of the *current* attempt is that attempt's own lost answer
    store.set(ACCEPT_STATE_KEY, {"order_id": order, "try_number": 2, "accept_modification": False})
    ez.update_order(order, pending_modification=False)
    retry = _context(store, try_number=3, max_tries=2)  # Airflow's retry of try 2: same attempt
    assert _accept(order).execute(retry)["lifecycle"]["orderIsCurrently"] == "accepted"


def test_a_send_that_never_reached_ezcater_vouches_for_nothing(
    ez_sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Try 1 cannot connect (ezCater is down); someone else accepts the order; try 2 must not take that
    accept for its own."""
    from airflow_provider_orders.sandbox import EzCaterSandbox

    ez = ez_sandbox_factory("ez_never_sent", max_retries=1)
    order = ez.add_order()
    down = EzCaterSandbox(port=0)
    down.start()
    down_json = down.connection_json({"retry_delay": 0.01, "max_retries": 1})
    down.stop()  # nothing listens on its port any more
    up_json = f"{__import__('os').environ['AIRFLOW_CONN_EZ_NEVER_SENT']}"
    monkeypatch.setenv("AIRFLOW_CONN_EZ_NEVER_SENT", down_json)

    def someone_else_accepts_before_try_2(context: Any) -> None:
        import os

        if context["ti"].try_number == 2:
            os.environ["AIRFLOW_CONN_EZ_NEVER_SENT"] = up_json
            ez.model.accept(order)

    with make_dag("ez_never_sent", default_args={"retries": 1}) as dag:
        _accept(order, ezcater_conn_id="ez_never_sent", pre_execute=someone_else_accepts_before_try_2)

    result = run_dag(dag)

    ti = result.ti("accept")
    assert (ti.state, ti.try_number) == ("failed", 2)
    assert ez.count(route="acceptOrder") == 1  # try 2's refused send; try 1 reached nobody


def test_a_reject_does_not_count_a_customer_cancellation_as_its_own(ezcater_sandbox: EzCaterSandbox) -> None:
    from airflow_provider_orders.exceptions import InvalidStateTransitionError
    from airflow_provider_orders.operators.ezcater import REJECT_STATE_KEY, RejectOrderOperator

    ez = ezcater_sandbox
    order = ez.add_order()
    store = DictStore()
    # try 1 recorded its send, then was killed before the request left; the customer cancels
    store.set(REJECT_STATE_KEY, {"order_id": order, "try_number": 1, "sent": True})
    ez.update_order(order, state="cancelled")
    op = RejectOrderOperator(task_id="reject", order_id=order, reason="AT_DAILY_CAPACITY", retries=1)

    with pytest.raises(InvalidStateTransitionError):
        op.execute(_context(store, try_number=2, max_tries=1))
    assert ez.order_state(order) == "cancelled"


def test_templated_flag_and_states_render_from_conf(ezcater_sandbox: EzCaterSandbox) -> None:
    from airflow_provider_orders.operators.ezcater import AcceptOrderOperator
    from airflow_provider_orders.sensors.ezcater import OrderLifecycleSensor

    ez = ezcater_sandbox
    modified = ez.add_order(state="accepted", pending_modification=True)
    with make_dag("ez_templated_flags") as dag:
        wait = OrderLifecycleSensor(
            task_id="wait",
            order_id="{{ dag_run.conf['order_id'] }}",
            target_states="{{ dag_run.conf['states'] }}",
            poke_interval=0.1,
            timeout=10,
        )
        accept = AcceptOrderOperator(
            task_id="accept",
            order_id="{{ dag_run.conf['order_id'] }}",
            accept_modification="{{ dag_run.conf['accept_modification'] }}",
        )
        wait >> accept

    result = run_dag(
        dag, run_conf={"order_id": modified, "states": "submitted, accepted", "accept_modification": True}
    )

    assert result.ti("wait").state == "success"
    assert result.xcom("wait") == "accepted"
    assert result.ti("accept").state == "success"
    assert ez.orders[modified].pending_modification is False


def test_a_flag_that_is_not_yes_or_no_fails_without_retrying(ezcater_sandbox: EzCaterSandbox) -> None:
    from airflow_provider_orders.exceptions import PermanentOrdersError

    order = ezcater_sandbox.add_order()
    with pytest.raises(PermanentOrdersError, match="accept_modification must be true or false"):
        _accept(order, accept_modification="perhaps").execute(
            _context(DictStore(), try_number=1, max_tries=1)
        )
    assert ezcater_sandbox.order_state(order) == "submitted"
