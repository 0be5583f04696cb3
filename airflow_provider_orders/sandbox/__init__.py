"""Local fakes of the DataKitchen Automation API and the ezCater public API, for tests and demos.

``DataKitchenSandbox`` and ``EzCaterSandbox`` are threaded stdlib HTTP servers on 127.0.0.1 with a
request log, fault injection and ``/_sandbox/...`` admin routes; see docs/sandbox.md. Nothing here
imports Airflow, and every name is imported on first use: the pytest plugin
(``sandbox.pytest_plugin``, loaded into every pytest session where the provider is installed) lives in
this package, so importing the package itself must cost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox._server import Fault, RecordedRequest, SandboxServer
    from airflow_provider_orders.sandbox.datakitchen.http import DataKitchenSandbox
    from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox

#: Where each exported name lives.
_LAZY = {
    "DataKitchenSandbox": "airflow_provider_orders.sandbox.datakitchen.http",
    "EzCaterSandbox": "airflow_provider_orders.sandbox.ezcater.http",
    "Fault": "airflow_provider_orders.sandbox._server",
    "RecordedRequest": "airflow_provider_orders.sandbox._server",
    "SandboxServer": "airflow_provider_orders.sandbox._server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["DataKitchenSandbox", "EzCaterSandbox", "Fault", "RecordedRequest", "SandboxServer"]
