"""The DAG author's side of notifications: the asset of a connection's event, and a run's order ids."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_orders.assets import (
    ezcater_order_asset,
    ezcater_order_asset_uri,
    order_ids_from_events,
    parse_order_asset_uri,
)


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
    events = {
        submitted: [_event("a"), _event("b"), _event("a"), _event(None)],
        cancelled: [_event("c", "cancelled")],
        other: [_event("z")],
    }
    assert order_ids_from_events(events) == ["a", "b", "c", "z"]
    assert order_ids_from_events(events, key="submitted", conn_id="ezcater_default") == ["a", "b"]
    assert order_ids_from_events(events, key=["cancelled"]) == ["c"]
    assert order_ids_from_events(events, conn_id="ez_other", also=[" y ", "", None, "z"]) == ["z", "y"]
    assert order_ids_from_events([{"extra": {"order_id": "d", "key": "submitted"}}]) == ["d"]
    assert order_ids_from_events(None, also=["e"]) == ["e"]
