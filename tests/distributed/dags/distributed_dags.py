"""The DAGs of the distributed test (tests/distributed): what runs on the two Celery workers.

* ``dist_submit_wait``: one non-deferrable SubmitRecipeOrderOperator that waits on its worker (retries=1):
  the worker is SIGKILLed mid-wait and the retry, on the other worker, must reattach to the order.
* ``dist_submit_deferred``: the same submit, deferrable: the waits are handed to the triggerer, which is
  restarted while they are deferred.
* ``dist_accept_burst``: scheduled on ezCater's ``submitted`` notifications (the receiver on the
  api-server records them as asset events); accepts each order of its run that is still submitted and
  returns the order ids it consumed.

The sandbox variation ``dist/r/long`` stays active until the test finishes a run. Each submit passes the
DAG run id as an override, so the test counts orders per run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, dag, task

from airflow_provider_orders.assets import ezcater_order_asset, order_ids_from_events
from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

POLL = 2  # seconds between status reads (worker poll or trigger poll)

for _dag_id, _deferrable in (("dist_submit_wait", False), ("dist_submit_deferred", True)):
    with DAG(
        dag_id=_dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_runs=16,
        tags=["distributed"],
        default_args={"retries": 1, "retry_delay": timedelta(seconds=2)},
    ) as _dag:
        SubmitRecipeOrderOperator(
            task_id="submit",
            kitchen="dist",
            recipe="r",
            variation="long",
            parameters={"dag_run": "{{ run_id }}"},
            wait_for_completion=True,
            deferrable=_deferrable,
            poll_interval=POLL,
        )
    globals()[_dag_id] = _dag


@dag(
    dag_id="dist_accept_burst",
    schedule=[ezcater_order_asset("ezcater_default", "submitted")],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["distributed"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
)
def dist_accept_burst() -> None:
    @task
    def accept_all(triggering_asset_events: Any = None) -> list[str]:
        from airflow_provider_orders.hooks.ezcater import EzCaterHook
        from airflow_provider_orders.models.ezcater import lifecycle_state_of

        ids = order_ids_from_events(triggering_asset_events, key="submitted")
        hook = EzCaterHook("ezcater_default")
        for order_id in ids:
            if lifecycle_state_of(hook.get_order(order_id)) == "submitted":
                hook.accept_order(order_id)
        return ids

    accept_all()


dist_accept_burst()
