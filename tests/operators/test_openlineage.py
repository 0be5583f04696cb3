"""OpenLineage (the ``openlineage`` extra): the DataKitchen order run as the task's external run.

Unit tests of ``order_run_lineage`` (the facets, their OpenLineage serialization, no overrides), the
import cost (the operator never loads OpenLineage), and a DAG run (``dag.test()``) against the sandbox
that reads each task's lineage the way the OpenLineage provider does (its ``DefaultExtractor``, from a
task listener: ``get_openlineage_facets_on_complete`` on success, the same method on failure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from dag_runner import make_dag, run_dag

pytest.importorskip("airflow.providers.openlineage.extractors", reason="needs the openlineage extra")

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_orders.sandbox import DataKitchenSandbox

K, R = "demo-kitchen", "demo-recipe"
SECRET = "s3cr3t-override-value"


def _as_json(lineage: Any) -> dict[str, Any]:
    """The run facets as the OpenLineage client puts them into an event."""
    from openlineage.client.serde import Serde

    return {key: json.loads(Serde.to_json(facet)) for key, facet in lineage.run_facets.items()}


def _lineage(**kwargs: Any) -> Any:
    from airflow_provider_orders.operators._openlineage import order_run_lineage

    args: dict[str, Any] = {"kitchen": K, "recipe": R, "variation": "success", "order_id": "ord-1"}
    return order_run_lineage(**{**args, **kwargs})


# ------------------------------------------------------------------------------------------ facets


def test_an_order_run_is_the_tasks_external_run() -> None:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.facet_v2 import RunFacet, external_query_run

    url = "https://dk.example.com/#/orders/acme/demo-kitchen/runs/run-9"
    lineage = _lineage(order_run_id="run-9", order_run_url=url, status="COMPLETED_SERVING")

    assert isinstance(lineage, OperatorLineage)
    assert (lineage.inputs, lineage.outputs, lineage.job_facets) == ([], [], {})
    assert set(lineage.run_facets) == {"externalQuery", "dataKitchen_orderRun"}
    external = lineage.run_facets["externalQuery"]
    assert isinstance(external, external_query_run.ExternalQueryRunFacet)
    assert (external.externalQueryId, external.source) == ("run-9", "datakitchen")
    assert isinstance(lineage.run_facets["dataKitchen_orderRun"], RunFacet)

    facets = _as_json(lineage)
    order_run = facets["dataKitchen_orderRun"]
    assert order_run.pop("_producer").startswith("https://")
    assert order_run.pop("_schemaURL") == "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet"
    assert order_run == {
        "kitchen": K,
        "recipe": R,
        "variation": "success",
        "orderId": "ord-1",
        "orderRunId": "run-9",
        "status": "COMPLETED_SERVING",
        "url": url,
    }
    assert facets["externalQuery"]["externalQueryId"] == "run-9"
    assert facets["externalQuery"]["_schemaURL"].endswith(
        "ExternalQueryRunFacet.json#/$defs/ExternalQueryRunFacet"
    )


def test_no_order_means_no_facets() -> None:
    for order_id in (None, ""):
        lineage = _lineage(order_id=order_id, order_run_id="run-9", status="SERVING_ERROR")
        assert (lineage.inputs, lineage.outputs, lineage.run_facets, lineage.job_facets) == ([], [], {}, {})


def test_an_order_without_a_known_run_has_no_external_query() -> None:
    facets = _as_json(_lineage())
    assert set(facets) == {"dataKitchen_orderRun"}
    order_run = facets["dataKitchen_orderRun"]
    # unknown values are left out of the event, not sent as null
    assert {"orderRunId", "status", "url"}.isdisjoint(order_run)
    assert order_run["orderId"] == "ord-1"


def test_credentials_in_the_url_stay_out_of_the_facet() -> None:
    lineage = _lineage(order_run_id="r", order_run_url="https://user:pa55@dk.example.com:8443/dk/orders/x")
    assert lineage.run_facets["dataKitchen_orderRun"].url == "https://dk.example.com:8443/dk/orders/x"
    assert "pa55" not in json.dumps(_as_json(lineage))


def test_the_function_takes_no_overrides() -> None:
    """Overrides may hold secrets: there is no way to hand them to the facets."""
    from airflow_provider_orders.operators._openlineage import order_run_lineage

    with pytest.raises(TypeError):
        order_run_lineage(  # type: ignore[call-arg]
            kitchen=K, recipe=R, variation="v", order_id="o", parameters={"token": SECRET}
        )


def test_importing_the_operator_does_not_import_openlineage() -> None:
    code = (
        "import json, sys\n"
        "import airflow.sdk\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_orders.operators.datakitchen\n"
        "added = sorted(m for m in set(sys.modules) - before if 'openlineage' in m)\n"
        "print(json.dumps(added))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    added = json.loads(out.stdout.strip().splitlines()[-1])
    assert added == [], f"importing the operator also imported {added}"


# ------------------------------------------------------------------------------------------ DAG run


class _LineageCapture:
    """A task listener that extracts each finished task's lineage like the OpenLineage listener does."""

    def __init__(self) -> None:
        self.lineage: dict[str, Any] = {}
        self.states: dict[str, str] = {}

    def _extract(self, task_instance: Any, state: str) -> None:
        from airflow.providers.openlineage.extractors.base import DefaultExtractor

        extractor = DefaultExtractor(task_instance.task)
        if state == "success":
            result = extractor.extract_on_complete(task_instance)
        else:
            result = extractor.extract_on_failure(task_instance)
        self.lineage[task_instance.task_id] = result
        self.states[task_instance.task_id] = state

    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        self._extract(task_instance, "success")

    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        self._extract(task_instance, "failed")


