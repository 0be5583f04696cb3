from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema

from airflow_provider_orders import get_provider_info


def test_provider_info_validates_against_airflow_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_registers_provider_with_distribution_name() -> None:
    (ep,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.module == "airflow_provider_orders"
    ]
    info = ep.load()()
    assert info["package-name"] == ep.dist.name == "airflow-provider-orders"
    types = {c["connection-type"]: c["hook-class-name"] for c in info["connection-types"]}
    assert types == {
        "datakitchen": "airflow_provider_orders.hooks.datakitchen.DataKitchenHook",
        "ezcater": "airflow_provider_orders.hooks.ezcater.EzCaterHook",
    }
