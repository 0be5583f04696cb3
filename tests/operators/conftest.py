"""Fixtures for the DAG-level tests: extra sandboxes, each behind its own connection id.

The DAG helpers (``make_dag``, ``run_dag``) live in ``dag_runner.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox


# ------------------------------------------------------------------------------------------ sandboxes


@pytest.fixture
def dk_sandbox_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DataKitchenSandbox]]:
    """Extra DataKitchen sandboxes, each behind its own connection id (isolated request logs/faults)."""
    from airflow_provider_orders.sandbox import DataKitchenSandbox

    started: list[DataKitchenSandbox] = []

    def make(conn_id: str, *, max_retries: int = 2, **extra: Any) -> DataKitchenSandbox:
        sandbox = DataKitchenSandbox(port=0)
        sandbox.start()
        started.append(sandbox)
        conn_extra = {"retry_delay": 0.01, "max_retries": max_retries, **extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sandbox.connection_json(conn_extra))
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def ez_sandbox_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., EzCaterSandbox]]:
    """Extra ezCater sandboxes, each behind its own connection id."""
    from airflow_provider_orders.sandbox import EzCaterSandbox

    started: list[EzCaterSandbox] = []

    def make(conn_id: str, *, max_retries: int = 2, **extra: Any) -> EzCaterSandbox:
        sandbox = EzCaterSandbox(port=0)
        sandbox.start()
        started.append(sandbox)
        conn_extra = {"retry_delay": 0.01, "max_retries": max_retries, **extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sandbox.connection_json(conn_extra))
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()
