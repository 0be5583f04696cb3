"""DataKitchenHook over real HTTP against the DataKitchen sandbox."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from hook_test_support import run_async, wait_for

from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    NotAuthorizedError,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    PermanentOrdersError,
    RequestRejectedError,
    TransientOrdersError,
)
from airflow_provider_orders.hooks._datakitchen_session import TOKENS, jwt_expiry
from airflow_provider_orders.hooks._http import _loop_state
from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox

KITCHEN, RECIPE = "demo-kitchen", "demo-recipe"


def _create(hook: DataKitchenHook, variation: str = "success", **params: Any) -> str:
    return hook.create_order(KITCHEN, RECIPE, variation, params or None)["order_id"]


def _first_run(hook: DataKitchenHook, order_id: str, kitchen: str = KITCHEN) -> dict[str, Any]:
    return wait_for(lambda: (hook.get_order_runs(kitchen, order_id) or [None])[0])


def _statuses(dk: DataKitchenSandbox, route: str) -> list[int | None]:
    return [r.status for r in dk.requests if r.route == route]


def _tokens_sent(dk: DataKitchenSandbox) -> list[str]:
    return [
        r.headers["authorization"].removeprefix("Bearer ")
        for r in dk.requests
        if r.headers.get("authorization", "").startswith("Bearer ")
    ]


# ---------------------------------------------------------------------------------------------- methods


def test_create_order_returns_id_and_overrides(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    result = DataKitchenHook().create_order(KITCHEN, RECIPE, "success", {"some key": "some value"})

    order = dk.orders[result["order_id"]]
    assert (order.kitchen, order.recipe, order.variation) == (KITCHEN, RECIPE, "success")
    assert order.parameters == {"some key": "some value"}
    assert result["variable_overrides"] == {"some key": "some value"}
    (create,) = [r for r in dk.requests if r.route == "create_order"]
    assert create.method == "PUT"
    assert create.json()["parameters"] == {"some key": "some value"}


@pytest.mark.datakitchen_sandbox(id_key="serving_hid")
def test_create_order_accepts_the_seed_pages_serving_hid(datakitchen_sandbox: DataKitchenSandbox) -> None:
    result = DataKitchenHook().create_order(KITCHEN, RECIPE, "success")
    assert result["order_id"] in datakitchen_sandbox.orders
    assert result["serving_hid"] == result["order_id"]


def test_runs_are_empty_until_the_run_starts_then_listed_and_readable(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    dk.add_variation(KITCHEN, RECIPE, "queued", queue_seconds=1.0, planned_seconds=0.1, active_seconds=0.1)
    hook = DataKitchenHook()
    order_id = _create(hook, "queued")

    assert hook.get_order_runs(KITCHEN, order_id) == []
    run = _first_run(hook, order_id)
    assert run["order_id"] == order_id
    assert run["variation_name"] == "queued"

    final = wait_for(
        lambda: (r := hook.get_order_run(KITCHEN, run["hid"]))["status"] == "COMPLETED_SERVING" and r
    )
    assert final["hid"] == run["hid"]
    assert final["orderrun_status"]
    details = [r for r in dk.requests if r.route == "details"][-1]
    assert details.method == "POST"
    assert details.json()["serving_hid"] == run["hid"]


def test_stop_order_run_stops_a_running_order(datakitchen_sandbox: DataKitchenSandbox) -> None:
    hook = DataKitchenHook()
    order_id = _create(hook, "slow")
    run = _first_run(hook, order_id)

    answer = hook.stop_order_run(KITCHEN, run["hid"])

    assert isinstance(answer, dict)
    assert wait_for(lambda: hook.get_order_run(KITCHEN, run["hid"])["status"] == "STOPPED_SERVING")
    (stop,) = [r for r in datakitchen_sandbox.requests if r.route == "stop_run"]
    assert stop.json() == {"serving_hid": run["hid"], "kitchen_name": KITCHEN}


def test_stop_order_stops_the_order(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id = _create(hook, "slow")
    _first_run(hook, order_id)

    hook.stop_order(KITCHEN, order_id)

    assert wait_for(lambda: dk.orders[order_id].order_status() == "STOPPED_ORDER")
    (stop,) = [r for r in dk.requests if r.route == "stop_order"]
    assert stop.json() == {"serving_book_hid": order_id, "kitchen_name": KITCHEN}


def test_stop_run_or_order_stops_what_exists_and_says_so(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id = _create(hook, "slow")
    run = _first_run(hook, order_id)

    assert hook.stop_run_or_order(KITCHEN, order_id, run["hid"]) == f"order run '{run['hid']}' was stopped"
    assert [r.json() for r in dk.requests if r.route == "stop_run"] == [
        {"serving_hid": run["hid"], "kitchen_name": KITCHEN}
    ]
    assert dk.count(route="stop_order") == 0

    other = _create(hook, "slow")
    assert (
        hook.stop_run_or_order(KITCHEN, other, None) == f"no run had started, so order '{other}' was stopped"
    )
    assert [r.json() for r in dk.requests if r.route == "stop_order"] == [
        {"serving_book_hid": other, "kitchen_name": KITCHEN}
    ]
    with pytest.raises(RequestRejectedError, match="Nothing to stop"):
        hook.stop_run_or_order(KITCHEN, None, None)


def test_get_user_info_and_test_connection(datakitchen_sandbox: DataKitchenSandbox) -> None:
    hook = DataKitchenHook()
    assert hook.get_user_info()["customer_git_name"] == "demo-customer"

    ok, message = hook.test_connection()

    assert ok is True
    assert "demo@example.com" in message
    assert datakitchen_sandbox.url in message


def test_test_connection_reports_bad_credentials_without_the_password(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(datakitchen_sandbox.connection_json({"retry_delay": 0.01}))
    conn["password"] = "wrong-password-123"
    monkeypatch.setenv("AIRFLOW_CONN_DATAKITCHEN_DEFAULT", json.dumps(conn))

    ok, message = DataKitchenHook().test_connection()

    assert ok is False
    assert "demo@example.com" in message
    assert "Credentials are invalid" in message
    assert "wrong-password-123" not in message


def test_connection_from_any_airflow_conn_env_var(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dk = datakitchen_sandbox
    monkeypatch.setenv(
        "AIRFLOW_CONN_MY_DK",
        json.dumps(
            {"conn_type": "datakitchen", "host": dk.url, "login": dk.username, "password": dk.password}
        ),
    )
    hook = DataKitchenHook(datakitchen_conn_id="my_dk")
    assert hook.get_user_info()["customer_git_name"] == "demo-customer"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("", "https://cloud.datakitchen.io"),
        ("dk.example.com", "https://dk.example.com"),
        ("http://127.0.0.1:8123/", "http://127.0.0.1:8123"),
        ("HTTPS://dk.example.com/base", "https://dk.example.com/base"),
    ],
)
def test_host_defaults_and_scheme(monkeypatch: pytest.MonkeyPatch, host: str, expected: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DK_HOST",
        json.dumps(
            {"conn_type": "datakitchen", "host": host, "login": "u@example.com", "password": "pw-12345"}
        ),
    )
    assert DataKitchenHook("dk_host").base_url == expected


@pytest.mark.parametrize("host", ["http://127.0.0.1:99999", "https://:8080"])
def test_unusable_host_is_a_permanent_error_naming_the_connection(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DK_BAD_HOST",
        json.dumps(
            {"conn_type": "datakitchen", "host": host, "login": "u@example.com", "password": "pw-12345"}
        ),
    )
    with pytest.raises(PermanentOrdersError, match=r"'dk_bad_host'.*not a usable URL"):
        DataKitchenHook("dk_bad_host").get_user_info()
    with pytest.raises(PermanentOrdersError, match=r"'dk_bad_host'.*not a usable URL"):
        run_async(lambda: DataKitchenHook("dk_bad_host").aget_order_runs(KITCHEN, "o"))


def test_bad_connection_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DK_BAD",
        json.dumps(
            {
                "conn_type": "datakitchen",
                "login": "u@example.com",
                "password": "pw-12345",
                "extra": {"max_retries": "many"},
            }
        ),
    )
    with pytest.raises(PermanentOrdersError, match=r"'dk_bad'.*'max_retries'.*'many'"):
        DataKitchenHook("dk_bad").get_user_info()


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_variation_is_rejected_with_the_apis_text_and_not_retried(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    with pytest.raises(RequestRejectedError) as info:
        DataKitchenHook().create_order(KITCHEN, RECIPE, "missing-variation")

    error = info.value
    assert isinstance(error, AirflowFailException)
    assert error.http_status == 417
    text = str(error)
    assert "kitchen 'demo-kitchen', recipe 'demo-recipe', variation 'missing-variation'" in text
    assert "unable to find the variation named missing-variation" in text
    assert error.api_detail
    assert "missing-variation" in str(error.api_detail)
    assert datakitchen_sandbox.count(route="create_order") == 1
    assert datakitchen_sandbox.orders == {}


@pytest.mark.parametrize("status", [400, 412, 417])
def test_request_errors_quote_message_and_detail_issues(
    datakitchen_sandbox: DataKitchenSandbox, status: int
) -> None:
    dk = datakitchen_sandbox
    body = {
        "message": {
            "status": "failed",
            "error": {
                "message": "recipe validation failed",
                "detail": [
                    {"severity": "error", "file": "variations.json", "description": "unknown graph node-x"},
                    {"severity": "warning", "file": "description.json", "description": "no owner"},
                ],
            },
        }
    }
    dk.inject_fault("create_order", status=status, body=body)

    with pytest.raises(RequestRejectedError) as info:
        DataKitchenHook().create_order(KITCHEN, RECIPE, "success")

    text = str(info.value)
    assert f"HTTP {status}" in text
    assert "recipe validation failed" in text
    assert "error variations.json: unknown graph node-x" in text
    assert "no owner" in text
    assert "variation 'success'" in text
    assert dk.count(route="create_order") == 1


def test_a_200_that_is_not_success_is_rejected(datakitchen_sandbox: DataKitchenSandbox) -> None:
    datakitchen_sandbox.inject_fault(
        "create_order", status=200, body={"status": "failed", "error": "recipe is locked by another user"}
    )
    with pytest.raises(RequestRejectedError, match="recipe is locked by another user"):
        DataKitchenHook().create_order(KITCHEN, RECIPE, "success")


def test_other_4xx_is_rejected(datakitchen_sandbox: DataKitchenSandbox) -> None:
    datakitchen_sandbox.inject_fault("servings", status=409, body={"error": "conflict with a resume"})
    with pytest.raises(RequestRejectedError, match=r"HTTP 409.*conflict with a resume") as info:
        DataKitchenHook().get_order_runs(KITCHEN, "some-order")
    assert info.value.http_status == 409
    assert datakitchen_sandbox.count(route="servings") == 1


def test_403_is_not_authorized(datakitchen_sandbox: DataKitchenSandbox) -> None:
    datakitchen_sandbox.inject_fault(
        "create_order", status=403, body={"message": {"error": "user may not order in this kitchen"}}
    )
    with pytest.raises(NotAuthorizedError) as info:
        DataKitchenHook().create_order(KITCHEN, RECIPE, "success")
    text = str(info.value)
    assert "demo@example.com" in text
    assert "user may not order in this kitchen" in text
    assert "kitchen 'demo-kitchen'" in text


def test_unknown_order_run_is_not_found(datakitchen_sandbox: DataKitchenSandbox) -> None:
    with pytest.raises(OrderNotFoundError) as info:
        DataKitchenHook().get_order_run(KITCHEN, "no-such-run")
    assert "no-such-run" in str(info.value)
    assert "kitchen 'demo-kitchen'" in str(info.value)
    assert datakitchen_sandbox.count(route="details") == 1


def test_bad_credentials_fail_authentication_without_retry_or_password(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(datakitchen_sandbox.connection_json({"retry_delay": 0.01}))
    conn["password"] = "not-the-password-987"
    monkeypatch.setenv("AIRFLOW_CONN_DATAKITCHEN_DEFAULT", json.dumps(conn))

    with pytest.raises(AuthenticationFailedError) as info:
        DataKitchenHook().create_order(KITCHEN, RECIPE, "success")

    text = str(info.value)
    assert "demo@example.com" in text
    assert datakitchen_sandbox.url in text
    assert "not-the-password-987" not in text
    assert info.value.http_status == 401
    assert datakitchen_sandbox.count(route="login") == 1
    assert datakitchen_sandbox.count(route="create_order") == 0


# ---------------------------------------------------------------------------------------------- tokens


def test_one_login_is_reused_and_validatetoken_never_called(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id = _create(hook)
    hook.get_order_runs(KITCHEN, order_id)
    hook.get_user_info()
    DataKitchenHook().get_user_info()  # a second hook of the same process shares the token

    assert dk.count(route="login") == 1
    assert dk.count(route="validatetoken") == 0
    login = next(r for r in dk.requests if r.route == "login")
    assert "username=demo%40example.com" in login.body
    assert len(set(_tokens_sent(dk))) == 1


def test_concurrent_hooks_log_in_once(datakitchen_sandbox: DataKitchenSandbox) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            DataKitchenHook().get_user_info()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert datakitchen_sandbox.count(route="userinfo") == 16
    assert datakitchen_sandbox.count(route="login") == 1


@pytest.mark.datakitchen_sandbox(token_ttl=2)
def test_token_is_renewed_ahead_of_its_expiry(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    hook.get_user_info()
    (first,) = set(_tokens_sent(dk))
    exp = jwt_expiry(first)
    assert exp is not None

    wait_for(lambda: time.time() > exp + 0.1, timeout=10)  # the first token is now expired
    hook.get_user_info()

    assert dk.count(route="login") == 2
    assert 401 not in _statuses(dk, "userinfo")  # renewed before sending, not after a 401
    assert _tokens_sent(dk)[-1] != first


def test_expired_token_gets_one_relogin_and_the_call_is_repeated(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    hook.get_user_info()
    dk.expire_tokens()

    order_id = _create(hook)

    assert order_id in dk.orders
    assert len(dk.orders) == 1
    assert _statuses(dk, "create_order") == [401, 200]
    assert dk.count(route="login") == 2


def test_refreshed_token_header_replaces_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_orders.sandbox import DataKitchenSandbox

    with DataKitchenSandbox(refresh_within=10**9) as dk:  # every answer carries a refreshed_token
        monkeypatch.setenv("AIRFLOW_CONN_DATAKITCHEN_DEFAULT", dk.connection_json({"retry_delay": 0.01}))
        hook = DataKitchenHook()
        hook.get_user_info()
        hook.get_user_info()
        hook.get_user_info()

        sent = _tokens_sent(dk)
        assert len(sent) == 3
        assert len(set(sent)) == 3  # each call used the token the previous answer handed over
        assert dk.count(route="login") == 1


def test_token_rejected_again_after_relogin_is_an_authentication_error(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    hook.get_user_info()
    dk.expire_tokens()
    dk.inject_fault("userinfo", times=2, status=401, body={"code": "token_expired", "description": "nope"})

    with pytest.raises(AuthenticationFailedError, match="refused the token"):
        hook.get_user_info()
    assert dk.count(route="login") == 2


# ---------------------------------------------------------------------------------------------- encoding


def test_path_segments_are_percent_encoded(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    kitchen, recipe, variation = "my kitchen/x", "rec?ipe#1", "var%20iation"
    dk.add_variation(kitchen, recipe, variation, planned_seconds=0.05, active_seconds=0.05)
    hook = DataKitchenHook()

    order_id = hook.create_order(kitchen, recipe, variation)["order_id"]
    run = _first_run(hook, order_id, kitchen)
    assert hook.get_order_run(kitchen, run["hid"])["hid"] == run["hid"]
    assert run_async(lambda: DataKitchenHook().aget_order_runs(kitchen, order_id))[0]["hid"] == run["hid"]

    order = dk.orders[order_id]
    assert (order.kitchen, order.recipe, order.variation) == (kitchen, recipe, variation)
    create = next(r for r in dk.requests if r.route == "create_order")
    assert create.path == "/v2/order/create/my%20kitchen%2Fx/rec%3Fipe%231/var%2520iation"
    servings = [r.path for r in dk.requests if r.route == "servings"]
    assert all(p.startswith("/v2/order/servings/my%20kitchen%2Fx/") for p in servings)


# ---------------------------------------------------------------------------------------------- retries


def test_429_is_retried_honouring_retry_after(
    datakitchen_sandbox: DataKitchenSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    dk = datakitchen_sandbox
    dk.inject_fault("userinfo", status=429, headers={"Retry-After": "1"}, body={"error": "slow down"})
    hook = DataKitchenHook()
    _create(hook)  # log in first

    started = time.monotonic()
    assert hook.get_user_info()["customer_git_name"] == "demo-customer"
    waited = time.monotonic() - started

    assert _statuses(dk, "userinfo") == [429, 200]
    assert waited >= 0.95  # retry_delay is 0.01 s: only Retry-After explains a 1 s wait
    output = capfd.readouterr()
    assert "retrying in 1.00 s" in output.out + output.err


def test_429_and_503_on_create_are_retried_and_create_one_order(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    dk.inject_fault("create_order", status=429, headers={"Retry-After": "0"})
    dk.inject_fault("create_order", status=503)

    order_id = _create(DataKitchenHook())

    assert _statuses(dk, "create_order") == [429, 503, 200]
    assert list(dk.orders) == [order_id]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_error_on_create_is_not_retried(datakitchen_sandbox: DataKitchenSandbox, status: int) -> None:
    dk = datakitchen_sandbox
    dk.inject_fault("create_order", status=status, apply=True)

    with pytest.raises(OrderOutcomeUnknownError) as info:
        _create(DataKitchenHook())

    assert dk.count(route="create_order") == 1
    assert len(dk.orders) == 1  # the server did act: a retry would have made a second one
    text = str(info.value)
    assert "kitchen 'demo-kitchen', recipe 'demo-recipe', variation 'success' may have been created" in text
    assert f"HTTP {status}" in text
    assert f"GET {dk.url}/v2/order/status/demo-kitchen" in text
    assert "Orders page" in text
    assert isinstance(info.value, AirflowFailException)


def test_connection_dropped_after_create_was_applied_is_outcome_unknown(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    dk.inject_fault("create_order", drop=True, apply=True)

    with pytest.raises(OrderOutcomeUnknownError, match="may have been created"):
        _create(DataKitchenHook())

    assert dk.count(route="create_order") == 1
    assert len(dk.orders) == 1


@pytest.mark.datakitchen_sandbox(conn_extra={"timeout": 0.5})
def test_read_timeout_on_create_is_outcome_unknown(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    DataKitchenHook().get_user_info()  # log in with the short timeout first
    dk.inject_fault("create_order", delay=1.5, apply=True)

    with pytest.raises(OrderOutcomeUnknownError, match="no answer came back"):
        _create(DataKitchenHook())

    assert dk.count(route="create_order") == 1


@pytest.mark.datakitchen_sandbox(conn_extra={"timeout": 0.5})
def test_read_timeout_on_a_read_is_retried(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    dk.inject_fault("userinfo", delay=1.5)
    assert DataKitchenHook().get_user_info()["customer_git_name"] == "demo-customer"
    assert dk.count(route="userinfo") == 2


@pytest.mark.parametrize(
    ("route", "fault"),
    [
        ("servings", {"status": 500}),
        ("servings", {"drop": True}),
        ("details", {"status": 502}),
        ("details", {"status": 504}),
        ("stop_run", {"status": 500, "apply": True}),
        ("stop_order", {"drop": True, "apply": True}),
    ],
)
def test_reads_and_stops_are_retried_on_every_transient_failure(
    datakitchen_sandbox: DataKitchenSandbox, route: str, fault: dict[str, Any]
) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id = _create(hook, "slow")
    run = _first_run(hook, order_id)
    dk.clear_requests()
    dk.inject_fault(route, **fault)

    if route == "servings":
        assert hook.get_order_runs(KITCHEN, order_id)[0]["hid"] == run["hid"]
    elif route == "details":
        assert hook.get_order_run(KITCHEN, run["hid"])["hid"] == run["hid"]
    elif route == "stop_run":
        hook.stop_order_run(KITCHEN, run["hid"])
        assert wait_for(lambda: hook.get_order_run(KITCHEN, run["hid"])["status"] == "STOPPED_SERVING")
    else:
        hook.stop_order(KITCHEN, order_id)
        assert wait_for(lambda: dk.orders[order_id].order_status() == "STOPPED_ORDER")

    assert dk.count(route=route) == 2


@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 500}, {"drop": True}])
def test_login_is_retried_on_transient_failures(
    datakitchen_sandbox: DataKitchenSandbox, fault: dict[str, Any]
) -> None:
    datakitchen_sandbox.inject_fault("login", **fault)
    assert DataKitchenHook().get_user_info()["customer_git_name"] == "demo-customer"
    assert datakitchen_sandbox.count(route="login") == 2


def test_create_is_retried_when_the_login_before_it_fails(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    dk.inject_fault("login", drop=True)
    order_id = _create(DataKitchenHook())
    assert list(dk.orders) == [order_id]
    assert dk.count(route="create_order") == 1


@pytest.mark.datakitchen_sandbox(conn_extra={"max_retries": 3})
def test_retry_budget_exhaustion_is_transient_after_max_retries_plus_one(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    dk.inject_fault("servings", times=50, status=503, body={"error": "maintenance"})

    with pytest.raises(TransientOrdersError) as info:
        DataKitchenHook().get_order_runs(KITCHEN, "order-1")

    assert not isinstance(info.value, AirflowFailException)  # Airflow's task retries still apply
    assert dk.count(route="servings") == 4
    assert info.value.http_status == 503
    assert "4 attempt(s)" in str(info.value)
    assert "order 'order-1' in kitchen 'demo-kitchen'" in str(info.value)


def test_refused_connection_is_retried_even_for_create(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_orders.sandbox import DataKitchenSandbox

    dk = DataKitchenSandbox().start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAKITCHEN_DEFAULT", dk.connection_json({"retry_delay": 0.01, "max_retries": 2})
    )
    hook = DataKitchenHook()
    hook.get_user_info()  # logged in: the token is cached
    dk.stop()  # nothing listens on that port any more: every connect is refused

    with pytest.raises(TransientOrdersError) as info:
        _create(hook)

    assert "create an order for kitchen 'demo-kitchen'" in str(info.value)
    assert "failed after 3 attempt(s): could not connect" in str(info.value)
    output = capfd.readouterr()
    assert (output.out + output.err).count("retrying in") == 2


# ---------------------------------------------------------------------------------------------- links


def test_order_run_url_hash_and_dk_styles(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dk = datakitchen_sandbox
    assert DataKitchenHook().order_run_url("my kitchen", "run/1") == (
        f"{dk.url}/#/orders/demo-customer/my%20kitchen/runs/run%2F1"
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAKITCHEN_DEFAULT",
        dk.connection_json({"link_style": "dk", "web_app_url": "https://app.example.com/"}),
    )
    assert (
        DataKitchenHook().order_run_url("k", "r1")
        == "https://app.example.com/dk/orders/demo-customer/k/runs/r1"
    )
    assert DataKitchenHook().order_run_url("k", None) is None
    assert dk.count(route="userinfo") == 0  # the customer extra was enough


def test_order_run_url_looks_the_customer_up_once(
    datakitchen_sandbox: DataKitchenSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dk = datakitchen_sandbox
    conn = json.loads(dk.connection_json())
    conn["extra"] = {"retry_delay": 0.01}  # no customer, no web_app_url
    monkeypatch.setenv("AIRFLOW_CONN_DATAKITCHEN_DEFAULT", json.dumps(conn))

    first = DataKitchenHook().order_run_url("k", "r1")
    second = DataKitchenHook().order_run_url("k", "r2")

    assert first == f"{dk.url}/#/orders/demo-customer/k/runs/r1"
    assert second == f"{dk.url}/#/orders/demo-customer/k/runs/r2"
    assert dk.count(route="userinfo") == 1


# ---------------------------------------------------------------------------------------------- async


def test_async_twins_read_runs_and_share_the_sync_login(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id = _create(hook)
    run = _first_run(hook, order_id)

    async def read() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        other = DataKitchenHook()
        return await other.aget_order_runs(KITCHEN, order_id), await other.aget_order_run(KITCHEN, run["hid"])

    runs, one = run_async(read)

    assert runs[0]["hid"] == run["hid"]
    assert one["hid"] == run["hid"]
    assert dk.count(route="login") == 1


def test_many_concurrent_async_hooks_share_one_login_and_one_client(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    order_id = _create(DataKitchenHook())
    dk.clear_requests()
    TOKENS.clear()  # the triggerer starts without a token

    async def many() -> tuple[int, int]:
        hooks = [DataKitchenHook() for _ in range(200)]
        results = await asyncio.gather(*(h.aget_order_runs(KITCHEN, order_id) for h in hooks))
        client_ids = {id(c) for c in _loop_state().clients.values()}
        return len([r for r in results if isinstance(r, list)]), len(client_ids)

    answered, clients = run_async(many)

    assert answered == 200
    assert clients == 1
    assert dk.count(route="login") == 1
    assert dk.count(route="servings") == 200


def test_async_error_mapping_and_retries(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox

    order_id = _create(DataKitchenHook())

    async def scenario() -> None:
        hook = DataKitchenHook()
        with pytest.raises(OrderNotFoundError, match="no-such-run"):
            await hook.aget_order_run(KITCHEN, "no-such-run")
        dk.inject_fault("servings", status=503)
        dk.inject_fault("servings", drop=True)
        assert isinstance(await hook.aget_order_runs(KITCHEN, order_id), list)
        dk.expire_tokens()
        assert isinstance(await hook.aget_order_runs(KITCHEN, order_id), list)
        with pytest.raises(OrderNotFoundError, match="order 'unknown-order'"):
            await hook.aget_order_runs(KITCHEN, "unknown-order")

    run_async(scenario)

    assert _statuses(dk, "servings") == [503, None, 200, 401, 200, 404]
    assert dk.count(route="login") == 2


@pytest.mark.datakitchen_sandbox(conn_extra={"max_retries": 1})
def test_async_budget_exhaustion(datakitchen_sandbox: DataKitchenSandbox) -> None:
    datakitchen_sandbox.inject_fault("details", times=10, status=500)
    with pytest.raises(TransientOrdersError, match=r"2 attempt\(s\)"):
        run_async(lambda: DataKitchenHook().aget_order_run(KITCHEN, "r"))
    assert datakitchen_sandbox.count(route="details") == 2


# ---------------------------------------------------------------------------------------------- masking


def test_secrets_never_reach_logs_or_errors(
    datakitchen_sandbox: DataKitchenSandbox,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow.providers.common.compat.sdk import redact

    dk = datakitchen_sandbox
    caplog.set_level("DEBUG")
    hook = DataKitchenHook()
    errors: list[BaseException] = []
    hook.get_user_info()
    dk.expire_tokens()
    dk.inject_fault("servings", status=503)
    order_id = _create(hook)
    hook.get_order_runs(KITCHEN, order_id)
    run_async(lambda: DataKitchenHook().aget_order_runs(KITCHEN, order_id))
    dk.inject_fault("create_order", status=500)
    for failing in (
        lambda: hook.create_order(KITCHEN, RECIPE, "success"),
        lambda: hook.create_order(KITCHEN, RECIPE, "missing"),
        lambda: hook.get_order_run(KITCHEN, "nope"),
    ):
        with pytest.raises(PermanentOrdersError) as info:
            failing()
        errors.append(info.value)

    tokens = set(_tokens_sent(dk))
    assert len(tokens) == 2
    captured = capfd.readouterr()
    outputs = captured.out + captured.err + caplog.text
    error_texts = " ".join(f"{e} {e!r} {e.__cause__!r} {e.api_message} {e.api_detail}" for e in errors)
    for secret in [*tokens, dk.password]:
        assert secret not in outputs
        assert secret not in error_texts
        assert redact(f"token={secret}") == "token=***"  # registered with Airflow's secrets masker
    assert "Logged in to DataKitchen" in outputs  # the logs were captured at all
