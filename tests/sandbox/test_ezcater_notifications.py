"""ezCater sandbox subscriptions and notification deliveries, over HTTP on loopback.

GraphQL goes through plain ``requests`` POSTs; deliveries land on a tiny stdlib receiver run by the
test, which records every request and answers the statuses it is told to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_orders.sandbox import EzCaterSandbox
from airflow_provider_orders.sandbox.ezcater.models import DEMO_CATERER_UUID, SECOND_CATERER_UUID

from .conftest import ACCEPT_ORDER, ORDER, REJECT_ORDER, TOKEN, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SECRET = "test-webhook-secret"
FAST = pytest.mark.ezcater_sandbox(delivery_retry_base=0.05, delivery_retry_max_delay=0.2)

CREATE_SUBSCRIBER = """
mutation CreateSubscriber($params: CreateSubscriberParams!) {
  createSubscriber(subscriberParams: $params) {
    subscriber { id name webhookUrl webhookSecret subscriptions { eventKey parentId } }
  }
}
"""
UPDATE_SUBSCRIBER = """
mutation UpdateSubscriber($id: ID!, $params: UpdateSubscriberParams!) {
  updateSubscriber(subscriberId: $id, subscriberParams: $params) {
    subscriber { id name webhookUrl webhookSecret }
  }
}
"""
CREATE_SUBSCRIPTION = """
mutation CreateSubscription($params: CreateSubscriptionParams!) {
  createSubscription(subscriptionParams: $params) {
    subscription { eventEntity eventKey parentEntity parentId subscriberId }
  }
}
"""
SUBSCRIBERS = """
query Subscribers {
  subscribers {
    id name webhookUrl webhookSecret
    subscriptions { eventEntity eventKey parentEntity parentId subscriberId }
  }
}
"""
CATERERS = """
query Caterers($ids: [ID!], $uuids: [ID!]) {
  caterers(ids: $ids, uuids: $uuids) { id uuid name storeNumber }
}
"""


# ------------------------------------------------------------------------------------------ receiver
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint: records each POST and answers the next planned status (200 when none)."""

    server: ThreadingHTTPServer
    plan: list[int] = field(default_factory=list)
    verify_with: str | None = None  # answer 401 when the signature does not match this secret
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ezcater"

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def wait(self, count: int, timeout: float = 10.0) -> list[Received]:
        wait_for(lambda: len(self.snapshot()) >= count, timeout=timeout)
        return self.snapshot()


