"""The ezCater sandbox through a real GraphQL client (gql + requests): orders, mutations, seed errors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import requests
from gql.transport.exceptions import TransportQueryError

from airflow_provider_orders.sandbox import EzCaterSandbox

from .conftest import ACCEPT_ORDER, ORDER, REJECT_ORDER, TOKEN, FakeClock, execute, gql_client

if TYPE_CHECKING:
    from gql import Client

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _query_error(client: Client, query: str, **variables: Any) -> TransportQueryError:
    with pytest.raises(TransportQueryError) as info:
        execute(client, query, **variables)
    return info.value


def _location_of(sandbox: EzCaterSandbox, needle: str) -> dict[str, int]:
    """1-based line/column of ``needle`` in the query the sandbox last received (gql re-prints queries)."""
    query = sandbox.requests[-1].json()["query"]
    index = query.index(needle)
    line = query.count("\n", 0, index) + 1
    column = index - (query.rfind("\n", 0, index) + 1) + 1
    return {"line": line, "column": column}


# ------------------------------------------------------------------------------------------ order
def test_order_query_answers_the_documented_fields(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order(state="submitted")
    order = execute(ez, ORDER, orderId=uuid)["order"]
    assert order["uuid"] == uuid
    assert re.match(r"^[A-Z0-9]{3}-[A-Z0-9]{3}$", order["orderNumber"])
    assert order["orderSourceType"] == "MARKETPLACE"
    assert order["lifecycle"] == {"orderIsCurrently": "submitted"}
    assert UUID_RE.match(order["caterer"]["uuid"])
    assert order["caterer"]["name"]
    assert order["caterer"]["storeNumber"]
    event = order["event"]
    assert event["timeZoneIdentifier"] == "America/New_York"
    assert event["orderType"] == "DELIVERY"
    assert event["headcount"] > 0
    assert event["catererHandoffFoodTime"] < event["timestamp"]
    assert order["totals"]["customerTotalDue"]["currency"] == "USD"
    assert order["totals"]["customerTotalDue"]["subunits"] > 0
    items = order["catererCart"]["orderItems"]
    assert len(items) == 3
    assert all(UUID_RE.match(i["uuid"]) and i["name"] and i["quantity"] > 0 for i in items)


def test_seeded_uuid_and_caterer_are_kept(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    caterer = "0e0e0e0e-1111-4222-8333-444444444444"
    uuid = ezcater_sandbox.add_order(uuid="aaaaaaaa-0000-4000-8000-000000000000", caterer_uuid=caterer)
    order = execute(ez, ORDER, orderId=uuid)["order"]
    assert (order["uuid"], order["caterer"]["uuid"]) == ("aaaaaaaa-0000-4000-8000-000000000000", caterer)
    with pytest.raises(ValueError, match="already exists"):
        ezcater_sandbox.add_order(uuid=uuid)


def test_order_not_found_and_not_authorized_on_the_query(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    error = _query_error(ez, ORDER, orderId="nope")
    assert error.data == {"order": None}
    assert error.errors is not None
    assert error.errors[0]["message"] == "Couldn't find Order"
    assert error.errors[0]["path"] == ["order"]
    assert error.errors[0]["extensions"]["statusCode"] == 404
    hidden = ezcater_sandbox.add_order(authorized=False)
    error = _query_error(ez, ORDER, orderId=hidden)
    assert error.errors is not None
    assert error.errors[0]["message"] == "You are not authorized to access this data"
    assert error.errors[0]["extensions"]["statusCode"] == 403


# ------------------------------------------------------------------------------------------ acceptOrder
def test_accept_submitted_order_answers_as_the_seed_page(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order(state="submitted")
    result = execute(ez, ACCEPT_ORDER, orderId=uuid, acceptModification=False)
    assert result == {"acceptOrder": {"order": {"uuid": uuid, "lifecycle": {"orderIsCurrently": "accepted"}}}}
    assert ezcater_sandbox.order_state(uuid) == "accepted"


def test_accept_unknown_order_is_the_seeds_404_error(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    error = _query_error(ez, ACCEPT_ORDER, orderId="your-ezcater-order-id", acceptModification=False)
    location = _location_of(ezcater_sandbox, "acceptOrder(")
    assert error.data == {"acceptOrder": None}
    assert error.errors == [
        {
            "message": "Couldn't find Order",
            "path": ["acceptOrder"],
            "extensions": {
                "type": "request",
                "statusCode": 404,
                "serviceName": "orders-public",
                "code": "DOWNSTREAM_SERVICE_ERROR",
                "exception": {
                    "message": "Couldn't find Order",
                    "locations": [location],
                    "path": ["acceptOrder"],
                },
            },
        }
    ]


def test_accept_for_another_caterer_is_the_seeds_403_error(
    ezcater_sandbox: EzCaterSandbox, ez: Client
) -> None:
    uuid = ezcater_sandbox.add_order(authorized=False)
    error = _query_error(ez, ACCEPT_ORDER, orderId=uuid)
    message = "You are not authorized to access this data"
    assert error.data == {"acceptOrder": None}
    assert error.errors == [
        {
            "message": message,
            "path": ["acceptOrder"],
            "extensions": {
                "type": "request",
                "statusCode": 403,
                "serviceName": "orders-public",
                "code": "DOWNSTREAM_SERVICE_ERROR",
                "exception": {
                    "message": message,
                    "locations": [_location_of(ezcater_sandbox, "acceptOrder(")],
                    "path": ["acceptOrder"],
                },
            },
        }
    ]
    assert ezcater_sandbox.order_state(uuid) == "submitted"


def test_feature_not_enabled_is_the_seeds_error(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order(feature_enabled=False)
    error = _query_error(ez, ACCEPT_ORDER, orderId=uuid)
    assert error.data == {"acceptOrder": None}
    assert error.errors == [
        {
            "message": "Feature not enabled for the caterer associated with this order",
            "locations": [_location_of(ezcater_sandbox, "acceptOrder(")],
            "path": ["acceptOrder"],
            "extensions": {"type": "summary", "code": "FEATURE_NOT_ENABLED"},
        }
    ]
    assert ezcater_sandbox.order_state(uuid) == "submitted"


def _invalid_transition(action: str, field: str, sandbox: EzCaterSandbox) -> list[dict[str, Any]]:
    message = f"Sorry, we were unable to {action} this order."
    return [
        {
            "message": message,
            "path": [field],
            "extensions": {
                "type": "summary",
                "code": "INVALID_STATE_TRANSITION",
                "serviceName": "orders-public",
                "exception": {
                    "message": message,
                    "locations": [_location_of(sandbox, f"{field}(")],
                    "path": [field],
                },
            },
        }
    ]


@pytest.mark.parametrize(
    ("state", "pending_modification"),
    [("draft", False), ("accepted", False), ("rejected", False), ("cancelled", False), ("accepted", True)],
)
def test_accept_in_a_state_that_does_not_allow_it(
    ezcater_sandbox: EzCaterSandbox, ez: Client, state: str, pending_modification: bool
) -> None:
    uuid = ezcater_sandbox.add_order(state=state, pending_modification=pending_modification)
    error = _query_error(ez, ACCEPT_ORDER, orderId=uuid, acceptModification=False)
    assert error.data == {"acceptOrder": None}
    assert error.errors == _invalid_transition("accept", "acceptOrder", ezcater_sandbox)
    assert ezcater_sandbox.order_state(uuid) == state


def test_accepting_twice_fails_the_second_time(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order()
    execute(ez, ACCEPT_ORDER, orderId=uuid)
    error = _query_error(ez, ACCEPT_ORDER, orderId=uuid)
    assert error.errors == _invalid_transition("accept", "acceptOrder", ezcater_sandbox)


def test_modification_is_accepted_with_accept_modification_true(
    ezcater_sandbox: EzCaterSandbox, ez: Client
) -> None:
    uuid = ezcater_sandbox.add_order(state="accepted", pending_modification=True)
    result = execute(ez, ACCEPT_ORDER, orderId=uuid, acceptModification=True)
    assert result["acceptOrder"]["order"]["lifecycle"]["orderIsCurrently"] == "accepted"
    assert ezcater_sandbox.orders[uuid].pending_modification is False
    # the modification is consumed: accepting it again is an invalid transition
    error = _query_error(ez, ACCEPT_ORDER, orderId=uuid, acceptModification=True)
    assert error.errors is not None
    assert error.errors[0]["extensions"]["code"] == "INVALID_STATE_TRANSITION"


def test_order_cancelled_by_the_customer_cannot_be_accepted(
    ezcater_sandbox: EzCaterSandbox, ez: Client
) -> None:
    uuid = ezcater_sandbox.add_order()
    ezcater_sandbox.update_order(uuid, state="cancelled")
    error = _query_error(ez, ACCEPT_ORDER, orderId=uuid)
    assert error.errors == _invalid_transition("accept", "acceptOrder", ezcater_sandbox)


# ------------------------------------------------------------------------------------------ rejectOrder
@pytest.mark.parametrize(("state", "after"), [("submitted", "rejected"), ("accepted", "cancelled")])
def test_reject_order(ezcater_sandbox: EzCaterSandbox, ez: Client, state: str, after: str) -> None:
    uuid = ezcater_sandbox.add_order(state=state)
    result = execute(
        ez, REJECT_ORDER, orderId=uuid, input={"reason": "AT_DAILY_CAPACITY", "explanation": "Fully booked"}
    )
    assert result == {"rejectOrder": {"order": {"uuid": uuid, "lifecycle": {"orderIsCurrently": after}}}}
    assert ezcater_sandbox.orders[uuid].rejection == {
        "reason": "AT_DAILY_CAPACITY",
        "explanation": "Fully booked",
    }


@pytest.mark.parametrize("state", ["draft", "rejected", "cancelled"])
def test_reject_in_a_state_that_does_not_allow_it(
    ezcater_sandbox: EzCaterSandbox, ez: Client, state: str
) -> None:
    uuid = ezcater_sandbox.add_order(state=state)
    error = _query_error(ez, REJECT_ORDER, orderId=uuid, input={"reason": "STAFF_SHORTAGE"})
    assert error.data == {"rejectOrder": None}
    assert error.errors == _invalid_transition("reject", "rejectOrder", ezcater_sandbox)


def test_reject_checks_feature_and_authorization(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    off = ezcater_sandbox.add_order(feature_enabled=False)
    error = _query_error(ez, REJECT_ORDER, orderId=off, input={"reason": "LACK_OF_INVENTORY"})
    assert error.errors is not None
    assert error.errors[0]["extensions"] == {"type": "summary", "code": "FEATURE_NOT_ENABLED"}
    hidden = ezcater_sandbox.add_order(authorized=False)
    error = _query_error(ez, REJECT_ORDER, orderId=hidden, input={"reason": "LACK_OF_INVENTORY"})
    assert error.errors is not None
    assert error.errors[0]["extensions"]["statusCode"] == 403


def test_unknown_reject_reason_is_refused_before_anything_runs(ezcater_sandbox: EzCaterSandbox) -> None:
    uuid = ezcater_sandbox.add_order()
    response = requests.post(
        ezcater_sandbox.graphql_url,
        headers={"Authorization": TOKEN},
        json={"query": REJECT_ORDER, "variables": {"orderId": uuid, "input": {"reason": "TOO_LAZY"}}},
        timeout=5,
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert "TOO_LAZY" in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert ezcater_sandbox.order_state(uuid) == "submitted"


# ------------------------------------------------------------------------------------------ options
@pytest.mark.ezcater_sandbox(error_code_style="seed")
def test_error_codes_in_the_seeds_spelling(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    codes = []
    for uuid in (
        "nope",
        ezcater_sandbox.add_order(feature_enabled=False),
        ezcater_sandbox.add_order(state="draft"),
    ):
        error = _query_error(ez, ACCEPT_ORDER, orderId=uuid)
        assert error.errors is not None
        codes.append(error.errors[0]["extensions"]["code"])
    assert codes == ["downstream service error", "feature not enabled", "invalid state transition"]


@pytest.mark.ezcater_sandbox(http_error_status=True)
def test_http_error_status_option_sends_the_errors_status_code(ezcater_sandbox: EzCaterSandbox) -> None:
    def answer(uuid: str) -> tuple[int, dict[str, Any]]:
        body = {"query": ACCEPT_ORDER, "variables": {"orderId": uuid}}
        response = requests.post(
            ezcater_sandbox.graphql_url, headers={"Authorization": TOKEN}, json=body, timeout=5
        )
        return response.status_code, response.json()

    status, body = answer("nope")
    assert (status, body["data"], body["errors"][0]["message"]) == (
        404,
        {"acceptOrder": None},
        "Couldn't find Order",
    )
    status, body = answer(ezcater_sandbox.add_order(authorized=False))
    assert (status, body["errors"][0]["extensions"]["statusCode"]) == (403, 403)
    status, body = answer(ezcater_sandbox.add_order(feature_enabled=False))
    assert (status, body["errors"][0]["extensions"]["code"]) == (200, "FEATURE_NOT_ENABLED")
    status, body = answer(ezcater_sandbox.add_order())
    assert (status, "errors" in body) == (200, False)


def test_errors_come_with_http_200_by_default(ezcater_sandbox: EzCaterSandbox) -> None:
    body = {"query": ACCEPT_ORDER, "variables": {"orderId": "nope"}}
    response = requests.post(
        ezcater_sandbox.graphql_url, headers={"Authorization": TOKEN}, json=body, timeout=5
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"acceptOrder": None}


def test_demo_orders() -> None:
    with EzCaterSandbox(demo_orders=True) as sandbox:
        states = {o["uuid"]: o["state"] for o in sandbox.model.snapshot()}
        assert states == {
            "11111111-1111-4111-8111-111111111111": "submitted",
            "22222222-2222-4222-8222-222222222222": "draft",
            "33333333-3333-4333-8333-333333333333": "accepted",
            "44444444-4444-4444-8444-444444444444": "submitted",
            "55555555-5555-4555-8555-555555555555": "submitted",
        }
        assert sandbox.orders["33333333-3333-4333-8333-333333333333"].pending_modification
        assert not sandbox.orders["44444444-4444-4444-8444-444444444444"].feature_enabled


# ------------------------------------------------------------------------------------------ transitions
def test_timed_transitions_follow_the_clock() -> None:
    clock = FakeClock()
    with EzCaterSandbox(clock=clock) as sandbox:
        client = gql_client(sandbox)
        uuid = sandbox.add_order(
            state="draft", transitions=[("submitted", 2.0), ("modified", 0), ("cancelled", 3.0)]
        )
        error = _query_error(client, ACCEPT_ORDER, orderId=uuid)
        assert error.errors is not None
        assert error.errors[0]["extensions"]["code"] == "INVALID_STATE_TRANSITION"
        clock.advance(2.0)
        assert execute(client, ORDER, orderId=uuid)["order"]["lifecycle"]["orderIsCurrently"] == "submitted"
        assert sandbox.orders[uuid].pending_modification
        execute(client, ACCEPT_ORDER, orderId=uuid)
        assert sandbox.order_state(uuid) == "accepted"
        clock.advance(3.0)
        assert sandbox.order_state(uuid) == "cancelled"


def test_transitions_happen_in_real_time(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order(state="draft", transitions=[("submitted", 0.2)])
    assert execute(ez, ORDER, orderId=uuid)["order"]["lifecycle"]["orderIsCurrently"] == "draft"

    def submitted() -> bool:
        return execute(ez, ORDER, orderId=uuid)["order"]["lifecycle"]["orderIsCurrently"] == "submitted"

    from .conftest import wait_for

    wait_for(submitted, timeout=5)


def test_bad_seeds_are_refused(ezcater_sandbox: EzCaterSandbox) -> None:
    with pytest.raises(ValueError, match="state must be one of"):
        ezcater_sandbox.add_order(state="pending")
    with pytest.raises(ValueError, match="transition target"):
        ezcater_sandbox.add_order(transitions=[("done", 1.0)])
    with pytest.raises(KeyError):
        ezcater_sandbox.order_state("nope")


# ------------------------------------------------------------------------------------------ protocol
def test_unnamed_operations_are_refused(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order()
    anonymous = 'mutation { acceptOrder(orderId: "UUID") { order { uuid } } }'.replace("UUID", uuid)
    error = _query_error(ez, anonymous)
    assert error.errors is not None
    assert "Anonymous operations are not accepted" in error.errors[0]["message"]
    assert error.errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert ezcater_sandbox.order_state(uuid) == "submitted"
    response = requests.post(
        ezcater_sandbox.graphql_url,
        headers={"Authorization": TOKEN},
        json={"query": '{ order(id: "x") { uuid } }'},
        timeout=5,
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ({}, "missing"),
        ({"Authorization": "wrong-token"}, "not valid"),
        ({"Authorization": f"Bearer {TOKEN}"}, "without the 'Bearer ' prefix"),
    ],
)
def test_missing_or_wrong_token_gets_401(
    ezcater_sandbox: EzCaterSandbox, headers: dict[str, str], hint: str
) -> None:
    uuid = ezcater_sandbox.add_order()
    body = {"query": ACCEPT_ORDER, "variables": {"orderId": uuid}, "operationName": "AcceptOrder"}
    response = requests.post(ezcater_sandbox.graphql_url, headers=headers, json=body, timeout=5)
    assert response.status_code == 401
    (error,) = response.json()["errors"]
    assert hint in error["message"]
    assert TOKEN not in error["message"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert ezcater_sandbox.order_state(uuid) == "submitted"


def test_gql_client_sees_the_401_as_a_query_error(ezcater_sandbox: EzCaterSandbox) -> None:
    error = _query_error(gql_client(ezcater_sandbox, token="nope"), ORDER, orderId="x")
    assert error.errors is not None
    assert error.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_other_token_can_be_configured() -> None:
    with EzCaterSandbox(token="my-token") as sandbox:
        uuid = sandbox.add_order()
        assert execute(gql_client(sandbox, token="my-token"), ORDER, orderId=uuid)["order"]["uuid"] == uuid


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("not json", 400, "BAD_REQUEST"),
        ({"variables": {}}, 400, "BAD_REQUEST"),
        ({"query": "query Order { order(id: ", "operationName": "Order"}, 400, "GRAPHQL_PARSE_FAILED"),
        ({"query": 'query Order { order(id: "x") { nope } }'}, 400, "GRAPHQL_VALIDATION_FAILED"),
        (
            {"query": 'query A { order(id: "x") { uuid } } query B { order(id: "y") { uuid } }'},
            400,
            "BAD_REQUEST",
        ),
        ({"query": 'query A { order(id: "x") { uuid } }', "operationName": "B"}, 400, "BAD_REQUEST"),
        (
            {"query": "query Order($id: ID!) { order(id: $id) { uuid } }", "variables": {}},
            400,
            "BAD_USER_INPUT",
        ),
    ],
)
def test_malformed_requests_get_400_with_a_graphql_error(
    ezcater_sandbox: EzCaterSandbox, body: Any, status: int, code: str
) -> None:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
    response = requests.post(
        ezcater_sandbox.graphql_url, headers={"Authorization": TOKEN}, timeout=5, **kwargs
    )
    assert response.status_code == status
    assert response.json()["errors"][0]["extensions"]["code"] == code


def test_only_post_graphql_is_served(ezcater_sandbox: EzCaterSandbox) -> None:
    assert requests.get(ezcater_sandbox.graphql_url, timeout=5).status_code == 405
    assert requests.post(ezcater_sandbox.url + "/other", json={}, timeout=5).status_code == 404


def test_request_log_records_operation_name_and_root_field(
    ezcater_sandbox: EzCaterSandbox, ez: Client
) -> None:
    uuid = ezcater_sandbox.add_order()
    execute(ez, ORDER, orderId=uuid)
    execute(ez, ACCEPT_ORDER, orderId=uuid)
    both = "query Both($a: ID!) { one: order(id: $a) { uuid } two: order(id: $a) { uuid } }"
    execute(ez, both, a=uuid)
    log = ezcater_sandbox.requests
    assert [(r.route, r.operation_name, r.root_field, r.status) for r in log] == [
        ("order", "Order", "order", 200),
        ("acceptOrder", "AcceptOrder", "acceptOrder", 200),
        ("graphql", "Both", "order", 200),
    ]
    assert log[1].routes == ("graphql", "acceptOrder")
    assert log[1].headers["authorization"] == TOKEN
    assert log[1].json()["variables"]["orderId"] == uuid
    assert ezcater_sandbox.count(route="graphql") == 3
    assert ezcater_sandbox.count(route="acceptOrder") == 1
    assert ezcater_sandbox.count(route="order") == 2
