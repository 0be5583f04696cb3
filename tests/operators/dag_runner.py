"""Helpers for DAG-level tests: build a DAG in the test, register it, run it with ``dag.test()``.

(A module of its own, not conftest.py: ``from conftest import ...`` is ambiguous when several test
directories have a conftest.py.)

``dag.test()`` needs the DAG serialized in the metadata DB; a DAG built inside a test module is not in
the dags folder, so :func:`run_dag` writes it to the DB first (as the dag processor would) and then runs
it in-process: tasks, retries (use ``retry_delay=timedelta(0)``), reschedules and deferred triggers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG


START = datetime(2024, 1, 1)

#: Defaults for test DAGs: retries available (so "failed on try 1" proves a permanent failure).
DEFAULT_ARGS: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(0)}


def make_dag(dag_id: str, **kwargs: Any) -> DAG:
    from airflow.sdk import DAG

    default_args = {**DEFAULT_ARGS, **kwargs.pop("default_args", {})}
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        default_args=default_args,
        **kwargs,
    )


@dataclass
class TaskResult:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    next_method: str | None


class DagRunResult:
    """What a finished ``dag.test()`` left in the metadata DB."""

    def __init__(self, dag_id: str, run_id: str, state: str) -> None:
        self.dag_id = dag_id
        self.run_id = run_id
        self.state = state

    def output(self, captured: Any) -> str:
        """What a user reads of this run's tasks in ``captured`` (``capfd.readouterr()``): ``dag.test()``
        echoes task logs to stdout from Airflow 3.1 on, to stderr on 3.0."""
        from airflow_provider_orders.version_compat import AIRFLOW_V_3_1_PLUS

        return str(captured.out) if AIRFLOW_V_3_1_PLUS else f"{captured.out}\n{captured.err}"

    def ti(self, task_id: str, map_index: int = -1) -> TaskResult:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            ti = session.scalar(
                select(TaskInstance).where(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.run_id == self.run_id,
                    TaskInstance.task_id == task_id,
                    TaskInstance.map_index == map_index,
                )
            )
            assert ti is not None, f"no task instance {task_id}[{map_index}]"
            return TaskResult(
                task_id, map_index, str(ti.state) if ti.state else None, ti.try_number, ti.next_method
            )

    def state_of(self, task_id: str, map_index: int = -1) -> str | None:
        return self.ti(task_id, map_index).state

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            value = session.scalar(
                select(XComModel.value).where(
                    XComModel.dag_id == self.dag_id,
                    XComModel.run_id == self.run_id,
                    XComModel.task_id == task_id,
                    XComModel.map_index == map_index,
                    XComModel.key == key,
                )
            )
        return value

    def reschedule_count(self, task_id: str, map_index: int = -1) -> int:
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.taskreschedule import TaskReschedule
        from airflow.utils.session import create_session
        from sqlalchemy import func, select

        with create_session() as session:
            return session.scalar(
                select(func.count())
                .select_from(TaskReschedule)
                .join(TaskInstance, TaskInstance.id == TaskReschedule.ti_id)
                .where(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.run_id == self.run_id,
                    TaskInstance.task_id == task_id,
                    TaskInstance.map_index == map_index,
                )
            )


def run_dag(dag: DAG, **test_kwargs: Any) -> DagRunResult:
    """Register ``dag`` (as the dag-processor would) and run it with ``dag.test(**test_kwargs)``."""
    from airflow_versions import register_dag

    register_dag(dag)
    dr = dag.test(**test_kwargs)
    return DagRunResult(dag.dag_id, dr.run_id, str(dr.state))
