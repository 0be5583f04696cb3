"""Fault cells where Airflow's task state and tries are the point: real tasks through ``dag.test()``.

Every task has ``retries=2`` (``retry_delay`` 0), the hooks ``max_retries`` 2: a fault armed 3 times spends
one call's budget, so the task's try fails and Airflow's own retry decides the outcome. Each cell checks
the final task state, the try it ended on, the requests the sandbox saw, and that there is never a
second DataKitchen order. The task logs of every run are scanned for secrets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from airflow_versions import register_dag
from reliability_support import KITCHEN, RECIPE, SecretScanner, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_RETRIES = 2
SPENT = MAX_RETRIES + 1  # faults that exhaust one hook call
EXTRA = {"retry_delay": 0.01, "max_retries": MAX_RETRIES, "timeout": 5}
INSTANT = "instant"


@dataclass
class TaskResult:
    state: str
    try_number: int
    log: str


def run_dag(dag_id: str, build: Callable[[], object], scanner: SecretScanner) -> dict[str, TaskResult]:
    """Build a DAG with ``build()`` inside it, ``dag.test()`` it, return each task's final state and log.

    ``dag.test()`` prints the task logs to stdout (read back through the scanner's capfd); any log files
    it leaves under ``AIRFLOW_HOME/logs`` are read too. Everything read is scanned for secrets.
    """
    from airflow.sdk import DAG

    default_args = {"retries": 2, "retry_delay": timedelta(0)}
    with DAG(
        dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args=default_args
    ) as dag:
        build()
    register_dag(dag)
    dr = dag.test()
    output = scanner.read_captured()
    home = Path(os.environ["AIRFLOW_HOME"])
    results = {}
    for ti in dr.get_task_instances():
        logs = sorted(home.glob(f"logs/dag_id={dag_id}/**/task_id={ti.task_id}/**/*.log"))
        files = "\n".join(p.read_text(errors="replace") for p in logs)
        for p in logs:
            scanner.add(str(p), p.read_text(errors="replace"))
        results[ti.task_id] = TaskResult(str(ti.state), int(ti.try_number), output + files)
    return results


@pytest.fixture
def dk(datakitchen_sandbox: Any, monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> Any:
    from airflow_provider_orders.hooks._datakitchen_session import TOKENS

    # Each cell starts like a fresh worker: no JWT cached by an earlier cell (one that cell's sandbox
    # may have expired would add a 401 + login to this cell's request counts).
    TOKENS.clear()
    datakitchen_sandbox.add_variation(KITCHEN, RECIPE, INSTANT, planned_seconds=0.0, active_seconds=0.0)
    monkeypatch.setenv("AIRFLOW_CONN_DATAKITCHEN_DEFAULT", datakitchen_sandbox.connection_json(EXTRA))
    return datakitchen_sandbox


@pytest.fixture
def ez(ezcater_sandbox: Any, monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", ezcater_sandbox.connection_json(EXTRA))
    return ezcater_sandbox


def _check(
    record_cell: Callable[..., None],
    name: str,
    expected: str,
    observed: str,
    problems: list[str],
    log: str = "",
) -> None:
    record_cell("dag", name, "", expected=expected, summary=observed, passed=not problems)
    errors = [line for line in log.splitlines() if "Error" in line or "error" in line][-15:]
    assert not problems, "; ".join(problems) + "\nerror lines of the task log:\n" + "\n".join(errors)


def _expect(problems: list[str], what: str, got: Any, want: Any) -> None:
    if got != want:
        problems.append(f"{what}: got {got!r}, expected {want!r}")


def test_submit_500_before_creating_is_looked_up_then_submitted_once_more(
    dk: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    dk.inject_fault("create_order", status=500)  # DataKitchen failed before creating anything
    res = run_dag(
        "rel_submit_500",
        lambda: SubmitRecipeOrderOperator(
            task_id="submit", kitchen=KITCHEN, recipe=RECIPE, variation="success", lost_order_grace=0.5
        ),
        secret_scan,
    )["submit"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 1)
    _expect(problems, "create requests", dk.count(route="create_order"), 2)
    _expect(problems, "orders", len(dk.orders), 1)
    if "submitting again is safe" not in res.log:
        problems.append("the task log does not say why submitting again is safe")
    _check(
        record_cell,
        "submit x 500 (answer lost, nothing created)",
        "the order list shows no such order within the grace: submitted once more, success on try 1, "
        "2 create requests, exactly 1 order",
        f"{res.state} on try {res.try_number}, {dk.count(route='create_order')} create, {len(dk.orders)} orders",
        problems,
        res.log,
    )


def test_submit_502_after_creating_adopts_the_listed_order(
    dk: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    dk.inject_fault("create_order", status=502, apply=True)  # created, then the answer was lost
    res = run_dag(
        "rel_submit_502_applied",
        lambda: SubmitRecipeOrderOperator(
            task_id="submit", kitchen=KITCHEN, recipe=RECIPE, variation="success", lost_order_grace=0.5
        ),
        secret_scan,
    )["submit"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 1)
    _expect(problems, "create requests", dk.count(route="create_order"), 1)
    _expect(problems, "orders", len(dk.orders), 1)
    if "Found the order this request created" not in res.log:
        problems.append("the task log does not say the order was found in the order list")
    _check(
        record_cell,
        "submit x 502 after DataKitchen created the order (answer lost)",
        "the order is found in the order list and adopted: success on try 1, 1 create request, 1 order",
        f"{res.state} on try {res.try_number}, {dk.count(route='create_order')} create, {len(dk.orders)} orders",
        problems,
        res.log,
    )


def test_submit_503_spent_then_airflow_retry_creates_one_order(
    dk: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    dk.inject_fault("create_order", status=503, times=SPENT)
    res = run_dag(
        "rel_submit_503_spent",
        lambda: SubmitRecipeOrderOperator(
            task_id="submit", kitchen=KITCHEN, recipe=RECIPE, variation=INSTANT
        ),
        secret_scan,
    )["submit"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 2)
    _expect(problems, "create requests", dk.count(route="create_order"), SPENT + 1)
    _expect(problems, "orders", len(dk.orders), 1)
    _check(
        record_cell,
        "submit x 503 x3 (hook budget spent on try 1)",
        f"success on try 2, {SPENT + 1} create requests, exactly 1 order",
        f"{res.state} on try {res.try_number}, {dk.count(route='create_order')} create, {len(dk.orders)} orders",
        problems,
        res.log,
    )


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_wait_fails_after_submit_then_retry_reattaches(
    deferrable: bool, dk: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    """The order exists, then every read fails: the retry must reattach to it, not order again."""
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    # poke mode: the first read after the submit (servings) fails 3x. Deferred: the worker's first read
    # succeeds (run planned), the trigger's reads of the run (details) fail 3x.
    dk.add_variation(KITCHEN, RECIPE, "short", planned_seconds=0.3, active_seconds=0.3)
    if deferrable:
        dk.inject_fault("details", status=503, times=SPENT)
    else:
        dk.inject_fault("servings", status=503, times=SPENT)
    res = run_dag(
        f"rel_wait_reattach_{'deferred' if deferrable else 'poke'}",
        lambda: SubmitRecipeOrderOperator(
            task_id="submit",
            kitchen=KITCHEN,
            recipe=RECIPE,
            variation="short",
            wait_for_completion=True,
            poll_interval=0.1,
            deferrable=deferrable,
        ),
        secret_scan,
    )["submit"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 2)
    _expect(problems, "create requests", dk.count(route="create_order"), 1)
    _expect(problems, "orders", len(dk.orders), 1)
    mode = "deferred (trigger reads fail)" if deferrable else "poke (worker reads fail)"
    _check(
        record_cell,
        f"submit + wait, {mode} x 503 x3 after the order exists",
        "success on try 2 by reattaching: 1 create request, exactly 1 order",
        f"{res.state} on try {res.try_number}, {dk.count(route='create_order')} create, {len(dk.orders)} orders",
        problems,
        res.log,
    )


def test_deferred_wait_heals_a_transient_read_fault_inside_the_trigger(
    dk: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    dk.add_variation(KITCHEN, RECIPE, "short", planned_seconds=0.3, active_seconds=0.3)
    dk.inject_fault("details", status=502)
    res = run_dag(
        "rel_deferred_heal",
        lambda: SubmitRecipeOrderOperator(
            task_id="submit",
            kitchen=KITCHEN,
            recipe=RECIPE,
            variation="short",
            wait_for_completion=True,
            poll_interval=0.1,
            deferrable=True,
        ),
        secret_scan,
    )["submit"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 1)
    _expect(problems, "orders", len(dk.orders), 1)
    _check(
        record_cell,
        "submit + wait, deferred x one 502 in the trigger",
        "success on try 1 (retried inside the trigger's hook call), 1 order",
        f"{res.state} on try {res.try_number}, {len(dk.orders)} orders",
        problems,
        res.log,
    )


def test_accept_lost_answers_spent_then_retry_counts_the_accept_as_its_own(
    ez: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    from airflow_provider_orders.operators.ezcater import AcceptOrderOperator

    order_id = ez.add_order(state="submitted")
    ez.inject_fault("acceptOrder", status=502, apply=True, times=SPENT)
    res = run_dag(
        "rel_accept_lost_spent",
        lambda: AcceptOrderOperator(task_id="accept", order_id=order_id),
        secret_scan,
    )["accept"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 2)
    _expect(problems, "order state", ez.order_state(order_id), "accepted")
    _expect(problems, "acceptOrder requests", ez.count(route="acceptOrder"), SPENT + 1)
    _check(
        record_cell,
        "accept x lost answer x3 (applied, then 502; budget spent on try 1)",
        f"success on try 2 (the record of try 1's send makes 'accepted' its own), {SPENT + 1} acceptOrder",
        f"{res.state} on try {res.try_number}, {ez.count(route='acceptOrder')} acceptOrder, "
        f"order {ez.order_state(order_id)}",
        problems,
        res.log,
    )


def test_lifecycle_sensor_503_spent_then_airflow_retry_succeeds(
    ez: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    from airflow_provider_orders.sensors.ezcater import OrderLifecycleSensor

    order_id = ez.add_order(state="submitted")
    ez.inject_fault("order", status=503, times=SPENT)
    res = run_dag(
        "rel_lifecycle_503_spent",
        lambda: OrderLifecycleSensor(
            task_id="wait", order_id=order_id, poke_interval=0.1, timeout=30, mode="poke"
        ),
        secret_scan,
    )["wait"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 2)
    _expect(problems, "order reads", ez.count(route="order"), SPENT + 1)
    _check(
        record_cell,
        "lifecycle sensor (poke) x 503 x3",
        f"success on try 2, {SPENT + 1} order reads",
        f"{res.state} on try {res.try_number}, {ez.count(route='order')} order reads",
        problems,
        res.log,
    )


def test_run_sensor_with_expired_token_logs_in_again(
    dk: Any, secret_scan: SecretScanner, record_cell: Callable[..., None]
) -> None:
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
    from airflow_provider_orders.sensors.datakitchen import RecipeOrderRunSensor

    hook = DataKitchenHook()
    order_id = hook.create_order(KITCHEN, RECIPE, INSTANT)["order_id"]
    assert wait_for(lambda: bool(hook.get_order_runs(KITCHEN, order_id)))
    dk.expire_tokens()
    dk.clear_requests()
    res = run_dag(
        "rel_sensor_expired_token",
        lambda: RecipeOrderRunSensor(
            task_id="wait", kitchen=KITCHEN, order_id=order_id, poke_interval=0.1, timeout=30, mode="poke"
        ),
        secret_scan,
    )["wait"]
    problems: list[str] = []
    _expect(problems, "task state", res.state, "success")
    _expect(problems, "try", res.try_number, 1)
    _expect(problems, "logins", dk.count(route="login"), 1)
    _check(
        record_cell,
        "run sensor (poke) x expired token",
        "success on try 1 after one new login",
        f"{res.state} on try {res.try_number}, {dk.count(route='login')} login(s)",
        problems,
        res.log,
    )
