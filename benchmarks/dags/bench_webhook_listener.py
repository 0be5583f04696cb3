"""Bench only: the listener that lets ``benchmarks/bench_notifications.py`` time the receiver (table 5).

Scheduled on ``ezcater://ezcater_burst/orders/uncancelled``, a key nothing else in the benchmark's Airflow
listens to (and the sandbox never sends), and **paused**: the receiver counts a paused consumer as
listening, so each signed delivery the benchmark POSTs is recorded in full (guard row, asset event, the
DAG's queue row), while no run starts and no task competes with the requests being timed.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from airflow_provider_orders.assets import ezcater_order_asset

DAG_ID = "bench_webhook_listener"
CONN_ID, KEY = "ezcater_burst", "uncancelled"


@dag(
    dag_id=DAG_ID,
    schedule=[ezcater_order_asset(CONN_ID, KEY)],
    catchup=False,
    is_paused_upon_creation=True,
    tags=["benchmark"],
)
def bench_webhook_listener() -> None:
    @task
    def nothing() -> None:
        """Never runs while the benchmark measures (the DAG stays paused)."""

    nothing()


bench_webhook_listener()
