"""Runs after each ``demo-recipe`` / ``nightly`` order run completes in DataKitchen, whoever started it.

Scheduled on the asset of ``datakitchen_default``'s finished runs (polled every second, for the test).
The task returns the order ids its run's events carry: the test adds them up across runs to prove that
each finished run reached exactly one DAG run.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from airflow_provider_orders.assets import datakitchen_order_runs_asset, finished_runs_from_events

NIGHTLY = datakitchen_order_runs_asset(
    "datakitchen_default",
    kitchen="demo-kitchen",
    recipe="demo-recipe",
    variation="nightly",
    poll_interval=1.0,
)


@dag(dag_id="dk_after_nightly", schedule=[NIGHTLY], catchup=False, tags=["datakitchen-events-test"])
def dk_after_nightly() -> None:
    @task
    def finished_orders(triggering_asset_events: Any = None) -> list[str]:
        runs = finished_runs_from_events(triggering_asset_events)
        for run in runs:
            print(f"order {run['order_id']} run {run['order_run_id']} finished {run['status']}")
        return [str(run["order_id"]) for run in runs]

    finished_orders()


dk_after_nightly()
