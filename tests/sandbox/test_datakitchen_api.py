"""The DataKitchen sandbox over real HTTP: login and tokens, orders, runs, errors as the reference says."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import requests

from airflow_provider_orders.sandbox import DataKitchenSandbox

from .conftest import DK, PASSWORD, USERNAME, FakeClock, login, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN_EXPIRED = {"code": "token_expired", "description": "token is expired"}


def _claims(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def part(text: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))

    header, payload, signature = jwt.split(".")
    assert signature
    return part(header), part(payload)


def _error(response: requests.Response) -> tuple[str, Any]:
    body = response.json()
    assert body["message"]["status"] == "failed", body
    return body["message"]["error"]["message"], body["message"]["error"]["detail"]


# ------------------------------------------------------------------------------------------ auth
def test_login_answers_a_signed_jwt_as_plain_text_with_exp(datakitchen_sandbox: DataKitchenSandbox) -> None:
    clock = FakeClock()
    with DataKitchenSandbox(token_ttl=600, clock=clock) as sandbox:
        response = login(sandbox)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    header, claims = _claims(response.text)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims["sub"] == claims["username"] == USERNAME
    assert claims["exp"] == clock.now + 600


@pytest.mark.parametrize(
    "form",
    [
        {"username": USERNAME, "password": "wrong"},
        {"username": "someone@example.com", "password": PASSWORD},
        {"username": USERNAME},
        {},
    ],
)
def test_bad_credentials_get_401_credentials_are_invalid(
    datakitchen_sandbox: DataKitchenSandbox, form: dict[str, str]
) -> None:
    response = requests.post(f"{datakitchen_sandbox.url}/v2/login", data=form, timeout=5)
    assert response.status_code == 401
    assert response.text == "Credentials are invalid"


def test_other_credentials_can_be_configured() -> None:
    with DataKitchenSandbox(username="me@corp.example", password="s3cret") as sandbox:
        assert login(sandbox, "me@corp.example", "s3cret").status_code == 200
        assert login(sandbox).status_code == 401


def test_validatetoken_and_userinfo(dk: DK) -> None:
    assert dk.get("/v2/validatetoken").json() == {"token": dk.token}
    info = dk.get("/v2/userinfo").json()
    assert info["customer_git_name"] == "demo-customer"
    assert info["username"] == USERNAME


def test_missing_bearer_token_gets_401_that_says_so(datakitchen_sandbox: DataKitchenSandbox) -> None:
    for headers in ({}, {"Authorization": "Token abc"}, {"Authorization": "Bearer "}):
        response = requests.get(f"{datakitchen_sandbox.url}/v2/userinfo", headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["code"] == "authorization_required"
        assert "Authorization: Bearer" in response.json()["description"]


def test_garbled_forged_and_foreign_tokens_get_token_expired(datakitchen_sandbox: DataKitchenSandbox) -> None:
    valid = login(datakitchen_sandbox).text
    header, payload, _ = valid.split(".")
    with DataKitchenSandbox() as other:
        foreign = login(other).text
    for token in ("garbage", f"{header}.{payload}.{'A' * 43}", foreign):
        response = requests.get(
            f"{datakitchen_sandbox.url}/v2/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert (response.status_code, response.json()) == (401, TOKEN_EXPIRED)


def test_token_expires_after_its_ttl_and_a_new_login_works() -> None:
    clock = FakeClock()
    with DataKitchenSandbox(token_ttl=30, clock=clock) as sandbox:
        client = DK(sandbox)
        clock.advance(29)
        assert client.get("/v2/userinfo").status_code == 200
        clock.advance(1)
        response = client.get("/v2/userinfo")
        assert (response.status_code, response.json()) == (401, TOKEN_EXPIRED)
        assert DK(sandbox).get("/v2/userinfo").status_code == 200


def test_short_ttl_token_expires_in_real_time() -> None:
    with DataKitchenSandbox(token_ttl=0.3) as sandbox:
        client = DK(sandbox)
        _, claims = _claims(client.token)
        answers: list[requests.Response] = []
        wait_for(
            lambda: answers.append(client.get("/v2/userinfo")) or answers[-1].status_code == 401, timeout=3
        )
        assert answers[0].status_code == 200
        assert answers[-1].json() == TOKEN_EXPIRED
        assert sandbox.model.clock() >= claims["exp"]


def test_expire_tokens_expires_every_issued_token(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    other = DK(datakitchen_sandbox)
    assert datakitchen_sandbox.expire_tokens() == 2
    for client in (dk, other):
        response = client.get("/v2/validatetoken")
        assert (response.status_code, response.json()) == (401, TOKEN_EXPIRED)
    assert DK(datakitchen_sandbox).get("/v2/validatetoken").status_code == 200


def test_refreshed_token_header_near_expiry() -> None:
    clock = FakeClock()
    with DataKitchenSandbox(token_ttl=100, refresh_within=10, clock=clock) as sandbox:
        client = DK(sandbox)
        assert "refreshed_token" not in client.get("/v2/userinfo").headers
        clock.advance(95)
        fresh = client.get("/v2/userinfo").headers["refreshed_token"]
        assert _claims(fresh)[1]["exp"] == clock.now + 100
        clock.advance(10)
        assert client.get("/v2/userinfo").status_code == 401
        client.session.headers["Authorization"] = f"Bearer {fresh}"
        assert client.get("/v2/userinfo").status_code == 200


# ------------------------------------------------------------------------------------------ create
def test_create_order_answers_order_id_and_overrides(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    response = dk.put(
        "/v2/order/create/demo-kitchen/demo-recipe/success",
        json={"parameters": {"some key": "some value", "n": 3}, "schedule": "now"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["variable_overrides"] == {"some key": "some value", "n": 3}
    order = datakitchen_sandbox.orders[body["order_id"]]
    assert (order.kitchen, order.recipe, order.variation) == ("demo-kitchen", "demo-recipe", "success")
    assert order.parameters == {"some key": "some value", "n": 3}
    assert len(order.runs) == 1


def test_create_order_without_a_body_as_in_the_seeds_curl(dk: DK) -> None:
    response = dk.put("/v2/order/create/demo-kitchen/demo-recipe/success")
    assert response.status_code == 200
    assert response.json()["variable_overrides"] == {}


@pytest.mark.datakitchen_sandbox(id_key="serving_hid")
def test_create_order_in_the_seed_pages_form(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    body = dk.put("/v2/order/create/demo-kitchen/demo-recipe/success", json={"parameters": {}}).json()
    assert set(body) == {"status", "serving_hid", "variable_overrides"}
    assert body["serving_hid"] in datakitchen_sandbox.orders


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        (
            "test-kitchen/test-recipe/missing-variation",
            "unable to find the kitchen named test-kitchen",
        ),
        (
            "demo-kitchen/test-recipe/missing-variation",
            "unable to find the recipe named test-recipe in the kitchen demo-kitchen",
        ),
        (
            "demo-kitchen/demo-recipe/missing-variation",
            "unable to find the variation named missing-variation in the recipe demo-recipe variations.json",
        ),
    ],
)
def test_unknown_kitchen_recipe_variation_get_the_seeds_417(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK, path: str, detail: str
) -> None:
    response = dk.put(f"/v2/order/create/{path}", json={"parameters": {"some key": "some value"}})
    assert response.status_code == 417
    kitchen, recipe, variation = path.split("/")
    assert _error(response) == (f"kitchen ({kitchen}),recipe ({recipe}),variation ({variation})", detail)
    assert datakitchen_sandbox.orders == {}


def test_the_seed_pages_417_example_verbatim(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.add_variation("test-kitchen", "test-recipe", "some-variation")
    response = dk.put("/v2/order/create/test-kitchen/test-recipe/missing-variation")
    assert response.status_code == 417
    assert response.json() == {
        "message": {
            "status": "failed",
            "error": {
                "message": "kitchen (test-kitchen),recipe (test-recipe),variation (missing-variation)",
                "detail": "unable to find the variation named missing-variation in the recipe test-recipe "
                "variations.json",
            },
        }
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ('{"parameters": [1]}', '"parameters" must be a JSON object'),
        ('{"parameters": "x=1"}', '"parameters" must be a JSON object'),
    ],
)
def test_create_body_that_is_not_an_object_gets_400(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK, data: str, expected: str
) -> None:
    response = dk.put(
        "/v2/order/create/demo-kitchen/demo-recipe/success",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    message, detail = _error(response)
    assert message == "kitchen (demo-kitchen),recipe (demo-recipe),variation (success)"
    assert expected in detail
    assert datakitchen_sandbox.orders == {}


def test_percent_encoded_segments_are_decoded_before_lookup(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.add_variation(
        "my kitchen/x", "recipe #1", "var?iation%", planned_seconds=0, active_seconds=0
    )
    segments = [quote(s, safe="") for s in ("my kitchen/x", "recipe #1", "var?iation%")]
    response = dk.put("/v2/order/create/" + "/".join(segments), json={})
    assert response.status_code == 200, response.text
    order_id = response.json()["order_id"]
    order = datakitchen_sandbox.orders[order_id]
    assert (order.kitchen, order.recipe, order.variation) == ("my kitchen/x", "recipe #1", "var?iation%")
    servings = dk.servings(order_id, kitchen=segments[0])
    assert servings[0]["status"] == "COMPLETED_SERVING"
    # unencoded, the slash splits the path: no such route
    assert dk.put("/v2/order/create/my kitchen/x/recipe/v").status_code == 404


# ------------------------------------------------------------------------------------------ runs
@pytest.fixture
def clocked() -> Iterator[tuple[DataKitchenSandbox, FakeClock, DK]]:
    """A sandbox on a fake clock: runs move only when the test advances it."""
    clock = FakeClock()
    with DataKitchenSandbox(clock=clock) as sandbox:
        yield sandbox, clock, DK(sandbox)


def test_run_walks_planned_active_completed_on_the_clock(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation(
        "demo-kitchen", "demo-recipe", "queued", queue_seconds=5, planned_seconds=2, active_seconds=3
    )
    t0 = clock.now
    order_id = dk.create("queued")
    assert dk.servings(order_id) == []  # not started: nothing listed
    clock.advance(5)
    (run,) = dk.servings(order_id)
    assert (run["status"], run["orderrun_status"]) == ("PLANNED_SERVING", "Order run planned")
    assert run["order_id"] == order_id
    assert run["variation_name"] == "queued"
    assert run["timings"] == {"start-time": int((t0 + 5) * 1000), "end-time": None, "duration": 0}
    clock.advance(2)
    assert dk.servings(order_id)[0]["status"] == "ACTIVE_SERVING"
    clock.advance(2.999)
    assert dk.servings(order_id)[0]["status"] == "ACTIVE_SERVING"
    clock.advance(0.001)
    (run,) = dk.servings(order_id)
    assert (run["status"], run["orderrun_status"]) == ("COMPLETED_SERVING", "Order run completed")
    assert run["timings"] == {
        "start-time": int((t0 + 5) * 1000),
        "end-time": int((t0 + 10) * 1000),
        "duration": 5000,
    }


@pytest.mark.parametrize(
    ("variation", "status", "order_status", "text"),
    [
        ("success", "COMPLETED_SERVING", "COMPLETED_ORDER", "Order run completed"),
        (
            "fails",
            "SERVING_ERROR",
            "ORDER_ERROR",
            "Node process-data failed: step 'transform' exited with code 1",
        ),
        ("stopped", "STOPPED_SERVING", "STOPPED_ORDER", "Order run stopped"),
    ],
)
def test_demo_variations_end_in_their_outcome(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
    variation: str,
    status: str,
    order_status: str,
    text: str,
) -> None:
    _, clock, dk = clocked
    order_id = dk.create(variation)
    clock.advance(0.7)
    run = dk.servings(order_id)[0]
    assert (run["status"], run["orderrun_status"]) == (status, text)
    details = dk.post("/v2/order/details/demo-kitchen", json={"serving_hid": run["hid"]}).json()
    assert details["orders"] == [{"hid": order_id, "order-status": order_status}]


def test_slow_variation_is_still_running_after_a_minute_minus_a_bit(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    order_id = dk.create("slow")
    clock.advance(59.9)
    assert dk.servings(order_id)[0]["status"] == "ACTIVE_SERVING"
    clock.advance(0.1)
    assert dk.servings(order_id)[0]["status"] == "COMPLETED_SERVING"


def test_custom_failure_text(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation(
        "demo-kitchen", "demo-recipe", "bad", "SERVING_ERROR", orderrun_status="load: table missing"
    )
    order_id = dk.create("bad")
    clock.advance(1)
    assert dk.servings(order_id)[0]["orderrun_status"] == "load: table missing"


def test_run_walks_in_real_time(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    order_id = dk.create("success")
    seen = set()

    def completed() -> bool:
        servings = dk.servings(order_id)
        seen.update(s["status"] for s in servings)
        return bool(servings) and servings[0]["status"] == "COMPLETED_SERVING"

    wait_for(completed, timeout=5, interval=0.01)
    assert "COMPLETED_SERVING" in seen
    assert seen <= {"PLANNED_SERVING", "ACTIVE_SERVING", "COMPLETED_SERVING"}


def test_servings_tolerates_a_json_body_and_honours_count(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    order_id = dk.create("fails")
    clock.advance(1)
    dk.put(f"/v2/order/resume/{dk.servings(order_id)[0]['hid']}", json={"kitchen_name": "demo-kitchen"})
    assert len(dk.servings(order_id)) == 2
    response = dk.get(f"/v2/order/servings/demo-kitchen/{order_id}", json={"count": 1})
    assert response.status_code == 200
    assert len(response.json()["servings"]) == 1
    garbage = dk.get(f"/v2/order/servings/demo-kitchen/{order_id}", data="{not json")
    assert len(garbage.json()["servings"]) == 2


def test_resume_reruns_a_failed_run_and_servings_are_newest_first(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    _, clock, dk = clocked
    order_id = dk.create("fails")
    clock.advance(1)
    first = dk.servings(order_id)[0]["hid"]
    response = dk.put(f"/v2/order/resume/{first}", json={"kitchen_name": "demo-kitchen"})
    assert response.status_code == 200
    second = response.json()["serving_hid"]
    servings = dk.servings(order_id)
    assert [s["hid"] for s in servings] == [second, first]
    assert [s["status"] for s in servings] == ["PLANNED_SERVING", "SERVING_RERAN"]
    clock.advance(1)
    assert dk.put(f"/v2/order/resume/{first}").status_code == 400  # already superseded


def test_details_of_a_run(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    order_id = dk.create("fails", {"x": 1})
    clock.advance(1)
    run_id = dk.servings(order_id)[0]["hid"]
    body = {
        "serving_hid": run_id,
        "logs": True,
        "servingjson": False,
        "summary": False,
        "testresults": True,
        "timingresults": False,
    }
    details = dk.post("/v2/order/details/demo-kitchen", json=body).json()
    assert details["kitchenname"] == "demo-kitchen"
    assert details["orders"] == [{"hid": order_id, "order-status": "ORDER_ERROR"}]
    (serving,) = details["servings"]
    assert serving["hid"] == run_id
    assert serving["status"] == "SERVING_ERROR"
    assert serving["recipe_name"] == "demo-recipe"
    assert serving["variable_overrides"] == {"x": 1}
    assert [line["node"] for line in serving["log"]["lines"]] == ["", "process-data", "process-data"]
    assert "failed" in serving["log"]["lines"][-1]["message"]
    assert "1 failed" in serving["testresults"]
    by_order = dk.post("/v2/order/details/demo-kitchen", json={"serving_book_hid": order_id}).json()
    assert [s["hid"] for s in by_order["servings"]] == [run_id]


def test_details_errors(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    sandbox, clock, dk = clocked
    order_id = dk.create("success")
    clock.advance(1)
    run_id = dk.servings(order_id)[0]["hid"]
    unknown = dk.post("/v2/order/details/demo-kitchen", json={"serving_hid": "no-such-run"})
    assert unknown.status_code == 404
    assert _error(unknown) == (
        "kitchen (demo-kitchen),order run (no-such-run)",
        "unable to find the order run no-such-run in the kitchen demo-kitchen",
    )
    sandbox.add_variation("other-kitchen", "r", "v")
    assert dk.post("/v2/order/details/other-kitchen", json={"serving_hid": run_id}).status_code == 404
    no_id = dk.post("/v2/order/details/demo-kitchen", json={"logs": True})
    assert no_id.status_code == 400
    assert "serving_hid" in _error(no_id)[1]
    kitchen = dk.post("/v2/order/details/nowhere", json={"serving_hid": run_id})
    assert kitchen.status_code == 417
    assert _error(kitchen) == ("kitchen (nowhere)", "unable to find the kitchen named nowhere")


def test_servings_of_an_unknown_order_is_404(dk: DK) -> None:
    response = dk.get("/v2/order/servings/demo-kitchen/no-such-order")
    assert response.status_code == 404
    assert _error(response) == (
        "kitchen (demo-kitchen),order (no-such-order)",
        "unable to find the order no-such-order in the kitchen demo-kitchen",
    )


def test_order_status_lists_the_kitchens_orders_newest_first(
    clocked: tuple[DataKitchenSandbox, FakeClock, DK],
) -> None:
    sandbox, clock, dk = clocked
    sandbox.add_variation("demo-kitchen", "other-recipe", "v")
    first = dk.create("success", {"n": 1})
    clock.advance(1)
    second = dk.create("fails", {"n": 2})
    clock.advance(0.1)
    other = dk.put("/v2/order/create/demo-kitchen/other-recipe/v").json()["order_id"]
    body = dk.get("/v2/order/status/demo-kitchen").json()
    assert body["kitchenname"] == "demo-kitchen"
    assert [(o["hid"], o["order-status"]) for o in body["orders"]] == [
        (other, "ACTIVE_ORDER"),
        (second, "ACTIVE_ORDER"),
        (first, "COMPLETED_ORDER"),
    ]
    assert body["orders"][1]["variable_overrides"] == {"n": 2}
    assert body["orders"][1]["variation_name"] == "fails"
    assert [s["order_id"] for s in body["servings"]] == [other, second, first]
    filtered = dk.get("/v2/order/status/demo-kitchen", params={"r": "demo-recipe", "count": 1}).json()
    assert [o["hid"] for o in filtered["orders"]] == [second]


def test_stop_run_makes_it_stopped_serving(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    order_id = dk.create("slow")
    clock.advance(5)
    run_id = dk.servings(order_id)[0]["hid"]
    response = dk.put(
        f"/v2/serving/stop/{run_id}", json={"serving_hid": run_id, "kitchen_name": "demo-kitchen"}
    )
    assert response.status_code == 200
    assert response.json()["serving_status"] == "STOPPED_SERVING"
    clock.advance(100)
    run = dk.servings(order_id)[0]
    assert run["status"] == "STOPPED_SERVING"
    assert run["orderrun_status"] == f"Order run stopped by {USERNAME}"
    assert run["timings"]["duration"] == 5000
    assert dk.put("/v2/serving/stop/no-such-run").status_code == 404


def test_stopping_a_finished_run_keeps_its_status(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    _, clock, dk = clocked
    order_id = dk.create("success")
    clock.advance(1)
    run_id = dk.servings(order_id)[0]["hid"]
    response = dk.put(f"/v2/serving/stop/{run_id}", json={"kitchen_name": "demo-kitchen"})
    assert response.status_code == 200
    assert response.json()["serving_status"] == "COMPLETED_SERVING"


def test_stop_order_stops_it_and_its_queued_run(clocked: tuple[DataKitchenSandbox, FakeClock, DK]) -> None:
    sandbox, _, dk = clocked
    sandbox.add_variation("demo-kitchen", "demo-recipe", "queued", queue_seconds=30)
    order_id = dk.create("queued")
    assert dk.servings(order_id) == []
    response = dk.put(
        f"/v2/order/stop/{order_id}", json={"serving_book_hid": order_id, "kitchen_name": "demo-kitchen"}
    )
    assert response.status_code == 200
    assert response.json()["order-status"] == "STOPPED_ORDER"
    assert [s["status"] for s in dk.servings(order_id)] == ["STOPPED_SERVING"]
    assert dk.put("/v2/order/stop/no-such-order").status_code == 404


def test_unknown_paths_and_methods(dk: DK) -> None:
    assert dk.get("/v2/nothing/here").status_code == 404
    response = dk.get("/v2/order/create/demo-kitchen/demo-recipe/success")
    assert response.status_code == 405
    assert "PUT" in response.json()["message"]


def test_web_page_shows_runs_and_is_not_logged(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    order_id = dk.create("success")
    run_id = wait_for(lambda: dk.servings(order_id))[0]["hid"]
    before = datakitchen_sandbox.count()
    page = requests.get(
        f"{datakitchen_sandbox.url}/dk/orders/demo-customer/demo-kitchen/runs/{run_id}", timeout=5
    )
    assert page.status_code == 200
    assert run_id in page.text
    assert requests.get(datakitchen_sandbox.url + "/", timeout=5).status_code == 200
    assert datakitchen_sandbox.count() == before


def test_request_log_records_routes_and_statuses(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    dk.create("success", {"a": 1})
    dk.put("/v2/order/create/demo-kitchen/demo-recipe/nope")
    log = datakitchen_sandbox.requests
    assert [(r.method, r.route, r.status) for r in log] == [
        ("POST", "login", 200),
        ("PUT", "create_order", 200),
        ("PUT", "create_order", 417),
    ]
    assert log[1].json() == {"parameters": {"a": 1}}
    assert log[1].headers["authorization"] == f"Bearer {dk.token}"
    assert log[1].path == "/v2/order/create/demo-kitchen/demo-recipe/success"
    assert datakitchen_sandbox.count(route="create_order") == 2
    assert datakitchen_sandbox.count(method="POST") == 1
    assert datakitchen_sandbox.clear_requests() == 3
    assert datakitchen_sandbox.count() == 0
