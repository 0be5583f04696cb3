"""The lifecycle matrix's session: every cell's sandboxes, one real Airflow, all cell scripts at once.

``matrix`` (session-scoped, used by ``test_lifecycle_matrix.py`` only, so a run of ``make test`` never
starts it): one DataKitchen and/or ezCater sandbox per cell (own fault queue and request log), Airflow
(api-server, scheduler, dag-processor, triggerer; LocalExecutor, PostgreSQL) started with the e2e harness
on ``tests/lifecycle/dags`` with a connection pair per cell, then every cell's script in its own thread
(``lifecycle_driver.run_matrix``). Results: ``.artifacts/lifecycle/results.json``; component logs and
Airflow's task logs next to it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))  # the e2e harness (Airflow processes, REST, waits)
sys.path.insert(0, str(HERE))

if TYPE_CHECKING:
    from collections.abc import Iterator

ARTIFACTS = HERE.parents[1] / ".artifacts" / "lifecycle"


def lifecycle_env() -> dict[str, str]:
    from lifecycle_cells import HEARTBEAT_CHECK_INTERVAL, HEARTBEAT_TIMEOUT

    return {
        # Every cell at once: each poke-mode try holds a worker slot.
        "AIRFLOW__CORE__PARALLELISM": "64",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64",
        # A task whose supervisor stops heartbeating is found quickly (the SIGKILL column).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(
            HEARTBEAT_CHECK_INTERVAL
        ),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
    }


@pytest.fixture(scope="session")
def matrix() -> Iterator[dict[str, Any]]:
    from e2e_harness import (
        DAG_PARSED_TIMEOUT,
        HEALTH_TIMEOUT,
        AirflowCluster,
        Sandboxes,
        airflow_env,
        free_port,
        wait_until,
    )
    from lifecycle_cells import ACTIVE
    from lifecycle_driver import CellSandboxes, mismatches, run_matrix
    from local_postgres import local_postgres

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    started = time.monotonic()
    timings: dict[str, float] = {}
    with ExitStack() as stack:
        default = Sandboxes(
            stack.enter_context(DataKitchenSandbox(port=0)), stack.enter_context(EzCaterSandbox(port=0))
        )
        boxes: dict[str, CellSandboxes] = {}
        extra: dict[str, str] = lifecycle_env()
        for cell in ACTIVE:
            pair = CellSandboxes()
            if cell.row.kind in ("submit", "run_sensor"):
                pair.dk = stack.enter_context(DataKitchenSandbox(port=0, demo_catalogue=False))
            else:
                pair.ez = stack.enter_context(EzCaterSandbox(port=0, demo_orders=False))
            boxes[cell.key] = pair
            extra.update(pair.connection_env(cell))

        home = Path(tempfile.mkdtemp(prefix="orders-lifecycle-airflow-home-"))
        port = free_port()
        # PostgreSQL, as teams run Airflow: SQLite lets one writer in at a time, and with 40+ cells
        # running at once its lock waits (60 s and more) stalled every component.
        extra["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = stack.enter_context(
            local_postgres(free_port(), ARTIFACTS / "postgres")
        )
        env = airflow_env(home, port, default, dags_folder=HERE / "dags", extra_env=extra)
        cluster = AirflowCluster(home=home, port=port, env=env, artifacts=ARTIFACTS)
        results: dict[str, Any] = {}
        try:
            cluster.migrate()
            cluster.start()
            wait_until(f"Airflow healthy on {cluster.base_url}", cluster.healthy, HEALTH_TIMEOUT)
            timings["healthy"] = time.monotonic() - started

            def parsed() -> bool:
                dags = cluster.api("dags", tags=["lifecycle"], limit=100)
                return int(dags["total_entries"]) >= len(ACTIVE)

            wait_until(
                f"the dag-processor to parse the {len(ACTIVE)} cell DAGs",
                parsed,
                DAG_PARSED_TIMEOUT,
                describe=lambda: f"Import errors: {cluster.import_errors()}",
            )
            timings["dags_parsed"] = time.monotonic() - started
            observed = run_matrix(cluster, boxes)
            timings["cells_done"] = time.monotonic() - started
            for cell in ACTIVE:
                seen = observed.get(cell.key)
                assert cell.spec.__class__.__name__ == "Expect"
                results[cell.key] = {
                    "row": cell.row.key,
                    "column": cell.column.key,
                    "expected": cell.spec.summary(),  # type: ignore[union-attr]
                    "observed": seen.__dict__ if seen else None,
                    "mismatches": mismatches(cell.spec, seen) if seen else ["no result"],  # type: ignore[arg-type]
                }
            yield results
        finally:
            leftovers = cluster.stop()
            timings["total"] = time.monotonic() - started
            (ARTIFACTS / "results.json").write_text(
                json.dumps({"timings": timings, "cells": results}, indent=2, default=str)
            )
            with contextlib.suppress(OSError):
                shutil.copytree(home / "logs", ARTIFACTS / "airflow-logs", dirs_exist_ok=True)
            shutil.rmtree(home, ignore_errors=True)
            if leftovers:
                pytest.fail(f"Airflow processes survived SIGKILL: {leftovers}")
