"""Local fakes of the DataKitchen Automation API and the ezCater public API, for tests and demos.

``DataKitchenSandbox`` and ``EzCaterSandbox`` are threaded stdlib HTTP servers on 127.0.0.1 with a
request log, fault injection and ``/_sandbox/...`` admin routes; see docs/sandbox.md. Nothing here
imports Airflow, and ``EzCaterSandbox`` (which needs graphql-core) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_orders.sandbox._server import Fault, RecordedRequest, SandboxServer
from airflow_provider_orders.sandbox.datakitchen.http import DataKitchenSandbox

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox


def __getattr__(name: str) -> Any:
    if name == "EzCaterSandbox":
        from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox

        return EzCaterSandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DataKitchenSandbox", "EzCaterSandbox", "Fault", "RecordedRequest", "SandboxServer"]
