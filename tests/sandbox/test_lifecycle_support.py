"""Sandbox capabilities the lifecycle matrix (tests/lifecycle) relies on.

* DataKitchen ``finish_run`` / ``POST /_sandbox/runs/{run_id}/finish``: a test ends a long run when it
  chooses (after a kill, a clear, a triggerer restart), instead of guessing a duration.
* ezCater ``mutations`` on every order (admin view): how many acceptOrder / rejectOrder calls actually
  changed the order, as opposed to how many were received (the request log).
* ``delay`` + ``apply``: the mutation is applied at once and its answer comes late, so a kill can land
  while the client still waits for it.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
import requests

from .conftest import ACCEPT_ORDER, DK, REJECT_ORDER, execute, gql_client, wait_for

if TYPE_CHECKING:
    from gql import Client

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox


def test_finish_run_ends_a_long_run_now(datakitchen_sandbox: DataKitchenSandbox, dk: DK) -> None:
    datakitchen_sandbox.add_variation("demo-kitchen", "demo-recipe", "long", active_seconds=600)
    order_id = dk.create("long")
    run_id = wait_for(lambda: dk.servings(order_id))[0]["hid"]
    wait_for(lambda: dk.servings(order_id)[0]["status"] == "ACTIVE_SERVING")

    answer = requests.post(f"{datakitchen_sandbox.url}/_sandbox/runs/{run_id}/finish", timeout=5)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "COMPLETED_SERVING"
    serving = dk.servings(order_id)[0]
    assert serving["status"] == "COMPLETED_SERVING"
    assert serving["timings"]["end-time"] is not None
    assert datakitchen_sandbox.count(route="stop_run") == 0


def test_finish_run_keeps_a_stopped_run_stopped_and_404s_an_unknown_run(
    datakitchen_sandbox: DataKitchenSandbox, dk: DK
) -> None:
    datakitchen_sandbox.add_variation("demo-kitchen", "demo-recipe", "long", active_seconds=600)
    order_id = dk.create("long")
    run_id = wait_for(lambda: dk.servings(order_id))[0]["hid"]
    assert dk.put(f"/v2/serving/stop/{run_id}").status_code == 200

    assert datakitchen_sandbox.finish_run(run_id)["status"] == "STOPPED_SERVING"
    missing = requests.post(f"{datakitchen_sandbox.url}/_sandbox/runs/nope/finish", timeout=5)
    assert missing.status_code == 404


def test_mutations_count_what_changed_the_order(ezcater_sandbox: EzCaterSandbox, ez: Client) -> None:
    accepted = ezcater_sandbox.add_order(state="submitted")
    rejected = ezcater_sandbox.add_order(state="submitted")
    execute(ez, ACCEPT_ORDER, orderId=accepted)
    with pytest.raises(Exception, match="unable to accept"):  # refused: changes nothing
        execute(ez, ACCEPT_ORDER, orderId=accepted)
    execute(ez, REJECT_ORDER, orderId=rejected, input={"reason": "STAFF_SHORTAGE"})
    ezcater_sandbox.update_order(rejected, state="cancelled")  # the outside world: not a mutation

    orders = {
        o["uuid"]: o
        for o in requests.get(f"{ezcater_sandbox.url}/_sandbox/orders", timeout=5).json()["orders"]
    }

    assert [(m["mutation"], m["state"]) for m in orders[accepted]["mutations"]] == [
        ("acceptOrder", "accepted")
    ]
    assert [(m["mutation"], m["state"]) for m in orders[rejected]["mutations"]] == [
        ("rejectOrder", "rejected")
    ]
    assert ezcater_sandbox.count(route="acceptOrder") == 2


def test_delay_after_applying_applies_first_and_answers_late(
    ezcater_sandbox: EzCaterSandbox, ez: Client
) -> None:
    uuid = ezcater_sandbox.add_order(state="submitted")
    ezcater_sandbox.inject_fault("acceptOrder", delay=3.0, apply=True)
    answered: list[float] = []
    started = time.monotonic()

    def accept() -> None:
        execute(gql_client(ezcater_sandbox), ACCEPT_ORDER, orderId=uuid)
        answered.append(time.monotonic() - started)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    wait_for(lambda: ezcater_sandbox.order_state(uuid) == "accepted", timeout=2.0)
    assert not answered  # applied, the answer still on its way
    thread.join(timeout=10)
    assert answered
    assert answered[0] >= 3.0
    assert len(ezcater_sandbox.orders[uuid].mutations) == 1
