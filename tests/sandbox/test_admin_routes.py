"""The ``/_sandbox/...`` admin routes, driven with plain HTTP as another process would."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from .conftest import ACCEPT_ORDER, DK, TOKEN, execute

if TYPE_CHECKING:
    from gql import Client

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox


def admin(
    sandbox: DataKitchenSandbox | EzCaterSandbox, method: str, name: str, **kwargs: object
) -> requests.Response:
    return requests.request(method, f"{sandbox.url}/_sandbox/{name}", timeout=5, **kwargs)  # type: ignore[arg-type]


def test_health(datakitchen_sandbox: DataKitchenSandbox, ezcater_sandbox: EzCaterSandbox) -> None:
    assert admin(datakitchen_sandbox, "GET", "health").json() == {
        "service": "datakitchen",
        "url": datakitchen_sandbox.url,
    }
    assert admin(ezcater_sandbox, "GET", "health").json() == {
        "service": "ezcater",
        "url": ezcater_sandbox.graphql_url,
    }


def test_request_log_over_http_and_admin_calls_are_not_logged(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    dk.create("success", {"a": 1})
    dk.get("/v2/userinfo")
    admin(datakitchen_sandbox, "GET", "health")
    body = admin(datakitchen_sandbox, "GET", "requests").json()
    assert body["count"] == 3
    assert [(r["method"], r["route"], r["status"]) for r in body["requests"]] == [
        ("POST", "login", 200),
        ("PUT", "create_order", 200),
        ("GET", "userinfo", 200),
    ]
    assert body["requests"][1]["body"] == '{"parameters": {"a": 1}}'
    filtered = admin(
        datakitchen_sandbox, "GET", "requests", params={"route": "create_order", "method": "put"}
    )
    assert filtered.json()["count"] == 1
    assert admin(datakitchen_sandbox, "DELETE", "requests").json() == {"cleared": 3}
    assert datakitchen_sandbox.count() == 0


def test_faults_over_http(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    spec = {"route": "servings", "status": 429, "headers": {"Retry-After": "3"}, "body": {"m": 1}, "times": 2}
    created = admin(datakitchen_sandbox, "POST", "faults", json=spec)
    assert created.status_code == 201
    assert created.json()["faults"][0]["route"] == "servings"
    listed = admin(datakitchen_sandbox, "GET", "faults").json()["faults"]
    assert [(f["route"], f["times"], f["status"]) for f in listed] == [("servings", 2, 429)]
    response = dk.get("/v2/order/servings/demo-kitchen/x")
    assert (response.status_code, response.headers["Retry-After"], response.json()) == (429, "3", {"m": 1})
    assert admin(datakitchen_sandbox, "DELETE", "faults").json() == {"cleared": 1}
    assert dk.get("/v2/order/servings/demo-kitchen/x").status_code == 404


def test_several_faults_in_one_post(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    specs = [{"route": "create_order", "drop": True, "apply": True}, {"route": "userinfo", "delay": 0.01}]
    assert admin(datakitchen_sandbox, "POST", "faults", json=specs).status_code == 201
    assert len(datakitchen_sandbox.faults) == 2


def test_bad_fault_over_http_is_400_and_arms_nothing(datakitchen_sandbox: DataKitchenSandbox) -> None:
    for spec in (
        [{"route": "userinfo", "status": 500}, {"route": "nope", "status": 500}],
        {"route": "userinfo"},
        {"route": "userinfo", "status": 500, "color": "red"},
        "not an object",
    ):
        response = admin(datakitchen_sandbox, "POST", "faults", json=spec)
        assert response.status_code == 400, spec
        assert response.json()["error"]
    unknown = admin(datakitchen_sandbox, "POST", "faults", json={"route": "x", "status": 500}).json()["error"]
    assert "unknown datakitchen route 'x'" in unknown
    assert "create_order" in unknown
    assert datakitchen_sandbox.faults == []
    assert admin(datakitchen_sandbox, "POST", "faults", data="{oops").status_code == 400


def test_datakitchen_catalogue_orders_expire_and_reset(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    added = admin(
        datakitchen_sandbox,
        "POST",
        "catalogue",
        json={
            "kitchen": "k",
            "recipe": "r",
            "variation": "v",
            "outcome": "SERVING_ERROR",
            "active_seconds": 0,
        },
    )
    assert added.status_code == 201
    assert added.json()["outcome"] == "SERVING_ERROR"
    assert admin(datakitchen_sandbox, "GET", "catalogue").json()["catalogue"]["k"] == {"r": ["v"]}
    order_id = dk.put("/v2/order/create/k/r/v", json={"parameters": {"x": 1}}).json()["order_id"]
    (order,) = admin(datakitchen_sandbox, "GET", "orders").json()["orders"]
    assert (order["order_id"], order["kitchen"], order["parameters"]) == (order_id, "k", {"x": 1})
    assert len(order["runs"]) == 1
    bad = admin(
        datakitchen_sandbox,
        "POST",
        "catalogue",
        json={"kitchen": "k", "recipe": "r", "variation": "w", "outcome": "MAYBE"},
    )
    assert bad.status_code == 400
    assert "outcome" in bad.json()["error"]
    assert admin(datakitchen_sandbox, "POST", "catalogue", json={"kitchen": "k"}).status_code == 400

    assert admin(datakitchen_sandbox, "POST", "expire-tokens").json() == {"expired": 1}
    assert dk.get("/v2/userinfo").json()["code"] == "token_expired"

    assert admin(datakitchen_sandbox, "POST", "reset").json() == {"reset": True}
    assert datakitchen_sandbox.orders == {}
    assert datakitchen_sandbox.count() == 0
    assert "k" not in datakitchen_sandbox.model.catalogue
    assert "demo-kitchen" in datakitchen_sandbox.model.catalogue


def test_ezcater_seed_inspect_update_and_reset(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    seeded = admin(
        ezcater_sandbox,
        "POST",
        "orders",
        json={
            "state": "draft",
            "transitions": [["submitted", 0]],
            "caterer_uuid": "cafe0000-0000-4000-8000-000000000000",
        },
    )
    assert seeded.status_code == 201
    uuid = seeded.json()["uuid"]
    assert seeded.json()["state"] == "submitted"
    (order,) = admin(ezcater_sandbox, "GET", "orders").json()["orders"]
    assert (order["uuid"], order["state"], order["caterer_uuid"]) == (
        uuid,
        "submitted",
        "cafe0000-0000-4000-8000-000000000000",
    )
    assert admin(ezcater_sandbox, "GET", f"orders/{uuid}").json()["state"] == "submitted"
    updated = admin(ezcater_sandbox, "POST", f"orders/{uuid}", json={"feature_enabled": False})
    assert updated.json()["feature_enabled"] is False
    body = {"query": ACCEPT_ORDER, "variables": {"orderId": uuid}}
    answer = requests.post(
        ezcater_sandbox.graphql_url, headers={"Authorization": TOKEN}, json=body, timeout=5
    )
    assert answer.json()["errors"][0]["extensions"]["code"] == "FEATURE_NOT_ENABLED"
    admin(ezcater_sandbox, "POST", f"orders/{uuid}", json={"feature_enabled": True})
    execute(ez, ACCEPT_ORDER, orderId=uuid)
    assert ezcater_sandbox.order_state(uuid) == "accepted"

    assert admin(ezcater_sandbox, "POST", "orders", json={"state": "eaten"}).status_code == 400
    assert admin(ezcater_sandbox, "POST", f"orders/{uuid}", json={"colour": "red"}).status_code == 400
    assert admin(ezcater_sandbox, "GET", "orders/nope").status_code == 404
    assert admin(ezcater_sandbox, "POST", "reset").json() == {"reset": True}
    assert admin(ezcater_sandbox, "GET", "orders").json() == {"orders": []}
    assert ezcater_sandbox.count() == 0


def test_ezcater_fault_over_http(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    uuid = ezcater_sandbox.add_order()
    spec = {"route": "acceptOrder", "status": 502, "apply": True}
    assert admin(ezcater_sandbox, "POST", "faults", json=spec).status_code == 201
    body = {"query": ACCEPT_ORDER, "variables": {"orderId": uuid}}
    answer = requests.post(
        ezcater_sandbox.graphql_url, headers={"Authorization": TOKEN}, json=body, timeout=5
    )
    assert answer.status_code == 502
    assert ezcater_sandbox.order_state(uuid) == "accepted"
    log = admin(ezcater_sandbox, "GET", "requests", params={"route": "acceptOrder"}).json()["requests"]
    assert [(r["operation_name"], r["root_field"], r["status"], r["fault"]) for r in log] == [
        ("AcceptOrder", "acceptOrder", 502, "status 502 after applying")
    ]


def test_reset_reseeds_demo_orders() -> None:
    from airflow_provider_orders.sandbox import EzCaterSandbox

    with EzCaterSandbox(demo_orders=True) as sandbox:
        sandbox.update_order("11111111-1111-4111-8111-111111111111", state="accepted")
        sandbox.add_order()
        admin(sandbox, "POST", "reset")
        assert len(sandbox.orders) == 5
        assert sandbox.order_state("11111111-1111-4111-8111-111111111111") == "submitted"


def test_unknown_admin_route_is_404(
    datakitchen_sandbox: DataKitchenSandbox, ezcater_sandbox: EzCaterSandbox
) -> None:
    for sandbox in (datakitchen_sandbox, ezcater_sandbox):
        response = admin(sandbox, "GET", "nothing")
        assert response.status_code == 404
        assert "no sandbox admin route GET /_sandbox/nothing" in response.json()["error"]
    assert (
        admin(datakitchen_sandbox, "POST", "orders").status_code == 404
    )  # DataKitchen orders are not seeded
