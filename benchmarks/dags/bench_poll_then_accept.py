"""Bench only: the polling baseline of ``benchmarks/bench_notifications.py`` (table 5).

Deployed by the benchmark into the dags folder of its Airflow (never part of the example DAGs). Triggered
once with ``{"order_ids": [...]}``: one mapped copy of ``wait_submitted`` → ``accept`` per order. The
sensor is deferrable: it pokes once on a worker, then its trigger reads the order every
``POKE_INTERVAL`` seconds in the triggerer until the order is ``submitted``; ``accept`` then accepts it.
This is how a DAG waits for orders without notifications, given their ids.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task, task_group

from airflow_provider_orders.operators.ezcater import AcceptOrderOperator
from airflow_provider_orders.sensors.ezcater import OrderLifecycleSensor

DAG_ID = "bench_poll_then_accept"
#: Seconds between two reads of one order (the sensor's first poke, then the trigger's polls).
POKE_INTERVAL = 60


@dag(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    max_active_tasks=64,  # every order's copy at once (the default per-DAG limit is 16)
    tags=["benchmark"],
)
def bench_poll_then_accept() -> None:
    @task
    def order_ids(dag_run: Any = None) -> list[str]:
        return [str(i) for i in ((dag_run.conf or {}).get("order_ids") or [])]

    @task_group
    def order(order_id: str) -> None:
        wait = OrderLifecycleSensor(
            task_id="wait_submitted",
            order_id=order_id,
            target_states=["submitted"],
            poke_interval=POKE_INTERVAL,
            deferrable=True,
            timeout=1800,
        )
        accept = AcceptOrderOperator(task_id="accept", order_id=order_id)
        wait >> accept

    order.expand(order_id=order_ids())


bench_poll_then_accept()
