"""EzCaterHook over real HTTP against the ezCater sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from hook_test_support import run_async

from airflow_provider_orders import __version__
from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    FeatureNotEnabledError,
    InvalidStateTransitionError,
    NotAuthorizedError,
    OrderNotFoundError,
    PermanentOrdersError,
    RequestRejectedError,
    TransientOrdersError,
)
from airflow_provider_orders.hooks.ezcater import EzCaterHook

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import EzCaterSandbox

UNKNOWN = "11111111-2222-4333-8444-555555555555"
SEED_STYLE = pytest.mark.ezcater_sandbox(error_code_style="seed")
HTTP_STATUS = pytest.mark.ezcater_sandbox(http_error_status=True)
SEED_AND_HTTP = pytest.mark.ezcater_sandbox(error_code_style="seed", http_error_status=True)
ERROR_STYLES = [
    pytest.param("upper", id="upper-case-codes"),
    pytest.param("seed", marks=SEED_STYLE, id="seed-spelling"),
    pytest.param("upper+http", marks=HTTP_STATUS, id="upper-with-http-status"),
    pytest.param("seed+http", marks=SEED_AND_HTTP, id="seed-with-http-status"),
]


def _ops(ez: EzCaterSandbox, route: str) -> list[Any]:
    return [r for r in ez.requests if route in r.routes]


def _statuses(ez: EzCaterSandbox, route: str) -> list[int | None]:
    return [r.status for r in _ops(ez, route)]


def _with_connection(monkeypatch: pytest.MonkeyPatch, ez: EzCaterSandbox, **changes: Any) -> None:
    conn = json.loads(ez.connection_json({"retry_delay": 0.01}))
    conn.update(changes)
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", json.dumps(conn))


# ---------------------------------------------------------------------------------------------- methods


def test_get_order_returns_the_order(ezcater_sandbox: EzCaterSandbox) -> None:
    uuid = ezcater_sandbox.add_order()

    order = EzCaterHook().get_order(uuid)

    assert order["uuid"] == uuid
    assert order["lifecycle"]["orderIsCurrently"] == "submitted"
    assert order["orderNumber"]
    assert order["caterer"]["uuid"]
    assert order["event"]["headcount"] > 0
    assert order["totals"]["customerTotalDue"]["currency"]
    assert order["catererCart"]["orderItems"]


def test_operations_are_named_use_variables_and_send_client_headers(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()
    hook = EzCaterHook()
    hook.get_order(uuid)
    hook.accept_order(uuid)

    read, accept = ez.requests
    assert read.json()["operationName"] == "Order"
    assert read.json()["query"].lstrip().startswith("query Order(")
    assert read.json()["variables"] == {"orderId": uuid}
    assert accept.json()["operationName"] == "AcceptOrder"
    assert accept.json()["query"].lstrip().startswith("mutation AcceptOrder(")
    assert accept.json()["variables"] == {"orderId": uuid, "acceptModification": False}
    for request in (read, accept):
        assert uuid not in request.json()["query"]
        assert request.headers["authorization"] == "sandbox-token"  # raw, no "Bearer"
        assert request.headers["apollographql-client-name"] == "airflow-provider-orders"
        assert request.headers["apollographql-client-version"] == __version__


@pytest.mark.ezcater_sandbox(conn_extra={"client_name": "acme-catering-sync", "client_version": "7.1"})
def test_client_name_and_version_come_from_extras(ezcater_sandbox: EzCaterSandbox) -> None:
    EzCaterHook().get_order(ezcater_sandbox.add_order())
    (request,) = ezcater_sandbox.requests
    assert request.headers["apollographql-client-name"] == "acme-catering-sync"
    assert request.headers["apollographql-client-version"] == "7.1"


def test_variables_are_never_formatted_into_the_query(ezcater_sandbox: EzCaterSandbox) -> None:
    hostile = 'x") { uuid } } mutation Evil { acceptOrder(orderId: "y'
    hook = EzCaterHook()
    hook.get_order(ezcater_sandbox.add_order())
    with pytest.raises(OrderNotFoundError):
        hook.get_order(hostile)
    plain, attacked = ezcater_sandbox.requests
    assert attacked.json()["query"] == plain.json()["query"]
    assert "Evil" not in attacked.json()["query"]
    assert attacked.json()["variables"] == {"orderId": hostile}
    assert "acceptOrder" not in attacked.routes


def test_accept_order(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()

    order = EzCaterHook().accept_order(uuid)

    assert order == {"uuid": uuid, "lifecycle": {"orderIsCurrently": "accepted"}}
    assert ez.order_state(uuid) == "accepted"


def test_accept_a_pending_modification_needs_the_flag(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order(state="accepted", pending_modification=True)
    hook = EzCaterHook()

    with pytest.raises(InvalidStateTransitionError) as info:
        hook.accept_order(uuid)
    assert info.value.order_state == "accepted"
    assert "accept_modification=True" in str(info.value)
    assert "Sorry, we were unable to accept this order." in str(info.value)
    assert uuid in str(info.value)

    order = hook.accept_order(uuid, accept_modification=True)
    assert order["lifecycle"]["orderIsCurrently"] == "accepted"
    assert _ops(ez, "acceptOrder")[-1].json()["variables"]["acceptModification"] is True


def test_reject_order_with_and_without_explanation(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    first, second = ez.add_order(), ez.add_order()
    hook = EzCaterHook()

    assert hook.reject_order(first, "AT_DAILY_CAPACITY", "fully booked")["lifecycle"]["orderIsCurrently"] == (
        "rejected"
    )
    hook.reject_order(second, "STAFF_SHORTAGE")

    assert ez.order_state(first) == ez.order_state(second) == "rejected"
    one, two = _ops(ez, "rejectOrder")
    assert one.json()["operationName"] == "RejectOrder"
    assert one.json()["variables"] == {
        "orderId": first,
        "rejectOrderInput": {"reason": "AT_DAILY_CAPACITY", "explanation": "fully booked"},
    }
    assert two.json()["variables"]["rejectOrderInput"] == {"reason": "STAFF_SHORTAGE"}


def test_reject_with_an_unknown_reason_is_rejected(ezcater_sandbox: EzCaterSandbox) -> None:
    with pytest.raises(RequestRejectedError, match="NOT_A_REASON"):
        EzCaterHook().reject_order(ezcater_sandbox.add_order(), "NOT_A_REASON")
    assert ezcater_sandbox.count(route="rejectOrder") == 1


def test_test_connection(ezcater_sandbox: EzCaterSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = EzCaterHook().test_connection()
    assert ok is True
    assert ezcater_sandbox.graphql_url in message
    (probe,) = ezcater_sandbox.requests
    assert probe.json()["operationName"] == "Order"

    _with_connection(monkeypatch, ezcater_sandbox, password="wrong-token-4242")
    ok, message = EzCaterHook().test_connection()
    assert ok is False
    assert "wrong-token-4242" not in message
    assert "refused the API token" in message


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("", "https://api.ezcater.com/graphql"),
        ("api.example.com", "https://api.example.com/graphql"),
        ("http://127.0.0.1:9000/custom/graphql", "http://127.0.0.1:9000/custom/graphql"),
    ],
)
def test_endpoint_defaults(monkeypatch: pytest.MonkeyPatch, host: str, expected: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_EZ_HOST", json.dumps({"conn_type": "ezcater", "host": host, "password": "tok-12345"})
    )
    assert EzCaterHook("ez_host").url == expected


def test_a_connection_without_token_is_an_authentication_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EZ_EMPTY", json.dumps({"conn_type": "ezcater", "host": "127.0.0.1:1"}))
    with pytest.raises(AuthenticationFailedError, match="'ez_empty' has no API token"):
        EzCaterHook("ez_empty").get_order(UNKNOWN)


def test_module_import_does_not_import_gql_or_graphql() -> None:
    code = (
        "import sys; import airflow_provider_orders.hooks.ezcater as m; "
        "bad = sorted({n.split('.')[0] for n in sys.modules} & {'gql', 'graphql', 'requests'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("style", ERROR_STYLES)
def test_order_not_found(ezcater_sandbox: EzCaterSandbox, style: str) -> None:
    hook = EzCaterHook()
    for call in (lambda: hook.get_order(UNKNOWN), lambda: hook.accept_order(UNKNOWN)):
        with pytest.raises(OrderNotFoundError) as info:
            call()
        assert "Couldn't find Order" in str(info.value)
        assert UNKNOWN in str(info.value)
        assert isinstance(info.value, AirflowFailException)
    assert ezcater_sandbox.count(route="graphql") == 2  # permanent: not retried


@pytest.mark.parametrize("style", ERROR_STYLES)
def test_not_authorized(ezcater_sandbox: EzCaterSandbox, style: str) -> None:
    uuid = ezcater_sandbox.add_order(authorized=False)
    with pytest.raises(NotAuthorizedError, match="You are not authorized to access this data") as info:
        EzCaterHook().accept_order(uuid)
    assert uuid in str(info.value)
    assert ezcater_sandbox.count(route="acceptOrder") == 1


@pytest.mark.parametrize("style", ERROR_STYLES)
def test_feature_not_enabled(ezcater_sandbox: EzCaterSandbox, style: str) -> None:
    uuid = ezcater_sandbox.add_order(feature_enabled=False)
    with pytest.raises(FeatureNotEnabledError, match="Feature not enabled for the caterer") as info:
        EzCaterHook().accept_order(uuid)
    assert uuid in str(info.value)
    assert ezcater_sandbox.order_state(uuid) == "submitted"


@pytest.mark.parametrize("style", ERROR_STYLES)
def test_invalid_state_transition_reports_the_current_state(
    ezcater_sandbox: EzCaterSandbox, style: str
) -> None:
    uuid = ezcater_sandbox.add_order(state="cancelled")

    with pytest.raises(InvalidStateTransitionError) as info:
        EzCaterHook().accept_order(uuid)

    assert info.value.order_state == "cancelled"
    text = str(info.value)
    assert "Sorry, we were unable to accept this order." in text
    assert "currently 'cancelled'" in text
    assert uuid in text
    assert "accept_modification" not in text
    assert ezcater_sandbox.count(route="acceptOrder") == 1
    assert ezcater_sandbox.count(route="order") == 1  # the one read that names the state


SEED_ERRORS = {
    "not-found": (
        {
            "message": "couldn't find order",
            "path": ["acceptorder"],
            "extensions": {
                "type": "request",
                "statuscode": 404,
                "servicename": "orders public",
                "code": "downstream service error",
            },
        },
        OrderNotFoundError,
    ),
    "not-authorized": (
        {
            "message": "you are not authorized to access this data",
            "path": ["acceptorder"],
            "extensions": {"type": "request", "statuscode": 403, "code": "downstream service error"},
        },
        NotAuthorizedError,
    ),
    "feature-not-enabled": (
        {
            "message": "feature not enabled for the caterer associated with this order",
            "locations": [{"line": 4, "column": 3}],
            "path": ["acceptorder"],
            "extensions": {"type": "summary", "code": "feature not enabled"},
        },
        FeatureNotEnabledError,
    ),
    "invalid-state-transition": (
        {
            "message": "sorry, we were unable to accept this order ",
            "path": ["acceptorder"],
            "extensions": {"type": "summary", "code": "invalid state transition"},
        },
        InvalidStateTransitionError,
    ),
    "FEATURE_NOT_ENABLED": (
        {"message": "Feature not enabled", "extensions": {"code": "FEATURE_NOT_ENABLED"}},
        FeatureNotEnabledError,
    ),
    "Invalid-State_Transition": (
        {"message": "Sorry", "extensions": {"code": "Invalid-State_Transition"}},
        InvalidStateTransitionError,
    ),
}


@pytest.mark.parametrize("http_status", [200, 400, 422])
@pytest.mark.parametrize("case", list(SEED_ERRORS))
def test_seed_page_error_bodies_verbatim_whatever_the_http_status(
    ezcater_sandbox: EzCaterSandbox, case: str, http_status: int
) -> None:
    error, expected = SEED_ERRORS[case]
    uuid = ezcater_sandbox.add_order()
    ezcater_sandbox.inject_fault(
        "acceptOrder", status=http_status, body={"errors": [error], "data": {"acceptorder": None}}
    )

    with pytest.raises(expected) as info:
        EzCaterHook().accept_order(uuid)

    assert error["message"].strip() in str(info.value)
    assert ezcater_sandbox.count(route="acceptOrder") == 1
    if expected is InvalidStateTransitionError:
        assert info.value.order_state == "submitted"  # type: ignore[attr-defined]


def test_a_5xx_graphql_error_with_a_known_meaning_is_not_a_transport_error(
    ezcater_sandbox: EzCaterSandbox,
) -> None:
    ezcater_sandbox.inject_fault(
        "order",
        status=500,
        body={"errors": [{"message": "Couldn't find Order", "extensions": {"statusCode": 404}}]},
    )
    with pytest.raises(OrderNotFoundError):
        EzCaterHook().get_order(UNKNOWN)
    assert ezcater_sandbox.count(route="order") == 1


def test_bad_token_is_an_authentication_error_without_retry_or_token(
    ezcater_sandbox: EzCaterSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_connection(monkeypatch, ezcater_sandbox, password="stolen-token-777")
    with pytest.raises(AuthenticationFailedError) as info:
        EzCaterHook().accept_order(ezcater_sandbox.add_order())
    assert info.value.http_status == 401
    assert "ezcater_default" in str(info.value)
    assert "stolen-token-777" not in str(info.value)
    assert ezcater_sandbox.count(route="acceptOrder") == 1


# ---------------------------------------------------------------------------------------------- retries


def test_429_is_retried_honouring_retry_after(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()
    ez.inject_fault("order", status=429, headers={"Retry-After": "1"})

    started = time.monotonic()
    assert EzCaterHook().get_order(uuid)["uuid"] == uuid
    waited = time.monotonic() - started

    assert _statuses(ez, "order") == [429, 200]
    assert waited >= 0.95  # retry_delay is 0.01 s: only Retry-After explains a 1 s wait


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 502, "body": "<html>bad gateway</html>"},
        {"status": 503, "body": {"errors": [{"message": "upstream unavailable"}]}},
        {"drop": True},
    ],
)
def test_accept_is_retried_on_transient_failures(
    ezcater_sandbox: EzCaterSandbox, fault: dict[str, Any]
) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()
    ez.inject_fault("acceptOrder", **fault)

    order = EzCaterHook().accept_order(uuid)

    assert order["lifecycle"]["orderIsCurrently"] == "accepted"
    assert ez.count(route="acceptOrder") == 2


@pytest.mark.parametrize(
    "fault",
    [
        {"drop": True},
        {"status": 500},
        {"status": 502},
        {"status": 504},
        {"status": 502, "body": {"errors": [{"message": "upstream timed out"}], "data": None}},
    ],
)
def test_accept_whose_answer_was_lost_heals_within_the_call(
    ezcater_sandbox: EzCaterSandbox, fault: dict[str, Any]
) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()
    ez.inject_fault("acceptOrder", apply=True, **fault)  # accepted, then the answer is lost

    order = EzCaterHook().accept_order(uuid)

    assert order["uuid"] == uuid
    assert order["lifecycle"]["orderIsCurrently"] == "accepted"
    assert ez.count(route="acceptOrder") == 2  # the retry met INVALID_STATE_TRANSITION...
    assert ez.count(route="order") == 1  # ...and one read showed our first attempt had worked


def test_an_order_accepted_elsewhere_is_not_counted_as_ours(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order(state="accepted")
    ez.inject_fault("acceptOrder", status=503)  # the server did not act: nothing of ours was lost

    with pytest.raises(InvalidStateTransitionError) as info:
        EzCaterHook().accept_order(uuid)

    assert info.value.order_state == "accepted"
    assert "accept_modification=True" in str(info.value)
    assert ez.count(route="acceptOrder") == 2


def test_reject_whose_answer_was_lost_heals_within_the_call(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()
    ez.inject_fault("rejectOrder", drop=True, apply=True)

    order = EzCaterHook().reject_order(uuid, "LACK_OF_INVENTORY")

    assert order["lifecycle"]["orderIsCurrently"] == "rejected"
    assert ez.count(route="rejectOrder") == 2


@pytest.mark.ezcater_sandbox(conn_extra={"max_retries": 2})
def test_retry_budget_exhaustion_is_transient(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    ez.inject_fault("order", times=20, status=502)

    with pytest.raises(TransientOrdersError) as info:
        EzCaterHook().get_order(UNKNOWN)

    assert not isinstance(info.value, AirflowFailException)
    assert ez.count(route="order") == 3
    assert "3 attempt(s)" in str(info.value)
    assert UNKNOWN in str(info.value)


def test_refused_connection_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_orders.sandbox import EzCaterSandbox

    ez = EzCaterSandbox().start()
    conn = ez.connection_json({"retry_delay": 0.01, "max_retries": 1})
    ez.stop()
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", conn)

    with pytest.raises(TransientOrdersError, match=r"2 attempt\(s\): could not connect"):
        EzCaterHook().accept_order(UNKNOWN)


# ---------------------------------------------------------------------------------------------- async


def test_aget_order(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()
    ez.inject_fault("order", status=503)
    ez.inject_fault("order", drop=True)

    async def scenario() -> dict[str, Any]:
        hook = EzCaterHook()
        with pytest.raises(OrderNotFoundError, match="Couldn't find Order"):
            await hook.aget_order(UNKNOWN)  # the faults hit this one: retried, then 404-ish
        return await hook.aget_order(uuid)

    order = run_async(scenario)

    assert order["uuid"] == uuid
    assert order["lifecycle"]["orderIsCurrently"] == "submitted"
    assert _statuses(ez, "order") == [503, None, 200, 200]
    request = ez.requests[-1]
    assert request.json()["operationName"] == "Order"
    assert request.headers["authorization"] == "sandbox-token"
    assert request.headers["apollographql-client-name"] == "airflow-provider-orders"


@pytest.mark.parametrize("style", ERROR_STYLES)
def test_aget_order_error_mapping(
    ezcater_sandbox: EzCaterSandbox, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    uuid = ezcater_sandbox.add_order(authorized=False)

    async def scenario() -> None:
        with pytest.raises(NotAuthorizedError):
            await EzCaterHook().aget_order(uuid)

    run_async(scenario)
    _with_connection(monkeypatch, ezcater_sandbox, password="bad-token-5150")
    with pytest.raises(AuthenticationFailedError):
        run_async(lambda: EzCaterHook().aget_order(uuid))


def test_the_async_path_goes_through_gql_like_the_sync_path(
    ezcater_sandbox: EzCaterSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gql.transport.httpx import HTTPXAsyncTransport

    from airflow_provider_orders.hooks._http import request_gate, shared_async_client, url_host

    ez = ezcater_sandbox
    host = url_host(ez.url)
    uuid, denied = ez.add_order(), ez.add_order(authorized=False)
    sent_on: list[tuple[Any, int]] = []
    original = HTTPXAsyncTransport.execute

    async def spy(self: Any, request: Any, **kwargs: Any) -> Any:
        sent_on.append((self.client, request_gate("ezcater", host).in_flight))
        return await original(self, request, **kwargs)

    monkeypatch.setattr(HTTPXAsyncTransport, "execute", spy)
    hook = EzCaterHook()
    sync_order = hook.get_order(uuid)
    with pytest.raises(NotAuthorizedError) as sync_error:
        hook.get_order(denied)

    async def scenario() -> tuple[dict[str, Any], Exception, Any, bool, int]:
        order = await EzCaterHook().aget_order(uuid)
        with pytest.raises(NotAuthorizedError) as info:
            await EzCaterHook().aget_order(denied)  # another hook, as another trigger would have
        shared = shared_async_client(True, "ezcater", host)
        return order, info.value, shared, shared.is_closed, request_gate("ezcater", host).in_flight

    async_order, async_error, shared, closed, in_flight_after = run_async(scenario)

    assert async_order == sync_order
    # one operation description: the same document, name and variables on both paths
    sync_read, sync_denied, async_read, async_denied = (r.json() for r in ez.requests)
    assert async_read == sync_read
    assert async_denied == sync_denied
    # one interpretation: the same error, word for word
    assert type(async_error) is type(sync_error.value)
    assert str(async_error) == str(sync_error.value)
    for attr in ("api_message", "http_status", "code", "api_detail"):
        assert getattr(async_error, attr) == getattr(sync_error.value, attr)
    # gql's httpx transport, on the loop's one shared client of that host (left open), inside its gate
    assert [client for client, _ in sent_on] == [shared, shared]
    assert not closed
    assert [in_flight for _, in_flight in sent_on] == [1, 1]
    assert in_flight_after == 0


def test_aget_order_retries_a_5xx_that_carries_a_graphql_body(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    uuid = ez.add_order()
    ez.inject_fault("order", status=502, body={"errors": [{"message": "upstream timed out"}]})

    order = run_async(lambda: EzCaterHook().aget_order(uuid))

    assert order["uuid"] == uuid
    assert _statuses(ez, "order") == [502, 200]


# ---------------------------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("status", "body", "lost"),
    [
        pytest.param(502, {"errors": [{"message": "bad gateway"}]}, True, id="502-graphql-body"),
        pytest.param(500, None, True, id="500-text"),
        pytest.param(200, None, True, id="200-not-graphql"),
        pytest.param(503, {"errors": [{"message": "busy"}]}, False, id="503-did-not-act"),
        pytest.param(429, None, False, id="429-did-not-act"),
    ],
)
def test_error_mapping_marks_a_lost_mutation_answer_as_data(status: int, body: Any, lost: bool) -> None:
    from airflow_provider_orders.hooks._ezcater_errors import CallState, LostAnswerError, interpret
    from airflow_provider_orders.hooks._ezcater_graphql import (
        ACCEPT_ORDER_MUTATION,
        ORDER_QUERY,
        Answer,
    )
    from airflow_provider_orders.hooks._retry import RetryableError

    class Endpoint:
        conn_id, url, token = "ez", "http://ez.invalid/graphql", "tok-123"

    answer = Answer(status, {"Retry-After": "2"}, body, json.dumps(body) if body else "<html>")
    for operation, expect_lost in ((ACCEPT_ORDER_MUTATION, lost), (ORDER_QUERY, False)):
        state = CallState()
        with pytest.raises(RetryableError) as info, state:
            interpret(answer, operation, "o-1", Endpoint())
        assert isinstance(info.value, LostAnswerError) is expect_lost
        assert state.answer_lost is expect_lost
        assert info.value.http_status == status
        assert info.value.retry_after == 2.0


def test_get_conn_keeps_gql_client_semantics(ezcater_sandbox: EzCaterSandbox) -> None:
    from gql import GraphQLRequest
    from gql.transport.exceptions import TransportQueryError, TransportServerError

    def read(order_id: str) -> GraphQLRequest:
        return GraphQLRequest(
            "query Q($id: ID!) { order(id: $id) { uuid } }", variable_values={"id": order_id}
        )

    uuid = ezcater_sandbox.add_order()
    hook = EzCaterHook()
    session = hook.get_conn().connect_sync()
    try:
        assert session.execute(read(uuid)) == {"order": {"uuid": uuid}}
        assert session.transport.response_headers["Content-Type"].startswith("application/json")
        with pytest.raises(TransportQueryError, match="Couldn't find Order"):
            session.execute(read(UNKNOWN))
        ezcater_sandbox.inject_fault("order", status=502, body="<html>bad gateway</html>")
        with pytest.raises(TransportServerError) as info:
            session.execute(read(uuid))
        assert info.value.code == 502
    finally:
        hook.get_conn().close_sync()


# ---------------------------------------------------------------------------------------------- masking


def test_token_never_reaches_logs_or_errors(
    ezcater_sandbox: EzCaterSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow.providers.common.compat.sdk import redact

    ez = ezcater_sandbox
    caplog.set_level("DEBUG")
    uuid = ez.add_order()
    hook = EzCaterHook()
    ez.inject_fault("acceptOrder", status=503)
    hook.accept_order(uuid)
    run_async(lambda: EzCaterHook().aget_order(uuid))
    errors: list[PermanentOrdersError] = []
    for failing in (lambda: hook.accept_order(uuid), lambda: hook.get_order(UNKNOWN)):
        with pytest.raises(PermanentOrdersError) as info:
            failing()
        errors.append(info.value)
    _with_connection(monkeypatch, ez, password="other-secret-token-31337")
    with pytest.raises(AuthenticationFailedError) as auth:
        EzCaterHook().get_order(uuid)
    errors.append(auth.value)

    captured = capfd.readouterr()
    outputs = captured.out + captured.err + caplog.text
    error_texts = " ".join(f"{e} {e!r} {e.__cause__!r} {e.api_message} {e.api_detail}" for e in errors)
    assert "Accepted ezCater order" in outputs  # the logs were captured at all
    for secret in ("sandbox-token", "other-secret-token-31337"):
        assert secret not in outputs
        assert secret not in error_texts
        assert redact(f"Authorization: {secret}") == "Authorization: ***"
