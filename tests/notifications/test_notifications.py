"""Orders accepted as their notifications arrive, in a real Airflow (``make test-notifications``).

ezCater sandbox → signed delivery → the receiver plugin on the API server → asset event → asset-triggered
run → ``acceptOrder`` → the sandbox shows the order accepted; nobody types an order id. The stack
(two sandboxes, PostgreSQL, Airflow's four components) is started once for the module: see
``notif_harness.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests
from e2e_harness import wait_until
from notif_harness import HERE, REPO, NotificationStack, notification_stack

from airflow_provider_orders.webhooks import signature

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_orders.sandbox import EzCaterSandbox

pytestmark = [pytest.mark.notifications, pytest.mark.timeout(1500)]
ARTIFACTS = REPO / ".artifacts" / "notifications"
ACCEPT_DAG = "example_accept_notified_orders"
ACCEPTED_TIMEOUT = 180.0
BURST = 200


@pytest.fixture(scope="module")
def stack() -> Iterator[NotificationStack]:
    with notification_stack(ARTIFACTS) as started:
        yield started


def mutations(sandbox: EzCaterSandbox, order_id: str) -> list[str]:
    return [m["mutation"] for m in sandbox.model.orders[order_id].to_admin()["mutations"]]


def statuses(sandbox: EzCaterSandbox, order_id: str, key: str = "submitted") -> list[Any]:
    """Every answer the receiver gave to the deliveries of one order's ``key`` event, in order."""
    return [a["status"] for d in sandbox.deliveries(order_id=order_id, key=key) for a in d["attempts"]]


def wait_state(sandbox: EzCaterSandbox, order_id: str, state: str, timeout: float = ACCEPTED_TIMEOUT) -> None:
    wait_until(
        f"order {order_id} to be {state}",
        lambda: sandbox.order_state(order_id) == state,
        timeout,
        describe=lambda: (
            f"state {sandbox.order_state(order_id)}; deliveries {sandbox.deliveries(order_id=order_id)}"
        ),
    )


def settle(sandbox: EzCaterSandbox, order_id: str) -> list[dict[str, Any]]:
    """The order's deliveries once none is pending (others, e.g. a refused ``rejected``, may still be)."""
    return wait_until(
        f"the deliveries of order {order_id} to settle",
        lambda: (
            [d for d in sandbox.deliveries(order_id=order_id) if d["state"] != "pending"]
            if all(d["state"] != "pending" for d in sandbox.deliveries(order_id=order_id))
            else None
        ),
        60,
        interval=0.2,
    )


