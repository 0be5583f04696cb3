"""Operator, sensor and link modules are cheap to import: no HTTP or GraphQL client at module level."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("gql", "graphql", "httpx", "requests")

PUBLIC_MODULES = (
    "airflow_provider_orders.operators.datakitchen",
    "airflow_provider_orders.operators.ezcater",
    "airflow_provider_orders.sensors.datakitchen",
    "airflow_provider_orders.sensors.ezcater",
    "airflow_provider_orders.links",
)


def _loaded_after(imports: str) -> set[str]:
    code = f"import json, sys\n{imports}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_operators_and_sensors_import_no_http_or_graphql_client() -> None:
    baseline = _loaded_after("import airflow.sdk")  # whatever Airflow itself already pulls in
    ours = _loaded_after("\n".join(f"import {m}" for m in PUBLIC_MODULES))
    added = ours - baseline
    assert not added, f"importing operators/sensors/links also imported {sorted(added)}"
    # The check is only meaningful for modules airflow.sdk does not import anyway.
    assert {"gql", "graphql", "requests"} - baseline, "airflow.sdk imports every heavy module already"
