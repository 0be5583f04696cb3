"""Deployed by the test while deliveries for ``rejected`` are being refused (nobody listened yet)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from airflow_provider_orders.assets import ezcater_order_asset, order_ids_from_events


@dag(
    dag_id="notified_rejections",
    schedule=[ezcater_order_asset("ezcater_default", "rejected")],
    catchup=False,
    tags=["notifications-test"],
)
def notified_rejections() -> None:
    @task
    def record(triggering_asset_events: Any = None) -> list[str]:
        return order_ids_from_events(triggering_asset_events, key="rejected")

    record()


notified_rejections()