def post_raw(stack: NotificationStack, conn_id: str, body: bytes, header: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[signature.HEADER] = header
    return requests.post(stack.webhook_url(conn_id), data=body, headers=headers, timeout=30)


def test_subscribing_printed_how_to_store_the_secret_and_never_the_secret(stack: NotificationStack) -> None:
    assert "webhook_secret" in stack.subscribe_output
    assert stack.secrets["ezcater_default"] not in stack.subscribe_output


def test_a_placed_order_is_accepted_through_its_notification(stack: NotificationStack) -> None:
    order_id = stack.ez.place_order(headcount=25)
    wait_state(stack.ez, order_id, "accepted")
    assert mutations(stack.ez, order_id) == ["acceptOrder"]
    assert statuses(stack.ez, order_id) == [202]
    events = [
        e for e in stack.asset_events("ezcater_default", "submitted") if e["extra"]["order_id"] == order_id
    ]
    assert len(events) == 1
    assert events[0]["extra"]["key"] == "submitted"
    runs = stack.dag_runs(ACCEPT_DAG)
    assert runs
    assert all(r["run_type"] == "asset_triggered" for r in runs)


def test_an_order_over_capacity_is_rejected_and_a_cancellation_is_recorded(stack: NotificationStack) -> None:
    big = stack.ez.place_order(headcount=400)
    wait_state(stack.ez, big, "rejected")
    assert mutations(stack.ez, big) == ["rejectOrder"]
    assert stack.ez.model.orders[big].rejection["reason"] == "AT_DAILY_CAPACITY"

    cancelled = stack.ez.place_order(headcount=25)
    wait_state(stack.ez, cancelled, "accepted")
    stack.ez.cancel_order(cancelled)
    wait_until(
        "the cancellation DAG to run for the cancelled order",
        lambda: (
            [
                e
                for e in stack.asset_events("ezcater_default", "cancelled")
                if e["extra"]["order_id"] == cancelled
            ]
            and any(r["state"] == "success" for r in stack.dag_runs("example_record_cancelled_orders"))
        ),
        ACCEPTED_TIMEOUT,
    )


def test_a_repeated_delivery_leads_to_one_accept(stack: NotificationStack) -> None:
    stack.ez.inject_delivery_fault("duplicate", count=1)
    order_id = stack.ez.place_order(headcount=25)
    wait_state(stack.ez, order_id, "accepted")
    deliveries = [d for d in settle(stack.ez, order_id) if d["key"] == "submitted"]
    assert len(deliveries) == 2
    assert len({d["id"] for d in deliveries}) == 1  # the same delivery id, twice
    assert sorted(statuses(stack.ez, order_id)) == [200, 202]  # one recorded, one "duplicate"
    events = [
        e for e in stack.asset_events("ezcater_default", "submitted") if e["extra"]["order_id"] == order_id
    ]
    assert len(events) == 1
    assert mutations(stack.ez, order_id) == ["acceptOrder"]


def test_forged_and_stale_deliveries_get_401_and_the_retry_with_a_good_signature_lands(
    stack: NotificationStack,
) -> None:
    stack.ez.inject_delivery_fault("bad_signature", count=1)
    stack.ez.inject_delivery_fault("stale_timestamp", count=1, seconds=900)
    first = stack.ez.place_order(headcount=25)
    second = stack.ez.place_order(headcount=25)
    for order_id in (first, second):
        wait_state(stack.ez, order_id, "accepted")
        answers = statuses(stack.ez, order_id)
        assert answers[-1] == 202
        assert mutations(stack.ez, order_id) == ["acceptOrder"]
    assert sorted(statuses(stack.ez, first)[:1] + statuses(stack.ez, second)[:1]) == [401, 401]


def test_unverified_requests_create_nothing_and_look_the_same_for_any_connection(
    stack: NotificationStack,
) -> None:
    before = len(stack.asset_events("ezcater_default", "submitted"))
    order_id = str(uuid.uuid4())
    body = json.dumps(
        {"id": str(uuid.uuid4()), "entity_type": "Order", "entity_id": order_id, "key": "submitted"}
    ).encode()
    now = int(time.time())
    forged = signature.sign("guessed-secret", body, now)
    stale = signature.sign(stack.secrets["ezcater_default"], body, now - 3600)
    answers = {
        "forged": post_raw(stack, "ezcater_default", body, forged),
        "missing": post_raw(stack, "ezcater_default", body, None),
        "unknown connection": post_raw(stack, "no_such_connection", body, forged),
        "stale": post_raw(stack, "ezcater_default", body, stale),
    }
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 401)
    assert answers["forged"].json() == answers["unknown connection"].json() == answers["missing"].json()
    assert len(stack.asset_events("ezcater_default", "submitted")) == before
    # The receiver exposes nothing else, and Airflow's own API still wants what it wanted.
    assert requests.get(f"{stack.cluster.base_url}/ezcater/docs", timeout=10).status_code == 404
    assert requests.get(stack.webhook_url("ezcater_default"), timeout=10).status_code == 405


def test_copies_of_one_delivery_racing_on_several_api_server_workers_create_one_event(
    stack: NotificationStack,
) -> None:
    """The guard is in the metadata DB: 12 simultaneous copies (2 API-server workers) → one event, one accept."""
    from concurrent.futures import ThreadPoolExecutor

    # An order of a caterer nobody subscribed to: the only notification of it is the one we send.
    order_id = stack.ez.add_order(caterer_uuid="c0ffee00-0000-4000-8000-000000000002", headcount=25)
    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "parent_type": "Caterer",
            "parent_id": "c0ffee00-0000-4000-8000-000000000002",
            "entity_type": "Order",
            "entity_id": order_id,
            "key": "submitted",
            "occurred_at": "2026-12-01T05:00:00Z",
            "payload": None,
        }
    ).encode()
    header = signature.sign(stack.secrets["ezcater_default"], body, int(time.time()))
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(
            pool.map(lambda _: post_raw(stack, "ezcater_default", body, header).status_code, range(12))
        )
    assert sorted(answers) == [200] * 11 + [202]
    wait_state(stack.ez, order_id, "accepted")
    events = [
        e for e in stack.asset_events("ezcater_default", "submitted") if e["extra"]["order_id"] == order_id
    ]
    assert len(events) == 1
    assert mutations(stack.ez, order_id) == ["acceptOrder"]