def _start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                status = receiver.plan.pop(0) if receiver.plan else 200
                if receiver.verify_with is not None and not verify(
                    receiver.verify_with, headers.get("x-ezcater-signature", ""), body
                ):
                    status = 401
                receiver.received.append(Received(self.path, headers, body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = _start_receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def verify(secret: str, header: str, body: str) -> bool:
    """The receiver's side of the documented signature: ``<ts>.<hex>``, hex = HMAC-SHA256(secret, ts.body)."""
    ts, _, digest = header.partition(".")
    expected = hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest)


def signed_at(received: Received) -> int:
    return int(received.headers["x-ezcater-signature"].split(".")[0])


# ------------------------------------------------------------------------------------------ helpers
def gql(sandbox: EzCaterSandbox, query: str, **variables: Any) -> dict[str, Any]:
    """POST a named operation with the sandbox token; the JSON answer (errors included)."""
    answer = requests.post(
        sandbox.graphql_url,
        json={"query": query, "variables": variables},
        headers={"Authorization": TOKEN},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def admin(sandbox: EzCaterSandbox, method: str, name: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{sandbox.url}/_sandbox/{name}", timeout=5, **kwargs)


def subscribed(
    sandbox: EzCaterSandbox,
    receiver: Receiver,
    keys: tuple[str, ...] = ("submitted",),
    caterer: str = DEMO_CATERER_UUID,
) -> str:
    """A subscriber (secret :data:`SECRET`) on ``receiver``, subscribed to ``keys``; its id."""
    subscriber = sandbox.create_subscriber("Kitchen automation", receiver.url, secret=SECRET)
    sandbox.subscribe(subscriber["id"], caterer, keys)
    return str(subscriber["id"])


# ------------------------------------------------------------------------------------------ GraphQL
def test_subscription_over_graphql_then_a_placed_order_is_delivered_signed(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    created = gql(ezcater_sandbox, CREATE_SUBSCRIBER, params={"name": "ops", "webhookUrl": receiver.url})
    subscriber = created["data"]["createSubscriber"]["subscriber"]
    secret = subscriber["webhookSecret"]
    assert len(secret) >= 40
    assert (subscriber["name"], subscriber["webhookUrl"], subscriber["subscriptions"]) == (
        "ops",
        receiver.url,
        [],
    )
    params = {
        "eventEntity": "Order",
        "eventKey": "submitted",
        "parentEntity": "Caterer",
        "parentId": DEMO_CATERER_UUID,
        "subscriberId": subscriber["id"],
    }
    made = gql(ezcater_sandbox, CREATE_SUBSCRIPTION, params=params)
    assert made == {"data": {"createSubscription": {"subscription": params}}}

    uuid = ezcater_sandbox.place_order(headcount=25)
    (got,) = receiver.wait(1)
    deliveries = ezcater_sandbox.wait_for_deliveries(timeout=10)

    assert got.path == "/hooks/ezcater"
    assert got.headers["content-type"] == "application/json"
    assert verify(secret, got.headers["x-ezcater-signature"], got.body)
    assert abs(signed_at(got) - time.time()) < 60
    body = got.json()
    assert list(body) == [
        "id",
        "parent_type",
        "parent_id",
        "entity_type",
        "entity_id",
        "key",
        "created_at",
        "occurred_at",
        "updated_at",
        "payload",
    ]
    assert UUID_RE.match(body["id"])
    assert (body["parent_type"], body["parent_id"], body["entity_type"], body["entity_id"], body["key"]) == (
        "Caterer",
        DEMO_CATERER_UUID,
        "Order",
        uuid,
        "submitted",
    )
    assert all(ISO_RE.match(body[k]) for k in ("created_at", "occurred_at", "updated_at"))
    assert body["payload"] is None
    assert ": " not in got.body  # compact JSON
    assert ", " not in got.body
    (delivery,) = deliveries
    assert (delivery["id"], delivery["order_id"], delivery["key"], delivery["state"]) == (
        body["id"],
        uuid,
        "submitted",
        "delivered",
    )
    assert [a["status"] for a in delivery["attempts"]] == [200]
    assert delivery["attempts"][0]["elapsed_ms"] >= 0
    assert delivery["duplicate_of"] is None
    # the pointer's order is the one placed: 25 people
    order = gql(ezcater_sandbox, ORDER, orderId=uuid)["data"]["order"]
    assert order["event"]["headcount"] == 25
    assert order["lifecycle"]["orderIsCurrently"] == "submitted"


def test_subscribers_query_never_shows_the_secret(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    assert gql(ezcater_sandbox, SUBSCRIBERS) == {"data": {"subscribers": []}}
    subscriber_id = subscribed(ezcater_sandbox, receiver, ("submitted", "cancelled"))

    (listed,) = gql(ezcater_sandbox, SUBSCRIBERS)["data"]["subscribers"]

    assert listed["id"] == subscriber_id
    assert listed["webhookSecret"] is None
    assert [s["eventKey"] for s in listed["subscriptions"]] == ["submitted", "cancelled"]
    assert all(s["subscriberId"] == subscriber_id for s in listed["subscriptions"])
    (admin_view,) = ezcater_sandbox.subscribers()
    assert "secret" not in json.dumps(admin_view).lower()
    assert SECRET not in admin(ezcater_sandbox, "GET", "subscribers").text


def test_create_subscriber_twice_is_an_error(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    params = {"name": "ops", "webhookUrl": receiver.url}
    assert gql(ezcater_sandbox, CREATE_SUBSCRIBER, params=params)["data"]["createSubscriber"]

    again = gql(ezcater_sandbox, CREATE_SUBSCRIBER, params=params)

    assert again["data"] == {"createSubscriber": None}
    (error,) = again["errors"]
    assert error["message"] == "Subscriber already exists for this API user"
    assert error["extensions"]["code"] == "SUBSCRIBER_ALREADY_EXISTS"
    assert error["path"] == ["createSubscriber"]
    assert len(ezcater_sandbox.subscribers()) == 1
    with pytest.raises(ValueError, match="already exists"):
        ezcater_sandbox.create_subscriber("again", receiver.url)


def test_update_subscriber_changes_name_and_url(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    subscriber_id = subscribed(ezcater_sandbox, receiver)
    other = _start_receiver()
    try:
        updated = gql(
            ezcater_sandbox,
            UPDATE_SUBSCRIBER,
            id=subscriber_id,
            params={"name": "renamed", "webhookUrl": other.url},
        )["data"]["updateSubscriber"]["subscriber"]
        assert updated == {
            "id": subscriber_id,
            "name": "renamed",
            "webhookUrl": other.url,
            "webhookSecret": None,
        }
        ezcater_sandbox.place_order()
        other.wait(1)
        ezcater_sandbox.wait_for_deliveries(timeout=10)
        assert receiver.snapshot() == []
    finally:
        other.server.shutdown()
        other.server.server_close()

    missing = gql(ezcater_sandbox, UPDATE_SUBSCRIBER, id="nope", params={"name": "x"})
    assert missing["data"] == {"updateSubscriber": None}
    assert missing["errors"][0]["message"] == "Couldn't find Subscriber"
    assert missing["errors"][0]["extensions"]["statusCode"] == 404
    bad_url = gql(ezcater_sandbox, UPDATE_SUBSCRIBER, id=subscriber_id, params={"webhookUrl": "ftp://x"})
    assert bad_url["errors"][0]["extensions"]["field"] == "webhookUrl"


@pytest.mark.parametrize(
    ("bad_field", "value"),
    [
        ("eventEntity", "Menu"),
        ("eventKey", "modified"),
        ("parentEntity", "Store"),
        ("parentId", "00000000-0000-4000-8000-000000000000"),
        ("subscriberId", "not-a-subscriber"),
    ],
)
def test_create_subscription_refuses_a_bad_field(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver, bad_field: str, value: str
) -> None:
    subscriber = ezcater_sandbox.create_subscriber("ops", receiver.url)
    params = {
        "eventEntity": "Order",
        "eventKey": "submitted",
        "parentEntity": "Caterer",
        "parentId": DEMO_CATERER_UUID,
        "subscriberId": subscriber["id"],
        bad_field: value,
    }

    answer = gql(ezcater_sandbox, CREATE_SUBSCRIPTION, params=params)

    assert answer["data"] == {"createSubscription": None}
    (error,) = answer["errors"]
    assert bad_field in error["message"]
    assert error["extensions"]["field"] == bad_field
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert ezcater_sandbox.subscribers()[0]["subscriptions"] == []


def test_an_identical_subscription_answers_the_existing_one(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    subscriber = ezcater_sandbox.create_subscriber("ops", receiver.url, secret=SECRET)
    params = {
        "eventEntity": "Order",
        "eventKey": "submitted",
        "parentEntity": "Caterer",
        "parentId": SECOND_CATERER_UUID,
        "subscriberId": subscriber["id"],
    }
    first = gql(ezcater_sandbox, CREATE_SUBSCRIPTION, params=params)
    second = gql(ezcater_sandbox, CREATE_SUBSCRIPTION, params=params)

    assert first == second
    assert len(ezcater_sandbox.subscribers()[0]["subscriptions"]) == 1
    ezcater_sandbox.place_order(caterer_uuid=SECOND_CATERER_UUID)
    assert len(ezcater_sandbox.wait_for_deliveries(timeout=10)) == 1


def test_caterers_query_filters_by_ids_and_uuids(ezcater_sandbox: EzCaterSandbox) -> None:
    seeded = "cafe0000-0000-4000-8000-0000000000aa"
    ezcater_sandbox.add_order(caterer_uuid=seeded)

    everyone = gql(ezcater_sandbox, CATERERS)["data"]["caterers"]
    by_id = gql(ezcater_sandbox, CATERERS, ids=["1002"])["data"]["caterers"]
    by_uuid = gql(ezcater_sandbox, CATERERS, uuids=[DEMO_CATERER_UUID, seeded])["data"]["caterers"]

    assert [(c["id"], c["uuid"]) for c in everyone] == [
        ("1001", DEMO_CATERER_UUID),
        ("1002", SECOND_CATERER_UUID),
        ("1003", seeded),
    ]
    assert [(c["uuid"], c["name"]) for c in by_id] == [(SECOND_CATERER_UUID, "Second Kitchen")]
    assert [c["uuid"] for c in by_uuid] == [DEMO_CATERER_UUID, seeded]
    assert ezcater_sandbox.caterers() == everyone
    assert gql(ezcater_sandbox, CATERERS, ids=["999"])["data"]["caterers"] == []


# ------------------------------------------------------------------------------------------ events
@FAST
def test_a_500_is_retried_until_a_200(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    subscribed(ezcater_sandbox, receiver)
    receiver.plan = [500]

    uuid = ezcater_sandbox.place_order()
    (delivery,) = ezcater_sandbox.wait_for_deliveries(timeout=10)

    first, second = receiver.snapshot()
    assert (first.status, second.status) == (500, 200)
    assert first.body == second.body
    assert verify(SECRET, first.headers["x-ezcater-signature"], first.body)
    assert verify(SECRET, second.headers["x-ezcater-signature"], second.body)
    assert delivery["order_id"] == uuid
    assert delivery["state"] == "delivered"
    assert [a["status"] for a in delivery["attempts"]] == [500, 200]


@pytest.mark.ezcater_sandbox(delivery_retry_base=0.01, delivery_max_attempts=3)
def test_an_unreachable_receiver_fails_after_the_last_attempt(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    url = receiver.url
    receiver.server.shutdown()
    receiver.server.server_close()  # nobody listens there any more
    subscriber = ezcater_sandbox.create_subscriber("ops", url)
    ezcater_sandbox.subscribe(subscriber["id"], DEMO_CATERER_UUID, "submitted")

    ezcater_sandbox.place_order()
    (delivery,) = ezcater_sandbox.wait_for_deliveries(timeout=10)

    assert delivery["state"] == "failed"
    assert len(delivery["attempts"]) == 3
    assert all(a["status"] is None and a["error"] for a in delivery["attempts"])


def test_cancel_sends_a_cancelled_delivery(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    subscribed(ezcater_sandbox, receiver, ("cancelled",))
    by_python = ezcater_sandbox.place_order()
    by_admin = ezcater_sandbox.place_order()

    ezcater_sandbox.cancel_order(by_python)
    answer = admin(ezcater_sandbox, "POST", f"orders/{by_admin}/cancel")
    ezcater_sandbox.wait_for_deliveries(timeout=10)

    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "cancelled"
    got = receiver.wait(2)
    assert sorted((r.json()["entity_id"], r.json()["key"]) for r in got) == sorted(
        [(by_python, "cancelled"), (by_admin, "cancelled")]
    )
    assert ezcater_sandbox.order_state(by_python) == "cancelled"
    again = admin(ezcater_sandbox, "POST", f"orders/{by_admin}/cancel")
    assert again.status_code == 409
    assert admin(ezcater_sandbox, "POST", "orders/nope/cancel").status_code == 404
    with pytest.raises(ValueError, match="cancel"):
        ezcater_sandbox.cancel_order(by_python)
    assert len(ezcater_sandbox.deliveries()) == 2


def test_accepted_fires_on_accept_order_and_on_an_accepted_modification(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    subscribed(ezcater_sandbox, receiver, ("accepted", "rejected", "cancelled"))
    uuid = ezcater_sandbox.place_order()
    rejected = ezcater_sandbox.place_order()
    assert ezcater_sandbox.deliveries() == []  # nobody subscribed to submitted

    gql(ezcater_sandbox, ACCEPT_ORDER, orderId=uuid)
    ezcater_sandbox.update_order(uuid, pending_modification=True)  # the customer modifies: no event
    gql(ezcater_sandbox, ACCEPT_ORDER, orderId=uuid, acceptModification=True)
    gql(ezcater_sandbox, REJECT_ORDER, orderId=rejected, input={"reason": "STAFF_SHORTAGE"})
    gql(ezcater_sandbox, REJECT_ORDER, orderId=uuid, input={"reason": "AT_DAILY_CAPACITY"})
    ezcater_sandbox.wait_for_deliveries(timeout=10)

    assert [d["key"] for d in ezcater_sandbox.deliveries(order_id=uuid)] == [
        "accepted",
        "accepted",
        "cancelled",
    ]
    assert [d["key"] for d in ezcater_sandbox.deliveries(order_id=rejected)] == ["rejected"]
    assert len({d["id"] for d in ezcater_sandbox.deliveries()}) == 4
    assert len(receiver.wait(4)) == 4
    assert [d["order_id"] for d in ezcater_sandbox.deliveries(key="accepted")] == [uuid, uuid]


def test_no_subscription_no_delivery(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    ezcater_sandbox.place_order()  # no subscriber at all
    subscribed(ezcater_sandbox, receiver, ("submitted",), caterer=SECOND_CATERER_UUID)
    ezcater_sandbox.place_order()  # the demo caterer: not subscribed
    ezcater_sandbox.add_order(state="draft", caterer_uuid=SECOND_CATERER_UUID)  # draft: not an event

    assert ezcater_sandbox.wait_for_deliveries(timeout=5) == []
    assert ezcater_sandbox.deliveries() == []
    assert receiver.snapshot() == []


def test_a_timed_transition_is_delivered_without_anyone_reading_the_order(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    subscribed(ezcater_sandbox, receiver, ("submitted", "cancelled"))
    uuid = ezcater_sandbox.add_order(state="draft", transitions=[("submitted", 0.2), ("cancelled", 0.2)])

    got = receiver.wait(2)

    assert [r.json()["key"] for r in sorted(got, key=lambda r: r.json()["occurred_at"])] == [
        "submitted",
        "cancelled",
    ]
    assert {r.json()["entity_id"] for r in got} == {uuid}
    assert ezcater_sandbox.count() == 0  # no API request read the order


# ------------------------------------------------------------------------------------------ faults
def test_duplicate_sends_the_same_id_twice(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    subscribed(ezcater_sandbox, receiver)
    ezcater_sandbox.inject_delivery_fault("duplicate")

    uuid = ezcater_sandbox.place_order()
    ezcater_sandbox.wait_for_deliveries(timeout=10)
    ezcater_sandbox.place_order()  # the fault was for one delivery only
    deliveries = ezcater_sandbox.wait_for_deliveries(timeout=10)

    first, copy, _ = receiver.wait(3)
    assert first.body == copy.body
    assert first.json()["entity_id"] == uuid
    assert verify(SECRET, copy.headers["x-ezcater-signature"], copy.body)
    original, duplicate, plain = deliveries
    assert original["id"] == duplicate["id"] == duplicate["duplicate_of"]
    assert original["faults"] == ["duplicate"]
    assert plain["duplicate_of"] is None
    assert plain["faults"] == []
    assert ezcater_sandbox.delivery_faults == []


def test_delay_holds_the_first_attempt(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    subscribed(ezcater_sandbox, receiver)
    ezcater_sandbox.inject_delivery_fault("delay", seconds=0.3)

    ezcater_sandbox.place_order()
    (delivery,) = ezcater_sandbox.wait_for_deliveries(timeout=10)

    assert delivery["faults"] == ["delay 0.3s"]
    assert delivery["attempts"][0]["at"] >= delivery["created"] + 0.3
    assert delivery["state"] == "delivered"


@FAST
def test_bad_signature_on_the_first_attempt_then_the_retry_lands(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    subscribed(ezcater_sandbox, receiver)
    receiver.verify_with = SECRET  # 401 for a signature that does not verify
    ezcater_sandbox.inject_delivery_fault("bad_signature")

    ezcater_sandbox.place_order()
    (delivery,) = ezcater_sandbox.wait_for_deliveries(timeout=10)

    wrong, right = receiver.snapshot()
    assert (wrong.status, right.status) == (401, 200)
    assert not verify(SECRET, wrong.headers["x-ezcater-signature"], wrong.body)
    assert verify(SECRET, right.headers["x-ezcater-signature"], right.body)
    assert delivery["state"] == "delivered"
    assert delivery["attempts"][0]["fault"] == "bad_signature"
    assert "fault" not in delivery["attempts"][1]


def test_stale_timestamp_signs_the_first_attempt_in_the_past(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    subscribed(ezcater_sandbox, receiver)
    ezcater_sandbox.inject_delivery_fault("stale_timestamp", seconds=600)

    ezcater_sandbox.place_order()
    ezcater_sandbox.wait_for_deliveries(timeout=10)

    (stale,) = receiver.snapshot()
    assert verify(SECRET, stale.headers["x-ezcater-signature"], stale.body)  # valid, but old
    assert time.time() - signed_at(stale) >= 599
    (delivery,) = ezcater_sandbox.deliveries()
    assert delivery["attempts"][0]["signed_at"] == signed_at(stale)


@FAST
def test_stale_timestamp_retry_carries_a_fresh_one(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    subscribed(ezcater_sandbox, receiver)
    receiver.plan = [400]  # the receiver refuses the stale one
    ezcater_sandbox.inject_delivery_fault("stale_timestamp", count=1, seconds=300)

    ezcater_sandbox.place_order()
    ezcater_sandbox.wait_for_deliveries(timeout=10)

    stale, fresh = receiver.snapshot()
    assert signed_at(fresh) - signed_at(stale) >= 299
    assert verify(SECRET, fresh.headers["x-ezcater-signature"], fresh.body)


@FAST
def test_delivery_faults_queue_one_per_delivery(ezcater_sandbox: EzCaterSandbox, receiver: Receiver) -> None:
    subscribed(ezcater_sandbox, receiver)
    receiver.verify_with = SECRET
    ezcater_sandbox.inject_delivery_fault("bad_signature", count=1)
    ezcater_sandbox.inject_delivery_fault("stale_timestamp", count=1, seconds=900)

    first, second, third = (ezcater_sandbox.place_order() for _ in range(3))
    ezcater_sandbox.wait_for_deliveries(timeout=10)

    assert [ezcater_sandbox.deliveries(order_id=o)[0]["faults"] for o in (first, second, third)] == [
        ["bad_signature"],
        ["stale_timestamp 900s"],
        [],
    ]
    assert all(d["state"] == "delivered" for d in ezcater_sandbox.deliveries())


def test_unknown_or_incomplete_delivery_faults_are_refused(ezcater_sandbox: EzCaterSandbox) -> None:
    with pytest.raises(ValueError, match="unknown delivery fault"):
        ezcater_sandbox.inject_delivery_fault("lose")
    with pytest.raises(ValueError, match="seconds"):
        ezcater_sandbox.inject_delivery_fault("delay")
    with pytest.raises(ValueError, match="count"):
        ezcater_sandbox.inject_delivery_fault("duplicate", count=0)
    assert admin(ezcater_sandbox, "POST", "delivery-faults", json={"kind": "lose"}).status_code == 400
    assert ezcater_sandbox.delivery_faults == []


# ------------------------------------------------------------------------------------------ scale
def test_a_burst_of_200_orders_is_delivered_completely(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    subscribed(ezcater_sandbox, receiver)

    placed = {ezcater_sandbox.place_order() for _ in range(200)}
    deliveries = ezcater_sandbox.wait_for_deliveries(timeout=60)

    assert len(deliveries) == 200
    assert all(d["state"] == "delivered" for d in deliveries)
    got = receiver.wait(200)
    assert {r.json()["entity_id"] for r in got} == placed
    assert len({r.json()["id"] for r in got}) == 200


# ------------------------------------------------------------------------------------------ admin routes
def test_admin_routes_for_subscribers_orders_faults_deliveries_and_reset(
    ezcater_sandbox: EzCaterSandbox, receiver: Receiver
) -> None:
    created = admin(
        ezcater_sandbox,
        "POST",
        "subscribers",
        json={"name": "ops", "webhookUrl": receiver.url, "webhookSecret": SECRET},
    )
    assert created.status_code == 201, created.text
    subscriber = created.json()
    assert subscriber["webhookSecret"] == SECRET
    taken = admin(ezcater_sandbox, "POST", "subscribers", json={"name": "x", "webhookUrl": receiver.url})
    assert taken.status_code == 409
    assert admin(ezcater_sandbox, "POST", "subscribers", json={"name": "x"}).status_code == 400
    subscribed_now = admin(
        ezcater_sandbox,
        "POST",
        "subscriptions",
        json={"subscriber_id": subscriber["id"], "caterer_uuid": DEMO_CATERER_UUID, "keys": ["submitted"]},
    )
    assert subscribed_now.status_code == 201, subscribed_now.text
    (listed,) = admin(ezcater_sandbox, "GET", "subscribers").json()["subscribers"]
    assert listed == {
        "id": subscriber["id"],
        "name": "ops",
        "webhookUrl": receiver.url,
        "subscriptions": subscribed_now.json()["subscriptions"],
    }
    assert [c["id"] for c in admin(ezcater_sandbox, "GET", "caterers").json()["caterers"]] == ["1001", "1002"]

    fault = admin(ezcater_sandbox, "POST", "delivery-faults", json={"kind": "duplicate", "count": 1})
    assert fault.status_code == 201, fault.text
    assert admin(ezcater_sandbox, "GET", "delivery-faults").json() == {
        "faults": [{"kind": "duplicate", "count": 1, "seconds": 0.0}]
    }
    placed = admin(ezcater_sandbox, "POST", "place-order", json={"headcount": 25})
    assert placed.status_code == 201, placed.text
    assert placed.json()["state"] == "submitted"
    uuid = placed.json()["uuid"]
    assert ezcater_sandbox.orders[uuid].headcount == 25
    assert admin(ezcater_sandbox, "POST", "place-order", json={"headcount": 0}).status_code == 400
    assert admin(ezcater_sandbox, "POST", "place-order", json={"colour": "red"}).status_code == 400
    ezcater_sandbox.wait_for_deliveries(timeout=10)

    listing = admin(ezcater_sandbox, "GET", "deliveries", params={"order": uuid, "key": "submitted"}).json()
    assert listing["count"] == 2
    assert [d["duplicate_of"] for d in listing["deliveries"]] == [None, listing["deliveries"][0]["id"]]
    assert admin(ezcater_sandbox, "GET", "deliveries", params={"key": "cancelled"}).json()["count"] == 0

    ezcater_sandbox.inject_delivery_fault("delay", seconds=5)
    assert admin(ezcater_sandbox, "POST", "reset").json() == {"reset": True}
    assert ezcater_sandbox.subscribers() == []
    assert ezcater_sandbox.deliveries() == []
    assert ezcater_sandbox.delivery_faults == []
    assert len(ezcater_sandbox.caterers()) == 2


# ------------------------------------------------------------------------------------------ lifecycle
def test_wait_for_deliveries_names_the_pending_ones_and_nothing_is_sent_before_start(
    receiver: Receiver,
) -> None:
    sandbox = EzCaterSandbox()  # not started: deliveries wait
    subscriber = sandbox.create_subscriber("ops", receiver.url, secret=SECRET)
    sandbox.subscribe(subscriber["id"], DEMO_CATERER_UUID, ["submitted"])
    uuid = sandbox.place_order()

    with pytest.raises(TimeoutError, match=uuid):
        sandbox.wait_for_deliveries(timeout=0.05)
    assert receiver.snapshot() == []

    with sandbox:
        (delivery,) = sandbox.wait_for_deliveries(timeout=10)
    assert delivery["state"] == "delivered"
    assert not [
        t for t in threading.enumerate() if t.name.startswith(("ezcater-delivery", "ezcater-sandbox"))
    ]


def test_headcount_is_random_unless_given() -> None:
    sandbox = EzCaterSandbox()
    placed, given, drawn = sandbox.place_order(), sandbox.add_order(headcount=7), sandbox.add_order()
    assert sandbox.orders[placed].headcount == 25
    assert sandbox.orders[given].headcount == 7
    assert sandbox.orders[drawn].headcount in (12, 20, 25, 40)
    with pytest.raises(ValueError, match="headcount"):
        sandbox.place_order(headcount=-1)


def test_cli_prints_how_to_place_an_order_and_the_order_is_delivered(receiver: Receiver) -> None:
    from .test_cli import start

    running = start("--no-demo-orders", "--delivery-retry-base", "0.05")
    try:
        line = running.line_starting("Place an ezCater order")
        command = shlex.split(line.partition(": ")[2])
        assert command[:3] == ["curl", "-X", "POST"]
        url, data = command[3], command[command.index("-d") + 1]
        assert url.endswith("/_sandbox/place-order")
        root = url.removesuffix("/_sandbox/place-order")
        created = requests.post(
            f"{root}/_sandbox/subscribers",
            json={"name": "ops", "webhookUrl": receiver.url, "webhookSecret": SECRET},
            timeout=5,
        ).json()
        requests.post(
            f"{root}/_sandbox/subscriptions",
            json={"subscriber_id": created["id"], "caterer_uuid": DEMO_CATERER_UUID, "keys": "submitted"},
            timeout=5,
        ).raise_for_status()

        placed = requests.post(url, data=data, timeout=5)

        assert placed.status_code == 201, placed.text
        (got,) = receiver.wait(1)
        assert got.json()["entity_id"] == placed.json()["uuid"]
        assert verify(SECRET, got.headers["x-ezcater-signature"], got.body)
    finally:
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=15) == 0
