"""One DAG per applicable cell of the lifecycle matrix (tests/lifecycle/lifecycle_cells.py).

Each DAG has one task ``t`` built from its cell (operator, deferrable or poke, execution_timeout,
retries=1) and talks to that cell's own sandboxes through the connections ``lc_<cell>_dk`` /
``lc_<cell>_ez`` the test sets as ``AIRFLOW_CONN_*`` for every Airflow process.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifecycle_cells import ACTIVE, POLL, Cell

from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator
from airflow_provider_orders.operators.ezcater import AcceptOrderOperator, RejectOrderOperator
from airflow_provider_orders.sensors.datakitchen import RecipeOrderRunSensor
from airflow_provider_orders.sensors.ezcater import OrderLifecycleSensor

ORDER_ID = "{{ dag_run.conf['order_id'] }}"


def _task(cell: Cell) -> None:
    kind = cell.row.kind
    dk, ez = f"{cell.conn_id}_dk", f"{cell.conn_id}_ez"
    if kind == "submit":
        SubmitRecipeOrderOperator(
            task_id="t",
            kitchen=cell.kitchen,
            recipe="r",
            variation="v",
            wait_for_completion=True,
            deferrable=cell.deferrable,
            poll_interval=POLL,
            datakitchen_conn_id=dk,
        )
    elif kind == "run_sensor":
        RecipeOrderRunSensor(
            task_id="t",
            kitchen=cell.kitchen,
            order_id=ORDER_ID,
            deferrable=cell.deferrable,
            mode="poke",
            poke_interval=POLL,
            timeout=3600,
            datakitchen_conn_id=dk,
        )
    elif kind == "lifecycle_sensor":
        OrderLifecycleSensor(
            task_id="t",
            order_id=ORDER_ID,
            deferrable=cell.deferrable,
            mode="poke",
            poke_interval=POLL,
            timeout=3600,
            ezcater_conn_id=ez,
        )
    elif kind == "accept":
        AcceptOrderOperator(task_id="t", order_id=ORDER_ID, ezcater_conn_id=ez)
    else:
        RejectOrderOperator(
            task_id="t",
            order_id=ORDER_ID,
            reason="AT_DAILY_CAPACITY",
            explanation="lifecycle test",
            ezcater_conn_id=ez,
        )


for _cell in ACTIVE:
    with DAG(
        dag_id=_cell.dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_runs=1,
        tags=["lifecycle"],
        default_args={
            "retries": 1,
            "retry_delay": timedelta(seconds=_cell.retry_delay),
            "execution_timeout": (
                timedelta(seconds=_cell.execution_timeout) if _cell.execution_timeout else None
            ),
        },
    ) as _dag:
        _task(_cell)
    globals()[_cell.dag_id] = _dag