@pytest.fixture
def lineage_capture() -> Iterator[_LineageCapture]:
    from airflow.providers.common.compat.sdk import hookimpl
    from airflow.sdk.listener import get_listener_manager

    class Capture(_LineageCapture):
        on_task_instance_success = hookimpl(_LineageCapture.on_task_instance_success)
        on_task_instance_failed = hookimpl(_LineageCapture.on_task_instance_failed)

    capture = Capture()
    manager = get_listener_manager()
    manager.add_listener(capture)
    try:
        yield capture
    finally:
        manager.pm.unregister(capture)


@pytest.mark.usefixtures("airflow_db")
def test_a_dag_run_reports_each_order_run_to_openlineage(
    datakitchen_sandbox: DataKitchenSandbox, lineage_capture: _LineageCapture
) -> None:
    from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator

    dk = datakitchen_sandbox
    dk.add_variation(K, R, "quick", planned_seconds=1.0, active_seconds=1.0)
    common: dict[str, Any] = {"kitchen": K, "recipe": R, "poll_interval": 0.2}
    with make_dag("dk_openlineage") as dag:
        SubmitRecipeOrderOperator(
            task_id="waits",
            variation="success",
            wait_for_completion=True,
            parameters={"api_token": SECRET},
            **common,
        )
        SubmitRecipeOrderOperator(
            task_id="deferred", variation="quick", wait_for_completion=True, deferrable=True, **common
        )
        SubmitRecipeOrderOperator(task_id="fire_and_forget", variation="success", **common)
        SubmitRecipeOrderOperator(
            task_id="fails", variation="fails", wait_for_completion=True, retries=0, **common
        )
    result = run_dag(dag)

    assert result.state_of("fails") == "failed"
    assert lineage_capture.states == {
        "waits": "success",
        "deferred": "success",
        "fire_and_forget": "success",
        "fails": "failed",
    }
    for task_id, status in (
        ("waits", "COMPLETED_SERVING"),
        ("deferred", "COMPLETED_SERVING"),
        ("fails", "SERVING_ERROR"),
    ):
        lineage = lineage_capture.lineage[task_id]
        assert lineage is not None, f"{task_id}: the OpenLineage method failed (see the task log)"
        facets = _as_json(lineage)
        order_id = result.xcom(task_id, "order_id")
        run_id = result.xcom(task_id, "order_run_id")
        assert order_id
        assert run_id
        assert facets["externalQuery"]["externalQueryId"] == run_id
        assert facets["externalQuery"]["source"] == "datakitchen"
        order_run = facets["dataKitchen_orderRun"]
        assert order_run["orderId"] == order_id
        assert order_run["orderRunId"] == run_id
        assert order_run["url"] == f"{dk.url}/#/orders/{dk.customer}/{K}/runs/{run_id}"
        assert order_run["status"] == status
        assert (lineage.inputs, lineage.outputs) == ([], [])

    # without waiting, the order is known but not its run
    facets = _as_json(lineage_capture.lineage["fire_and_forget"])
    assert set(facets) == {"dataKitchen_orderRun"}
    assert facets["dataKitchen_orderRun"]["orderId"] == result.xcom("fire_and_forget", "order_id")

    everything = json.dumps({t: _as_json(lin) for t, lin in lineage_capture.lineage.items() if lin})
    assert SECRET not in everything
    assert "api_token" not in everything
