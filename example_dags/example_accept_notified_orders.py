"""
### Accept (or turn down) ezCater orders as their "submitted" notifications arrive

ezCater notifies the provider's webhook receiver when a catering order is submitted; the receiver checks
the signature and records an asset event on `ezcater://ezcater_default/orders/submitted` (extra:
`delivery_id`, `order_id`, `key`, `caterer_id`, `occurred_at`). This DAG is scheduled on that asset, so
each notification starts a run. The scheduler folds every event since the previous run into the next
one: one run may carry several orders, and the same order twice (ezCater may notify twice).

1. **notified_order_ids** collects the order ids of the run's triggering events, plus the `order_ids`
   param, each once.
2. **notified_order** is a mapped task group: one copy per order id, each with its own tasks.
   **notified_order.review** reads the order (caterer, event time, headcount, state), logs a one-line
   summary and decides:
   - the order is no longer `submitted` (accepted or rejected elsewhere, or cancelled meanwhile):
     neither accept nor reject is sent; the log says why;
   - its headcount exceeds `daily_headcount_capacity`: **notified_order.reject** rejects it with
     `AT_DAILY_CAPACITY`;
   - otherwise **notified_order.accept** accepts it.

   **notified_order.should_accept** and **notified_order.should_reject** carry the decision out: each
   skips itself, and so its accept or reject, unless the review chose it. (Not `@task.branch`: on
   Airflow 3.2 and 3.3 a branch inside a mapped task group skips nothing, so both accept and reject would
   run, apache/airflow#67265.) Each order has its own copy: one order turned down, or failing, does not
   hold up another.

**The capacity rule is per order.** ezCater's API offers no list of the orders you have accepted, so this
example cannot tally a day's guests: it only turns down an order that alone exceeds the capacity. A real
kitchen would add up the headcount it has accepted per event day in a store of its own (a database
table, say) and compare the day's total with its capacity.

**Replaying a missed notification**: trigger the DAG by hand with the order ids, e.g.
`airflow dags trigger example_accept_notified_orders --conf '{"order_ids": ["<uuid>"]}'`
(or the trigger form). A run with no order ids succeeds and does nothing (the group is mapped over an
empty list, so its tasks are skipped). Connection: `ezcater_default` (it names the asset too, fixed when
the file is parsed).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSkipException
from airflow.sdk import DAG, Param, task, task_group

from airflow_provider_orders.assets import ezcater_order_asset, order_ids_from_events
from airflow_provider_orders.operators.ezcater import AcceptOrderOperator, RejectOrderOperator

#: The ezCater connection: it names the asset this DAG is scheduled on (fixed at parse time) and is the
#: connection the tasks read and answer orders with.
EZCATER_CONN_ID = "ezcater_default"
#: The review's decisions.
ACCEPT, REJECT, NEITHER = "accept", "reject", "neither"

log = logging.getLogger(__name__)

with DAG(
    dag_id="example_accept_notified_orders",
    description="Accept each ezCater order its 'submitted' notification names, or reject it when too large.",
    doc_md=__doc__,
    schedule=[ezcater_order_asset(EZCATER_CONN_ID, "submitted")],
    catchup=False,
    tags=["example", "ezcater"],
    default_args={
        # Safe to retry: review only reads, and a retried accept / reject recognises the mutation its own
        # earlier try sent.
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
    },
    params={
        "daily_headcount_capacity": Param(
            150,
            type="integer",
            minimum=0,
            title="Daily headcount capacity",
            description="Guests the kitchen can serve in one day. An order whose headcount exceeds it is "
            "rejected with AT_DAILY_CAPACITY. Applied per order: ezCater lists no accepted orders to add "
            "up.",
        ),
        "order_ids": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            title="ezCater order ids",
            description="Orders (ezCater order uuids, one per line) to review in addition to the run's "
            "notifications: fill in to replay a missed notification by hand. Empty for scheduled runs.",
        ),
    },
) as dag:

    @task
    def notified_order_ids(
        triggering_asset_events: Any = None, params: dict[str, Any] | None = None
    ) -> list[str]:
        """The ids of the submitted orders this run was notified of, then those of the order_ids param."""
        order_ids = order_ids_from_events(
            triggering_asset_events,
            key="submitted",
            conn_id=EZCATER_CONN_ID,
            also=(params or {}).get("order_ids"),
        )
        log.info("%d order(s) to review: %s", len(order_ids), ", ".join(order_ids) or "none")
        return order_ids

    @task
    def review(order_id: str, params: dict[str, Any] | None = None) -> str:
        """Read the order and decide: accept, reject, or neither (it is no longer submitted)."""
        from airflow_provider_orders.hooks.ezcater import EzCaterHook
        from airflow_provider_orders.models.ezcater import lifecycle_state_of

        capacity = int((params or {}).get("daily_headcount_capacity", 150))
        hook = EzCaterHook(ezcater_conn_id=EZCATER_CONN_ID)
        try:
            order = hook.get_order(order_id)
        finally:
            hook.close()
        state = lifecycle_state_of(order)
        caterer = (order.get("caterer") or {}).get("name") or (order.get("caterer") or {}).get("uuid")
        event = order.get("event") or {}
        headcount = event.get("headcount")
        log.info(
            "Order %s (#%s): %s, caterer %s, event %s, headcount %s (capacity %d)",
            order_id,
            order.get("orderNumber"),
            state,
            caterer,
            event.get("timestamp"),
            headcount,
            capacity,
        )
        if state != "submitted":
            log.info(
                "Neither accepting nor rejecting order %s: it is %s, no longer submitted (accepted or "
                "rejected elsewhere, or cancelled since the notification).",
                order_id,
                state,
            )
            return NEITHER
        if isinstance(headcount, bool) or not isinstance(headcount, int):
            log.warning(
                "Neither accepting nor rejecting order %s: ezCater gives no headcount (%r); decide by hand.",
                order_id,
                headcount,
            )
            return NEITHER
        if headcount > capacity:
            log.info(
                "Rejecting order %s: %d guests exceed the capacity of %d.", order_id, headcount, capacity
            )
            return REJECT
        log.info("Accepting order %s: %d guests fit the capacity of %d.", order_id, headcount, capacity)
        return ACCEPT

    @task
    def carry_out(decision: str, action: str) -> None:
        """Go on to ``action`` only if the review decided on it; otherwise skip (and so skip the action)."""
        if decision != action:
            raise AirflowSkipException(f"The review decided: {decision}.")

    # One review → should_accept → accept and review → should_reject → reject per order: a mapped task
    # group expanded over the order ids, so a skip reaches only its own copy's accept or reject.
    @task_group
    def notified_order(order_id: str) -> None:
        decision: Any = review(order_id)  # an XComArg: each copy's tasks below get its own review's value
        should_accept = carry_out.override(task_id="should_accept")(decision, ACCEPT)
        should_reject = carry_out.override(task_id="should_reject")(decision, REJECT)
        accept = AcceptOrderOperator(task_id="accept", order_id=order_id, ezcater_conn_id=EZCATER_CONN_ID)
        reject = RejectOrderOperator(
            task_id="reject",
            order_id=order_id,
            reason="AT_DAILY_CAPACITY",
            explanation="Thank you for your order. Its headcount is more than the "
            "{{ params.daily_headcount_capacity }} guests our kitchen can serve in a day.",
            ezcater_conn_id=EZCATER_CONN_ID,
        )
        should_accept >> accept
        should_reject >> reject

    notified_order.expand(order_id=notified_order_ids())


if __name__ == "__main__":
    dag.test()