def test_a_burst_of_deliveries_accepts_every_order_exactly_once(stack: NotificationStack) -> None:
    orders = [stack.burst.place_order(headcount=25) for _ in range(BURST)]
    wait_until(
        f"all {BURST} burst orders to be accepted",
        lambda: all(stack.burst.order_state(o) == "accepted" for o in orders),
        360,
        interval=2,
        describe=lambda: f"{sum(stack.burst.order_state(o) == 'accepted' for o in orders)} accepted",
    )
    stack.burst.wait_for_deliveries(timeout=60)
    answers = [a["status"] for o in orders for d in stack.burst.deliveries(order_id=o) for a in d["attempts"]]
    assert not [s for s in answers if s is None or s >= 500], "the receiver answered 5xx or not at all"
    assert all(mutations(stack.burst, o) == ["acceptOrder"] for o in orders)
    # Each delivery reached exactly one run: the runs' returned order ids add up to the burst.
    consumed: list[str] = []

    def runs_done() -> bool:
        runs = stack.dag_runs("notified_burst")
        return bool(runs) and all(r["state"] == "success" for r in runs)

    wait_until("every burst run to finish", runs_done, 120)
    for run in stack.dag_runs("notified_burst"):
        xcom = stack.cluster.api(
            f"dags/notified_burst/dagRuns/{requests.utils.quote(run['dag_run_id'], safe='')}"
            "/taskInstances/accept_all/xcomEntries/return_value",
            deserialize="true",
            stringify="false",
        )
        value = xcom["value"]
        consumed.extend(json.loads(value) if isinstance(value, str) else value)
    assert sorted(consumed) == sorted(orders)


def test_a_delivery_before_any_dag_listens_is_refused_then_lands_once_one_does(
    stack: NotificationStack,
) -> None:
    """``rejected`` is subscribed but no DAG schedules on it: 503 until a DAG file for it is deployed."""
    order_id = stack.ez.place_order(headcount=400)  # the example DAG rejects it: a `rejected` delivery
    wait_state(stack.ez, order_id, "rejected")
    wait_until(
        "the rejected delivery to be refused with 503",
        lambda: 503 in statuses(stack.ez, order_id, "rejected"),
        60,
        interval=0.5,
    )
    stack.deploy_dag(HERE / "dags" / "notified_rejections.py", "notified_rejections.py")
    wait_until(
        "the retried delivery to land once a DAG listens",
        lambda: statuses(stack.ez, order_id, "rejected")[-1:] == [202],
        180,
        describe=lambda: f"answers so far: {statuses(stack.ez, order_id, 'rejected')}",
    )
    wait_until(
        "the listening DAG to run with the order",
        lambda: any(r["state"] == "success" for r in stack.dag_runs("notified_rejections")),
        ACCEPTED_TIMEOUT,
    )
    events = [
        e for e in stack.asset_events("ezcater_default", "rejected") if e["extra"]["order_id"] == order_id
    ]
    assert len(events) == 1


def test_no_secret_reaches_a_log_or_an_asset_event(stack: NotificationStack) -> None:
    """Runs last: every component log and task log of the session, and every asset event's extra."""
    secrets = [*stack.secrets.values(), stack.ez.token]
    files = [*stack.cluster.artifacts.glob("*.log"), *(stack.cluster.home / "logs").rglob("*")]
    found = [
        str(path)
        for path in files
        if path.is_file() and any(secret in path.read_text(errors="replace") for secret in secrets)
    ]
    assert not found, f"a secret is in {found}"
    for key in ("submitted", "cancelled", "rejected"):
        for event in stack.asset_events("ezcater_default", key):
            assert not any(secret in json.dumps(event) for secret in secrets)
