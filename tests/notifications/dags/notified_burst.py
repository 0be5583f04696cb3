"""A lean consumer for the burst test: one task per run accepts every order the run's events carry.

Scheduled on ``ezcater://ezcater_burst/orders/submitted`` (its own connection and sandbox, so the example
DAG never sees these orders). The task returns the order ids its run consumed: the test adds them up
across runs to prove that each delivery reached exactly one run.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from airflow_provider_orders.assets import ezcater_order_asset, order_ids_from_events


@dag(
    dag_id="notified_burst",
    schedule=[ezcater_order_asset("ezcater_burst", "submitted")],
    catchup=False,
    tags=["notifications-test"],
)
def notified_burst() -> None:
    @task
    def accept_all(triggering_asset_events: Any = None) -> list[str]:
        from airflow_provider_orders.hooks.ezcater import EzCaterHook
        from airflow_provider_orders.models.ezcater import lifecycle_state_of

        ids = order_ids_from_events(triggering_asset_events, key="submitted")
        hook = EzCaterHook("ezcater_burst")
        for order_id in ids:
            if lifecycle_state_of(hook.get_order(order_id)) == "submitted":
                hook.accept_order(order_id)
        return ids

    accept_all()


notified_burst()
