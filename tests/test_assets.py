"""The DAG author's side of notifications: the asset of a connection's event, and a run's order ids."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_orders.assets import (
    ezcater_order_asset,
    ezcater_order_asset_uri,
    order_ids_from_events,
    parse_order_asset_uri,
)


class _TriggeringEvents(Mapping):  # type: ignore[type-arg]
    """``context["triggering_asset_events"]`` as a task sees it: assets to their events, looked up by
    equality (Airflow 3.0 and 3.1's ``Asset`` is not hashable, so no dict)."""

    def __init__(self, pairs: list[tuple[Any, list[Any]]]) -> None:
        self._pairs = pairs

    def __getitem__(self, asset: Any) -> list[Any]:
        for key, events in self._pairs:
            if key == asset:
                return events
        raise KeyError(asset)

    def __iter__(self) -> Iterator[Any]:
        return iter([key for key, _ in self._pairs])

    def __len__(self) -> int:
        return len(self._pairs)


def _event(order_id: str | None, key: str = "submitted") -> SimpleNamespace:
    return SimpleNamespace(extra={"order_id": order_id, "key": key, "delivery_id": "d"})


def test_the_asset_is_named_and_addressed_by_connection_and_key() -> None:
    asset = ezcater_order_asset("ez_prod", "Cancelled")
    assert asset.uri == asset.name == "ezcater://ez_prod/orders/cancelled"
    assert parse_order_asset_uri(asset.uri) == ("ez_prod", "cancelled")
    assert parse_order_asset_uri("s3://bucket/orders/submitted") is None
    with pytest.raises(ValueError, match="key must be one of"):
        ezcater_order_asset_uri("ez_prod", "modified")
    with pytest.raises(ValueError, match="conn_id"):
        ezcater_order_asset_uri("ez/prod", "submitted")


def test_order_ids_of_a_batched_run_oldest_first_each_once() -> None:
    submitted = ezcater_order_asset("ezcater_default", "submitted")
    cancelled = ezcater_order_asset("ezcater_default", "cancelled")
    other = ezcater_order_asset("ez_other", "submitted")
    events = _TriggeringEvents(
        [
            (submitted, [_event("a"), _event("b"), _event("a"), _event(None)]),
            (cancelled, [_event("c", "cancelled")]),
            (other, [_event("z")]),
        ]
    )
    assert order_ids_from_events(events) == ["a", "b", "c", "z"]
    assert order_ids_from_events(events, key="submitted", conn_id="ezcater_default") == ["a", "b"]
    assert order_ids_from_events(events, key=["cancelled"]) == ["c"]
    assert order_ids_from_events(events, conn_id="ez_other", also=[" y ", "", None, "z"]) == ["z", "y"]
    assert order_ids_from_events([{"extra": {"order_id": "d", "key": "submitted"}}]) == ["d"]
    assert order_ids_from_events(None, also=["e"]) == ["e"]


# ------------------------------------------------------------------------------------- DataKitchen


def _run_event(run_id: str | None, finished_at: str, status: str = "COMPLETED_SERVING") -> SimpleNamespace:
    payload = {
        "kitchen": "k",
        "order_id": f"order-{run_id}",
        "order_run_id": run_id,
        "recipe": "nightly",
        "variation": "prod",
        "status": status,
        "finished_at": finished_at,
    }
    return SimpleNamespace(extra={"from_trigger": True, "payload": payload})


def test_the_datakitchen_asset_names_its_filters_and_carries_a_watcher() -> None:
    from airflow.triggers.base import BaseEventTrigger

    from airflow_provider_orders.assets import datakitchen_order_runs_asset, datakitchen_order_runs_asset_uri
    from airflow_provider_orders.triggers.datakitchen import FinishedOrderRunsTrigger

    asset = datakitchen_order_runs_asset(kitchen="prod kitchen", recipe="nightly", poll_interval=30)
    assert (
        asset.uri
        == asset.name
        == "datakitchen://datakitchen_default/kitchens/prod%20kitchen/runs?recipe=nightly&status=COMPLETED_SERVING"
    )
    assert asset.group == "datakitchen"
    (watcher,) = asset.watchers
    trigger = watcher.trigger
    assert isinstance(trigger, FinishedOrderRunsTrigger)
    assert isinstance(trigger, BaseEventTrigger)
    assert trigger.serialize()[1] == {
        "datakitchen_conn_id": "datakitchen_default",
        "kitchen": "prod kitchen",
        "recipe": "nightly",
        "variation": None,
        "statuses": ["COMPLETED_SERVING"],
        "poll_interval": 30.0,
        "since": None,
        "lookback_minutes": 1440,
        "servings_per_order": 10,
    }
    both = datakitchen_order_runs_asset_uri(
        "dk", kitchen="k", variation="v", statuses=["stopped_serving", "SERVING_ERROR"]
    )
    assert both == "datakitchen://dk/kitchens/k/runs?status=SERVING_ERROR,STOPPED_SERVING&variation=v"
    full = datakitchen_order_runs_asset(kitchen="k", recipe="r", variation="v")
    assert (
        full.uri
        == full.name
        == "datakitchen://datakitchen_default/kitchens/k/runs?recipe=r&status=COMPLETED_SERVING&variation=v"
    )
    with pytest.raises(ValueError, match="finished order-run statuses"):
        datakitchen_order_runs_asset(kitchen="k", statuses=["ACTIVE_SERVING"])
    with pytest.raises(ValueError, match="kitchen"):
        datakitchen_order_runs_asset_uri(kitchen=" ")
    with pytest.raises(ValueError, match="conn_id"):
        datakitchen_order_runs_asset_uri("dk/prod", kitchen="k")


def test_the_datakitchen_asset_serializes_into_a_dag() -> None:
    from airflow.sdk import DAG

    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # before 3.2
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization

    from airflow_provider_orders.assets import datakitchen_order_runs_asset

    asset = datakitchen_order_runs_asset(kitchen="k", recipe="nightly", variation="prod", poll_interval=5)
    with DAG("dk_asset_serialization", schedule=[asset]) as dag:
        pass
    data = DagSerialization.to_dict(dag)
    text = str(data)
    assert "FinishedOrderRunsTrigger" in text
    assert "datakitchen-finished-runs" in text


def test_finished_runs_of_a_batched_run_oldest_first_each_once() -> None:
    from airflow_provider_orders.assets import (
        datakitchen_order_runs_asset,
        ezcater_order_asset,
        finished_runs_from_events,
    )

    nightly = datakitchen_order_runs_asset(kitchen="k", recipe="nightly")
    events = _TriggeringEvents(
        [
            (
                nightly,
                [
                    _run_event("b", "2026-12-01T02:00:00+00:00"),
                    _run_event("a", "2026-12-01T01:00:00+00:00"),
                    _run_event("b", "2026-12-01T02:00:00+00:00"),
                    _run_event(None, "2026-12-01T03:00:00+00:00"),
                    _run_event("c", "2026-12-01T04:00:00+00:00", status="SERVING_ERROR"),
                ],
            ),
            (ezcater_order_asset(), [_event("z")]),
        ]
    )
    runs = finished_runs_from_events(events)
    assert [r["order_run_id"] for r in runs] == ["a", "b", "c"]
    assert runs[0] == {
        "kitchen": "k",
        "order_id": "order-a",
        "order_run_id": "a",
        "recipe": "nightly",
        "variation": "prod",
        "status": "COMPLETED_SERVING",
        "finished_at": "2026-12-01T01:00:00+00:00",
    }
    assert [r["order_run_id"] for r in finished_runs_from_events(events, statuses="completed_serving")] == [
        "a",
        "b",
    ]
    assert finished_runs_from_events(events, kitchen="other") == []
    assert finished_runs_from_events(None) == []
    as_dicts = [{"extra": {"payload": {"order_run_id": "d", "finished_at": "x"}}}]
    assert [r["order_run_id"] for r in finished_runs_from_events(as_dicts)] == ["d"]
