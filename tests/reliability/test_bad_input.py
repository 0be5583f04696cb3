"""Bad input: each one fails with one clear error, sends (almost) nothing, and never starts a retry storm.

Hook-level cases check the error type, that the message names the offending value in the user's terms,
and the sandbox's request counts. The operator-level cases run in one ``dag.test()`` (every task with
``retries=2``) and check that each task fails on its first try with a message naming the problem.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from airflow_versions import register_dag
from reliability_support import DK_PASSWORD, EZ_TOKEN, KITCHEN, RECIPE, SecretScanner

if TYPE_CHECKING:
    from collections.abc import Callable

EXTRA = {"retry_delay": 0.01, "max_retries": 2, "timeout": 5}


@pytest.fixture
def sandboxes(
    datakitchen_sandbox: Any, ezcater_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Any]:
    dk, ez = datakitchen_sandbox, ezcater_sandbox
    monkeypatch.setenv("AIRFLOW_CONN_DATAKITCHEN_DEFAULT", dk.connection_json(EXTRA))
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", ez.connection_json(EXTRA))
    bad_dk = json.loads(dk.connection_json(EXTRA))
    bad_dk["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_DK_BAD_CREDENTIALS", json.dumps(bad_dk))
    bad_ez = json.loads(ez.connection_json(EXTRA))
    bad_ez["password"] = "not-the-token"
    monkeypatch.setenv("AIRFLOW_CONN_EZ_BAD_TOKEN", json.dumps(bad_ez))
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    return dk, ez


def _dk_hook(conn_id: str = "datakitchen_default") -> Any:
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    return DataKitchenHook(conn_id)


def _ez_hook(conn_id: str = "ezcater_default") -> Any:
    from airflow_provider_orders.hooks.ezcater import EzCaterHook

    return EzCaterHook(conn_id)


# (case, call, expected error types, fragments the message must contain, max requests (DataKitchen
#  API routes other than login + ezCater), route every sent DataKitchen API request must have)
HOOK_CASES: list[tuple[str, Callable[[], Any], tuple[str, ...], tuple[str, ...], int, str | None]] = [
    (
        "unknown variation",
        lambda: _dk_hook().create_order(KITCHEN, RECIPE, "no-such-variation"),
        ("RequestRejectedError",),
        ("no-such-variation", "unable to find the variation"),
        1,
        "create_order",
    ),
    (
        "unknown kitchen",
        lambda: _dk_hook().create_order("no-such-kitchen", RECIPE, "success"),
        ("RequestRejectedError",),
        ("no-such-kitchen",),
        1,
        "create_order",
    ),
    (
        "path-unsafe variation `../../login`",
        lambda: _dk_hook().create_order(KITCHEN, RECIPE, "../../login"),
        ("RequestRejectedError",),
        ("../../login",),
        1,
        "create_order",
    ),
    (
        "path-unsafe recipe `a/b`",
        lambda: _dk_hook().create_order(KITCHEN, "a/b", "success"),
        ("RequestRejectedError",),
        ("a/b",),
        1,
        "create_order",
    ),
    (
        "path-unsafe variation `x?y=1#z`",
        lambda: _dk_hook().create_order(KITCHEN, RECIPE, "x?y=1#z"),
        ("RequestRejectedError",),
        ("x?y=1#z",),
        1,
        "create_order",
    ),
    (
        "dot-segment names (kitchen `..`, recipe `..`)",
        lambda: _dk_hook().create_order("..", "..", "success"),
        ("RequestRejectedError", "PermanentOrdersError", "ValueError"),
        ("..",),
        1,
        "create_order",
    ),
    (
        "dot-segment order id `..` (run poke)",
        lambda: _dk_hook().get_order_runs(KITCHEN, ".."),
        ("RequestRejectedError", "OrderNotFoundError", "PermanentOrdersError", "ValueError"),
        ("..",),
        1,
        "servings",
    ),
    (
        "parameters not a dict (list)",
        lambda: _dk_hook().create_order(KITCHEN, RECIPE, "success", parameters=["a"]),
        ("RequestRejectedError", "PermanentOrdersError"),
        ("parameters",),
        0,
        None,
    ),
    (
        "parameters not JSON (a set)",
        lambda: _dk_hook().create_order(KITCHEN, RECIPE, "success", parameters={"regions": {"eu", "us"}}),
        ("RequestRejectedError", "PermanentOrdersError"),
        ("parameters", "regions"),
        0,
        None,
    ),
    (
        "parameters not JSON (NaN)",
        lambda: _dk_hook().create_order(KITCHEN, RECIPE, "success", parameters={"ratio": math.nan}),
        ("RequestRejectedError", "PermanentOrdersError"),
        ("parameters", "ratio"),
        0,
        None,
    ),
    (
        "empty order id (accept)",
        lambda: _ez_hook().accept_order(""),
        ("RequestRejectedError", "OrderNotFoundError", "ValueError"),
        ("order",),
        1,
        None,
    ),
    (
        "unknown order id (accept)",
        lambda: _ez_hook().accept_order("no-such-order"),
        ("OrderNotFoundError",),
        ("no-such-order", "Couldn't find Order"),
        1,
        None,
    ),
    (
        "bad DataKitchen credentials",
        lambda: _dk_hook("dk_bad_credentials").create_order(KITCHEN, RECIPE, "success"),
        ("AuthenticationFailedError",),
        ("dk_bad_credentials", "demo@example.com"),
        0,
        None,
    ),
    (
        "bad ezCater token",
        lambda: _ez_hook("ez_bad_token").accept_order("any-order"),
        ("AuthenticationFailedError",),
        ("ez_bad_token",),
        1,
        None,
    ),
    (
        "missing connection",
        lambda: _dk_hook("no_such_conn").create_order(KITCHEN, RECIPE, "success"),
        ("AirflowNotFoundException",),
        ("no_such_conn",),
        0,
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "types", "fragments", "max_requests", "route"),
    HOOK_CASES,
    ids=[c[0] for c in HOOK_CASES],
)
def test_hook_rejects_bad_input_clearly(
    case: str,
    call: Callable[[], Any],
    types: tuple[str, ...],
    fragments: tuple[str, ...],
    max_requests: int,
    route: str | None,
    sandboxes: tuple[Any, Any],
    secret_scan: SecretScanner,
    record_cell: Callable[..., None],
) -> None:
    dk, ez = sandboxes
    try:
        call()
    except Exception as exc:
        error: BaseException | None = exc
    else:
        error = None
    message = str(error) if error else ""
    secret_scan.add("exception text", message)
    logins = dk.count(route="login")
    dk_api = [r for r in dk.requests if r.route != "login"]
    sent = len(dk_api) + len(ez.requests)
    problems = []
    kind = type(error).__name__ if error else "no error"
    if kind not in types:
        problems.append(f"raised {kind}: {message[:300]!r}; expected one of {types}")
    missing = [f for f in fragments if f not in message]
    if missing:
        problems.append(f"message lacks {missing}: {message[:300]!r}")
    if sent > max_requests:
        problems.append(f"{sent} API requests, expected at most {max_requests}")
    if logins > 1:
        problems.append(f"{logins} logins (a retry storm on the login)")
    strays = [f"{r.method} {r.path}" for r in dk_api if route is not None and r.route != route]
    if strays:
        problems.append("requests reached other URLs: " + ", ".join(strays))
    if DK_PASSWORD in message or EZ_TOKEN in message or "not-the-password" in message:
        problems.append("the message contains a secret")
    if len(dk.orders):
        problems.append(f"{len(dk.orders)} orders were created")
    record_cell(
        "bad_input",
        f"hook: {case}",
        "",
        expected=f"{' or '.join(types)} naming {', '.join(repr(f) for f in fragments)}; "
        f"≤ {max_requests} API req (+ ≤ 1 login)",
        summary=f"{kind} · {sent} API req · {logins} login(s)"
        + (f" · sent to `{', '.join(strays)}`" if strays else "")
        + ("" if not missing else f" · message lacks {missing}"),
        passed=not problems,
        detail={"message": message[:500], "problems": problems},
    )
    assert not problems, "; ".join(problems)


# ------------------------------------------------------------------------------------------ operators


def _operator_cases() -> list[tuple[str, Callable[[], Any], str]]:
    """(task id, operator factory, regex the task's log must match)."""
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator
    from airflow_provider_orders.operators.ezcater import AcceptOrderOperator
    from airflow_provider_orders.sensors.datakitchen import RecipeOrderRunSensor

    return [
        (
            "accept_empty_id",
            lambda: AcceptOrderOperator(task_id="accept_empty_id", order_id=""),
            r"accept_empty_id.*order_id",
        ),
        (
            "accept_non_string_id",
            lambda: AcceptOrderOperator(task_id="accept_non_string_id", order_id=424242),  # type: ignore[arg-type]
            r"accept_non_string_id.*order_id.*424242",
        ),
        (
            "accept_unset_xcom_id",
            lambda: AcceptOrderOperator(
                task_id="accept_unset_xcom_id", order_id="{{ ti.xcom_pull(task_ids='nothing_here') }}"
            ),
            r"accept_unset_xcom_id.*order_id.*None",
        ),
        (
            "sensor_blank_ids",
            lambda: RecipeOrderRunSensor(
                task_id="sensor_blank_ids", kitchen=KITCHEN, order_id="  ", poke_interval=0.1, timeout=10
            ),
            r"sensor_blank_ids.*order_id",
        ),
        (
            "submit_parameters_not_dict",
            lambda: SubmitRecipeOrderOperator(
                task_id="submit_parameters_not_dict",
                kitchen=KITCHEN,
                recipe=RECIPE,
                variation="success",
                parameters=["a", "b"],  # type: ignore[arg-type]
            ),
            r"submit_parameters_not_dict.*parameters",
        ),
        (
            "submit_parameters_not_json",
            lambda: SubmitRecipeOrderOperator(
                task_id="submit_parameters_not_json",
                kitchen=KITCHEN,
                recipe=RECIPE,
                variation="success",
                parameters={"regions": {"eu", "us"}},
            ),
            r"parameters.*regions|regions.*parameters",
        ),
        (
            "submit_unknown_variation",
            lambda: SubmitRecipeOrderOperator(
                task_id="submit_unknown_variation",
                kitchen=KITCHEN,
                recipe=RECIPE,
                variation="no-such-variation",
            ),
            r"variation 'no-such-variation'.*HTTP 417",
        ),
        (
            "submit_bad_credentials",
            lambda: SubmitRecipeOrderOperator(
                task_id="submit_bad_credentials",
                kitchen=KITCHEN,
                recipe=RECIPE,
                variation="success",
                datakitchen_conn_id="dk_bad_credentials",
            ),
            r"refused the credentials.*dk_bad_credentials",
        ),
        (
            "accept_bad_token",
            lambda: AcceptOrderOperator(
                task_id="accept_bad_token", order_id="any-order", ezcater_conn_id="ez_bad_token"
            ),
            r"refused the API token.*ez_bad_token",
        ),
    ]


def test_operators_fail_bad_input_on_the_first_try(
    sandboxes: tuple[Any, Any],
    airflow_db: Any,
    secret_scan: SecretScanner,
    record_cell: Callable[..., None],
) -> None:
    from airflow.sdk import DAG

    dk, ez = sandboxes
    cases = _operator_cases()
    with DAG(
        "rel_bad_input",
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        default_args={"retries": 2, "retry_delay": timedelta(0)},
    ) as dag:
        for _, factory, _ in cases:
            factory()
    register_dag(dag)
    dr = dag.test()
    log = secret_scan.read_captured()
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    failures = []
    for task_id, _, pattern in cases:
        ti = tis[task_id]
        problems = []
        if str(ti.state) != "failed":
            problems.append(f"state {ti.state}")
        if ti.try_number != 1:
            problems.append(f"ended on try {ti.try_number} (retries were used)")
        if not re.search(pattern, log):
            problems.append(f"no log line matches {pattern!r}")
        record_cell(
            "bad_input",
            f"task: {task_id}",
            "",
            expected="failed on try 1, message names the problem",
            summary=f"{ti.state} on try {ti.try_number}"
            + ("" if re.search(pattern, log) else ", message unclear"),
            passed=not problems,
            detail={"problems": problems},
        )
        if problems:
            failures.append(f"{task_id}: {'; '.join(problems)}")
    sent = dk.count(route="create_order")
    logins = dk.count(route="login")
    record_cell(
        "bad_input",
        "tasks: requests for all of the above",
        "",
        expected="1 create_order (the unknown variation), ≤ 2 logins, 1 acceptOrder (the bad token)",
        summary=f"{sent} create_order, {logins} logins, {ez.count(route='acceptOrder')} acceptOrder",
        passed=sent == 1 and logins <= 2 and ez.count(route="acceptOrder") == 1,
    )
    assert sent == 1, f"{sent} create requests"
    assert logins <= 2, f"{logins} logins"
    assert ez.count(route="acceptOrder") == 1
    assert not failures, "\n".join(failures)
