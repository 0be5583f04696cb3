"""
### Record ezCater orders as their "cancelled" notifications arrive

Scheduled on the asset `ezcater://ezcater_default/orders/cancelled`, which the provider's webhook receiver
feeds with one asset event per verified "cancelled" notification. A notification says only *which* order
changed, so **record_cancelled_order** (mapped: one copy per order id) reads each order and returns, and
logs, a record `{order_id, order_number, caterer, state, event_time}`: the place to write it to your own
store (and to free the day's capacity the order had taken). `state` is the order's state when it is
read; a record whose state is no longer `cancelled` is logged with a warning.

To record an order whose notification was missed, trigger the DAG by hand:
`airflow dags trigger example_record_cancelled_orders --conf '{"order_ids": ["<uuid>"]}'`.
Connection: `ezcater_default`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_orders.assets import ezcater_order_asset, order_ids_from_events

#: The ezCater connection: it names the asset (fixed at parse time) and is the one the orders are read with.
EZCATER_CONN_ID = "ezcater_default"

log = logging.getLogger(__name__)

with DAG(
    dag_id="example_record_cancelled_orders",
    description="Record each ezCater order its 'cancelled' notification names.",
    doc_md=__doc__,
    schedule=[ezcater_order_asset(EZCATER_CONN_ID, "cancelled")],
    catchup=False,
    tags=["example", "ezcater"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "order_ids": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            title="ezCater order ids",
            description="Orders (ezCater order uuids, one per line) to record in addition to the run's "
            "notifications: fill in to replay a missed notification by hand. Empty for scheduled runs.",
        ),
    },
) as dag:

    @task
    def cancelled_order_ids(
        triggering_asset_events: Any = None, params: dict[str, Any] | None = None
    ) -> list[str]:
        """The ids of the cancelled orders this run was notified of, then those of the order_ids param."""
        return order_ids_from_events(
            triggering_asset_events,
            key="cancelled",
            conn_id=EZCATER_CONN_ID,
            also=(params or {}).get("order_ids"),
        )

    @task
    def record_cancelled_order(order_id: str) -> dict[str, Any]:
        """Read the order and return its record (store it in your own system here)."""
        from airflow_provider_orders.hooks.ezcater import EzCaterHook

        hook = EzCaterHook(ezcater_conn_id=EZCATER_CONN_ID)
        try:
            order = hook.get_order(order_id)
        finally:
            hook.close()
        caterer = order.get("caterer") or {}
        record = {
            "order_id": order_id,
            "order_number": order.get("orderNumber"),
            "caterer": caterer.get("name") or caterer.get("uuid"),
            "state": (order.get("lifecycle") or {}).get("orderIsCurrently"),
            "event_time": (order.get("event") or {}).get("timestamp"),
        }
        if record["state"] != "cancelled":
            log.warning(
                "Order %s is %s now, no longer cancelled: recording it as it is.", order_id, record["state"]
            )
        log.info("Cancelled order: %s", record)
        return record

    record_cancelled_order.expand(order_id=cancelled_order_ids())


if __name__ == "__main__":
    dag.test()
