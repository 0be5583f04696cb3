"""Table 2: requests per operation, as counted by the sandboxes' request logs.

Each operation runs as a real task through ``dag.test()`` (own temporary ``AIRFLOW_HOME``, SQLite) against
the loopback sandboxes. Between operations the sandboxes' logs are cleared and the process-wide
DataKitchen token cache is emptied, so every task starts like a fresh worker process would (the login a
task needs is counted with it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_common import Row, Table, main_for

KITCHEN, RECIPE = "demo-kitchen", "demo-recipe"
INSTANT = "bench-instant"  # runs complete the moment the order exists


def _prepare_airflow_home() -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-requests-home-"))
    (home / "dags").mkdir()
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


def _routes(*sandboxes: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for sb in sandboxes:
        for rec in sb.requests:
            out[rec.route or "?"] = out.get(rec.route or "?", 0) + 1
    return out


def _fresh_process_state(*sandboxes: Any) -> None:
    from airflow_provider_orders.hooks._datakitchen_session import TOKENS

    TOKENS.clear()  # what a new worker process starts with
    for sb in sandboxes:
        sb.clear_requests()


def _register(dag: Any) -> None:
    """Write the DAG to the metadata DB as the dag processor would (``dag.test()`` runs serialized DAGs)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


def _run_dag(dag_id: str, build: Any) -> tuple[str, dict[str, str]]:
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
        build()
    _register(dag)
    dr = dag.test()
    return str(dr.state), {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def measure(quick: bool) -> Table:
    _prepare_airflow_home()
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

    dk = DataKitchenSandbox(port=0)
    ez = EzCaterSandbox(port=0)
    dk.start()
    ez.start()
    try:
        dk.add_variation(KITCHEN, RECIPE, INSTANT, planned_seconds=0.0, active_seconds=0.0)
        os.environ["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"] = dk.connection_json()
        os.environ["AIRFLOW_CONN_EZCATER_DEFAULT"] = ez.connection_json()
        from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
        from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator
        from airflow_provider_orders.operators.ezcater import AcceptOrderOperator
        from airflow_provider_orders.sensors.datakitchen import RecipeOrderRunSensor

        results: list[tuple[str, str, dict[str, int], str]] = []

        # submit (no waiting)
        _fresh_process_state(dk, ez)
        state, _ = _run_dag(
            "bench_submit",
            lambda: SubmitRecipeOrderOperator(
                task_id="submit", kitchen=KITCHEN, recipe=RECIPE, variation=INSTANT
            ),
        )
        results.append(
            ("submit (`SubmitRecipeOrderOperator`, no wait)", "create_order", _routes(dk, ez), state)
        )

        # one poke of the run sensor on a run that already completed
        hook = DataKitchenHook()
        order_id = hook.create_order(KITCHEN, RECIPE, INSTANT)["order_id"]
        deadline = time.time() + 10
        while time.time() < deadline and not any(
            r.get("status") == "COMPLETED_SERVING" for r in hook.get_order_runs(KITCHEN, order_id)
        ):
            time.sleep(0.05)
        _fresh_process_state(dk, ez)
        state, _ = _run_dag(
            "bench_poke",
            lambda: RecipeOrderRunSensor(
                task_id="poke", kitchen=KITCHEN, order_id=order_id, poke_interval=1, timeout=60, mode="poke"
            ),
        )
        results.append(
            ("one poke (`RecipeOrderRunSensor`, run already ended)", "servings", _routes(dk, ez), state)
        )

        # accept
        uuid = ez.add_order(state="submitted")
        _fresh_process_state(dk, ez)
        state, _ = _run_dag("bench_accept", lambda: AcceptOrderOperator(task_id="accept", order_id=uuid))
        results.append(("accept (`AcceptOrderOperator`)", "acceptOrder", _routes(dk, ez), state))

        # full chain: submit + wait (run ends at once) + accept
        uuid2 = ez.add_order(state="submitted")
        _fresh_process_state(dk, ez)

        def chain() -> None:
            submit = SubmitRecipeOrderOperator(
                task_id="submit",
                kitchen=KITCHEN,
                recipe=RECIPE,
                variation=INSTANT,
                wait_for_completion=True,
                poll_interval=1,
            )
            submit >> AcceptOrderOperator(task_id="accept", order_id=uuid2)

        state, _ = _run_dag("bench_chain", chain)
        results.append(("full chain (submit + wait + accept, 2 tasks)", "", _routes(dk, ez), state))
    finally:
        dk.stop()
        ez.stop()

    table = Table(
        key="requests",
        title="2. Requests per operation",
        method=(
            "Counted in the sandboxes' request logs while the operation runs as a task in `dag.test()`. "
            "Each task starts without a cached token, like a new worker process. Target: one API request "
            "per operation (per task of the chain), plus one DataKitchen login per hook lifetime."
        ),
    )
    for label, main_route, routes, state in results:
        logins = routes.get("login", 0)
        api = {k: v for k, v in routes.items() if k != "login"}
        total_api = sum(api.values())
        shown = ", ".join(f"{k} {v}" for k, v in sorted(api.items())) or "none"
        if main_route:
            target, passed = "1 + ≤ 1 login", total_api == 1 and logins <= 1
        else:
            # the wait reads the run once, then its report once (test counts for order_run_summary)
            target, passed = (
                "create 1, read 1, report 1, accept 1 + 1 login",
                (
                    routes.get("create_order") == 1
                    and routes.get("details") == 1
                    and routes.get("acceptOrder") == 1
                    and total_api == 4
                    and logins <= 1
                ),
            )
        table.rows.append(
            Row(
                label,
                f"{total_api} API request(s) ({shown}) + {logins} login(s); DAG run {state}",
                target,
                passed and state == "success",
            )
        )
    table.raw = {"results": [{"label": r[0], "routes": r[2], "state": r[3]} for r in results]}
    return table


if __name__ == "__main__":
    main_for(measure)
