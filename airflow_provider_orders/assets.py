"""ezCater notifications as Airflow assets: the asset a DAG schedules on, and the order ids a run carries.

The notification receiver (:mod:`airflow_provider_orders.webhooks`) turns each verified delivery into an
asset event on the asset of its connection and event key, with ``extra`` =
``{delivery_id, order_id, key, caterer_id, occurred_at}``::

    from airflow_provider_orders.assets import ezcater_order_asset, order_ids_from_events

    @dag(schedule=[ezcater_order_asset("ezcater_default", "submitted")])
    def accept_new_orders():
        @task
        def order_ids(triggering_asset_events=None):
            return order_ids_from_events(triggering_asset_events)

Importing this module is cheap: it imports only ``airflow.sdk.Asset`` (lazily, when an asset is built).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_orders.models.ezcater import ORDER_EVENT_KEYS

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "ezcater"


def ezcater_order_asset_uri(conn_id: str = "ezcater_default", key: str = "submitted") -> str:
    """``ezcater://<conn_id>/orders/<key>``: the asset URI of one connection's order event."""
    conn_id = str(conn_id).strip()
    key = str(key).strip().lower()
    if not conn_id or "/" in conn_id or any(c.isspace() for c in conn_id):
        raise ValueError(f"conn_id must be a connection id without '/' or spaces, got {conn_id!r}")
    if key not in ORDER_EVENT_KEYS:
        raise ValueError(f"key must be one of {', '.join(ORDER_EVENT_KEYS)}, got {key!r}")
    return f"{SCHEME}://{conn_id}/orders/{key}"


def ezcater_order_asset(conn_id: str = "ezcater_default", key: str = "submitted") -> Asset:
    """The asset that receives one asset event per verified ``key`` delivery for ``conn_id``.

    Name and URI are both ``ezcater://<conn_id>/orders/<key>``: schedule a DAG on it
    (``schedule=[ezcater_order_asset()]``) and the receiver's events for that connection and key run it.
    """
    from airflow.sdk import Asset

    uri = ezcater_order_asset_uri(conn_id, key)
    return Asset(name=uri, uri=uri, group="ezcater")


def parse_order_asset_uri(uri: str) -> tuple[str, str] | None:
    """``(conn_id, key)`` of an ``ezcater://<conn_id>/orders/<key>`` URI; None for any other URI."""
    parts = urlsplit(str(uri))
    segments = parts.path.strip("/").split("/")
    if parts.scheme != SCHEME or not parts.netloc or len(segments) != 2 or segments[0] != "orders":
        return None
    return parts.netloc, segments[1]


def _extra_of(event: Any) -> Mapping[str, Any]:
    extra = event.get("extra") if isinstance(event, Mapping) else getattr(event, "extra", None)
    return extra if isinstance(extra, Mapping) else {}


def _uri_of(asset: Any) -> str | None:
    uri = asset.get("uri") if isinstance(asset, Mapping) else getattr(asset, "uri", None)
    return uri if isinstance(uri, str) else None


def _events(triggering_asset_events: Any, conn_id: str | None) -> Iterable[Any]:
    if triggering_asset_events is None:
        return
    if isinstance(triggering_asset_events, Mapping):
        for asset, events in triggering_asset_events.items():
            parsed = parse_order_asset_uri(_uri_of(asset) or "")
            if conn_id is not None and (parsed is None or parsed[0] != conn_id):
                continue
            yield from events or ()
    else:  # a plain list of events (or of their dicts)
        yield from triggering_asset_events


def order_ids_from_events(
    triggering_asset_events: Any,
    *,
    key: str | Iterable[str] | None = None,
    conn_id: str | None = None,
    also: Iterable[Any] | None = None,
) -> list[str]:
    """The order ids a run's ``triggering_asset_events`` carry, oldest first, each once.

    One asset-triggered run can carry several events (the scheduler folds every event since the previous
    run into the next one), and ezCater may notify the same order twice: the list is de-duplicated.

    :param triggering_asset_events: ``context["triggering_asset_events"]`` (asset → events), or a list
        of events / event dicts.
    :param key: only events of this key (or keys), e.g. ``"submitted"``; default: every key.
    :param conn_id: only events of this connection's assets (a mapping input is needed to tell).
    :param also: more order ids to add after the events' (e.g. a ``params["order_ids"]`` list for
        replaying a missed notification by hand); blanks are dropped, the rest stripped.
    """
    keys = None if key is None else {k.strip().lower() for k in ([key] if isinstance(key, str) else key)}
    ids: list[str] = []
    for event in _events(triggering_asset_events, conn_id):
        extra = _extra_of(event)
        order_id = extra.get("order_id")
        if not isinstance(order_id, str) or not order_id:
            continue
        if keys is not None and str(extra.get("key", "")).lower() not in keys:
            continue
        if order_id not in ids:
            ids.append(order_id)
    for extra_id in also or ():
        text = str(extra_id).strip() if extra_id is not None else ""
        if text and text not in ids:
            ids.append(text)
    return ids


__all__ = [
    "SCHEME",
    "ezcater_order_asset",
    "ezcater_order_asset_uri",
    "order_ids_from_events",
    "parse_order_asset_uri",
]
