"""Fixtures for the DAG-level tests: extra sandboxes, each behind its own connection id.

The DAG helpers (``make_dag``, ``run_dag``) live in ``dag_runner.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox, SandboxServer

SandboxT = TypeVar("SandboxT", bound="SandboxServer")


# ------------------------------------------------------------------------------------------ sandboxes


def _sandbox_factory(
    sandbox_class: type[SandboxT], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., SandboxT]]:
    """Extra sandboxes, each behind its own connection id (isolated request logs and faults)."""
    started: list[SandboxT] = []

    def make(conn_id: str, *, max_retries: int = 2, **extra: Any) -> SandboxT:
        sandbox = sandbox_class(port=0)
        sandbox.start()
        started.append(sandbox)
        conn_extra = {"retry_delay": 0.01, "max_retries": max_retries, **extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sandbox.connection_json(conn_extra))
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def dk_sandbox_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DataKitchenSandbox]]:
    """Extra DataKitchen sandboxes, each behind its own connection id."""
    from airflow_provider_orders.sandbox import DataKitchenSandbox

    yield from _sandbox_factory(DataKitchenSandbox, monkeypatch)


@pytest.fixture
def ez_sandbox_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., EzCaterSandbox]]:
    """Extra ezCater sandboxes, each behind its own connection id."""
    from airflow_provider_orders.sandbox import EzCaterSandbox

    yield from _sandbox_factory(EzCaterSandbox, monkeypatch)
