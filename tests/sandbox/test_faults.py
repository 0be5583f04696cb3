"""Fault injection on both sandboxes: answers, drops, delays, lost answers; counted and thread-safe."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import requests
from gql.transport.exceptions import TransportConnectionFailed, TransportServerError

from .conftest import ACCEPT_ORDER, DK, ORDER, execute, wait_for

if TYPE_CHECKING:
    from gql import Client

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

CREATE = "/v2/order/create/demo-kitchen/demo-recipe/success"


def test_status_fault_with_headers_and_json_body_replaces_the_answer(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.inject_fault(
        "create_order", status=429, headers={"Retry-After": "1"}, body={"message": "slow down"}
    )
    response = dk.put(CREATE, json={"parameters": {}})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "slow down"}
    assert datakitchen_sandbox.orders == {}  # not executed
    assert dk.put(CREATE, json={}).status_code == 200  # the fault was used up
    assert len(datakitchen_sandbox.orders) == 1
    log = datakitchen_sandbox.requests
    assert [(r.route, r.status, r.fault, r.executed) for r in log[1:]] == [
        ("create_order", 429, "status 429", False),
        ("create_order", 200, None, True),
    ]


def test_fault_without_body_names_the_status(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("userinfo", status=503)
    response = dk.get("/v2/userinfo")
    assert response.status_code == 503
    assert response.text == "503 Service Unavailable (fault injected by the sandbox)"


def test_fault_with_text_body_and_200_status(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("servings", status=200, body="<html>Bad gateway page</html>")
    response = dk.get("/v2/order/servings/demo-kitchen/whatever")
    assert (response.status_code, response.text) == (200, "<html>Bad gateway page</html>")
    assert response.headers["Content-Type"].startswith("text/plain")


def test_times_counts_down(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("validatetoken", status=502, times=3)
    statuses = [dk.get("/v2/validatetoken").status_code for _ in range(4)]
    assert statuses == [502, 502, 502, 200]
    assert datakitchen_sandbox.count(route="validatetoken") == 4
    assert datakitchen_sandbox.faults == []


def test_faults_on_one_route_do_not_touch_others(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("stop_order", status=500)
    assert dk.get("/v2/userinfo").status_code == 200
    assert len(datakitchen_sandbox.faults) == 1


def test_faults_queue_in_order(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("userinfo", status=503)
    datakitchen_sandbox.inject_fault("*", status=504)
    assert dk.get("/v2/userinfo").status_code == 503
    assert dk.get("/v2/validatetoken").status_code == 504
    assert dk.get("/v2/userinfo").status_code == 200


def test_drop_closes_the_connection_without_executing(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.inject_fault("create_order", drop=True)
    with pytest.raises(requests.ConnectionError):
        dk.put(CREATE, json={})
    assert datakitchen_sandbox.orders == {}
    entry = datakitchen_sandbox.requests[-1]
    assert (entry.route, entry.status, entry.fault, entry.executed) == ("create_order", None, "drop", False)


def test_drop_after_applying_loses_the_answer_of_a_created_order(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.inject_fault("create_order", drop=True, apply=True)
    with pytest.raises(requests.ConnectionError):
        dk.put(CREATE, json={"parameters": {"k": "v"}})
    (order,) = datakitchen_sandbox.orders.values()
    assert order.parameters == {"k": "v"}
    assert datakitchen_sandbox.requests[-1].fault == "drop after applying"


def test_status_after_applying_creates_the_order_and_answers_502(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.inject_fault("create_order", status=502, apply=True)
    assert dk.put(CREATE, json={}).status_code == 502
    assert len(datakitchen_sandbox.orders) == 1
    entry = datakitchen_sandbox.requests[-1]
    assert (entry.status, entry.executed, entry.fault) == (502, True, "status 502 after applying")


def test_delay_answers_late(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("userinfo", delay=0.3)
    started = time.monotonic()
    assert dk.get("/v2/userinfo").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_delay_beyond_the_client_timeout_still_executes(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.inject_fault("create_order", delay=1.0)
    with pytest.raises(requests.Timeout):
        dk.put(CREATE, json={}, timeout=0.2)
    assert datakitchen_sandbox.orders == {}  # the slow server has not got to it yet
    wait_for(lambda: datakitchen_sandbox.requests[-1].status is not None, timeout=5)
    assert len(datakitchen_sandbox.orders) == 1
    assert datakitchen_sandbox.requests[-1].fault == "delay 1s"


def test_delay_then_status(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("userinfo", delay=0.2, status=504)
    started = time.monotonic()
    assert dk.get("/v2/userinfo").status_code == 504
    assert time.monotonic() - started >= 0.2


def test_faults_are_used_exactly_once_under_concurrency(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.inject_fault("userinfo", status=503, times=10)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: dk.get("/v2/userinfo").status_code, range(40)))
    assert sorted(statuses) == [200] * 30 + [503] * 10
    assert datakitchen_sandbox.count(route="userinfo") == 40
    assert sum(1 for r in datakitchen_sandbox.requests if r.fault) == 10


def test_bad_fault_specs_are_refused(datakitchen_sandbox: DataKitchenSandbox) -> None:
    with pytest.raises(ValueError, match=r"unknown datakitchen route 'create'.*create_order"):
        datakitchen_sandbox.inject_fault("create", status=500)
    with pytest.raises(ValueError, match="does nothing"):
        datakitchen_sandbox.inject_fault("login")
    with pytest.raises(ValueError, match="either a status or drop"):
        datakitchen_sandbox.inject_fault("login", status=500, drop=True)
    with pytest.raises(ValueError, match="times"):
        datakitchen_sandbox.inject_fault("login", status=500, times=0)
    assert datakitchen_sandbox.faults == []


def test_clear_faults(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.inject_fault("userinfo", status=500, times=5)
    assert datakitchen_sandbox.clear_faults() == 1
    assert dk.get("/v2/userinfo").status_code == 200


# ------------------------------------------------------------------------------------------ ezCater
def test_ezcater_fault_by_root_field_only_hits_that_operation(
    ezcater_sandbox: EzCaterSandbox, ez: Client
) -> None:
    uuid = ezcater_sandbox.add_order()
    ezcater_sandbox.inject_fault("acceptOrder", status=503, headers={"Retry-After": "2"})
    assert execute(ez, ORDER, orderId=uuid)["order"]["uuid"] == uuid
    with pytest.raises(TransportServerError) as info:
        execute(ez, ACCEPT_ORDER, orderId=uuid)
    assert info.value.code == 503
    assert ezcater_sandbox.order_state(uuid) == "submitted"
    execute(ez, ACCEPT_ORDER, orderId=uuid)
    assert ezcater_sandbox.order_state(uuid) == "accepted"


def test_ezcater_graphql_fault_hits_every_operation(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order()
    ezcater_sandbox.inject_fault("graphql", status=500, times=2)
    for query in (ORDER, ACCEPT_ORDER):
        with pytest.raises(TransportServerError):
            execute(ez, query, orderId=uuid)
    assert ezcater_sandbox.count(route="graphql") == 2


def test_ezcater_lost_answer_accepts_the_order(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order()
    ezcater_sandbox.inject_fault("acceptOrder", drop=True, apply=True)
    with pytest.raises(TransportConnectionFailed):
        execute(ez, ACCEPT_ORDER, orderId=uuid)
    assert ezcater_sandbox.order_state(uuid) == "accepted"
    entry = ezcater_sandbox.requests[-1]
    assert (entry.route, entry.operation_name, entry.status, entry.executed) == (
        "acceptOrder",
        "AcceptOrder",
        None,
        True,
    )


def test_ezcater_502_after_applying(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order()
    ezcater_sandbox.inject_fault("acceptOrder", status=502, apply=True)
    with pytest.raises(TransportServerError):
        execute(ez, ACCEPT_ORDER, orderId=uuid)
    assert ezcater_sandbox.order_state(uuid) == "accepted"


def test_ezcater_drop_without_applying(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order()
    ezcater_sandbox.inject_fault("rejectOrder", drop=True)
    ezcater_sandbox.inject_fault("acceptOrder", drop=True)
    with pytest.raises(TransportConnectionFailed):
        execute(ez, ACCEPT_ORDER, orderId=uuid)
    assert ezcater_sandbox.order_state(uuid) == "submitted"
    assert [f.route for f in ezcater_sandbox.faults] == ["rejectOrder"]


def test_ezcater_unknown_route_is_refused(ezcater_sandbox: EzCaterSandbox) -> None:
    with pytest.raises(ValueError, match="acceptOrder"):
        ezcater_sandbox.inject_fault("AcceptOrder", status=500)
