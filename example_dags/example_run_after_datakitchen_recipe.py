"""
### Run after the nightly recipe completes in DataKitchen, whoever started it

The nightly order of `demo-recipe` (variation `nightly`) is started by DataKitchen's own scheduler, by a
person in the DataKitchen UI, or by another DAG: this DAG does not start it. It is scheduled on the asset
`datakitchen://datakitchen_default/kitchens/demo-kitchen/runs?recipe=demo-recipe&status=COMPLETED_SERVING&variation=nightly`,
whose watcher lists the kitchen's order runs every minute in Airflow's triggerer and records one asset
event per run that completes (extra `payload`: `kitchen`, `order_id`, `order_run_id`, `recipe`,
`variation`, `status`, `finished_at`). Each event starts a run of this DAG; if several runs completed
since the previous DAG run, the scheduler folds them into one DAG run.

1. **completed_runs** reads the run's triggering events: the DataKitchen order runs that completed, each
   once, oldest first.
2. **publish** stands for the work that needs the nightly data: here it logs one line per order run.

**Needs** the triggerer running, and this DAG unpaused (the watcher runs only while an unpaused DAG
schedules on the asset). On Airflow 3.3+ the watcher's watermark is kept in the asset's state store: a
triggerer restart neither repeats nor loses a run. On Airflow 3.0-3.2 the watermark is in memory only:
a run that completes while no triggerer runs is not seen (trigger this DAG by hand for it, with the
order run in `conf`, if needed).

To also react to failed or stopped runs, pass `statuses=["SERVING_ERROR", "STOPPED_SERVING"]` (a
separate asset). Connection: `datakitchen_default` (it names the asset too, fixed when the file is
parsed).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_orders.assets import datakitchen_order_runs_asset, finished_runs_from_events

#: The DataKitchen connection: it names the asset this DAG is scheduled on (fixed at parse time) and is
#: the connection the watcher lists the kitchen with.
DATAKITCHEN_CONN_ID = "datakitchen_default"

NIGHTLY_COMPLETED = datakitchen_order_runs_asset(
    DATAKITCHEN_CONN_ID,
    kitchen="demo-kitchen",
    recipe="demo-recipe",
    variation="nightly",
    poll_interval=60,
)

log = logging.getLogger(__name__)

with DAG(
    dag_id="example_run_after_datakitchen_recipe",
    description="When the nightly DataKitchen recipe completes (whoever started it), run this DAG.",
    doc_md=__doc__,
    schedule=[NIGHTLY_COMPLETED],
    catchup=False,
    tags=["example", "datakitchen"],
) as dag:

    @task
    def completed_runs(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """The DataKitchen order runs this DAG run was started for (oldest first, each once)."""
        runs = finished_runs_from_events(triggering_asset_events, statuses="COMPLETED_SERVING")
        log.info("%d nightly run(s) completed: %s", len(runs), ", ".join(r["order_run_id"] for r in runs))
        return runs

    @task
    def publish(runs: list[dict[str, Any]]) -> list[str]:
        """The work that needs the nightly data; here it names each order and run it follows."""
        for run in runs:
            log.info(
                "Publishing the output of order %s (run %s, %s at %s)",
                run["order_id"],
                run["order_run_id"],
                run["status"],
                run["finished_at"],
            )
        return [run["order_id"] for run in runs]

    runs: Any = completed_runs()  # an XComArg: publish gets the list at run time
    publish(runs)
