"""API events as Airflow assets: the asset a DAG schedules on, and what a run's asset events carry.

**ezCater notifications.**

The notification receiver (:mod:`airflow_provider_orders.webhooks`) turns each verified delivery into an
asset event on the asset of its connection and event key, with ``extra`` =
``{delivery_id, order_id, key, caterer_id, occurred_at}``::

    from airflow_provider_orders.assets import ezcater_order_asset, order_ids_from_events

    @dag(schedule=[ezcater_order_asset("ezcater_default", "submitted")])
    def accept_new_orders():
        @task
        def order_ids(triggering_asset_events=None):
            return order_ids_from_events(triggering_asset_events)

**DataKitchen order runs that finish** (an asset watcher polls the kitchen in the triggerer; Airflow
stores each run as an asset event with ``extra = {"from_trigger": True, "payload": {kitchen, order_id,
order_run_id, recipe, variation, status, finished_at}}``)::

    from airflow_provider_orders.assets import datakitchen_order_runs_asset, finished_runs_from_events

    NIGHTLY = datakitchen_order_runs_asset(kitchen="prod", recipe="nightly")

    @dag(schedule=[NIGHTLY])
    def after_nightly():
        @task
        def runs(triggering_asset_events=None):
            return finished_runs_from_events(triggering_asset_events)

Importing this module is cheap: ``airflow.sdk`` and the trigger load lazily, when an asset is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from airflow_provider_orders.models.datakitchen import DEFAULT_FINISHED_STATUSES
from airflow_provider_orders.models.ezcater import ORDER_EVENT_KEYS

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "ezcater"
DATAKITCHEN_SCHEME = "datakitchen"


def _asset_conn_id(conn_id: str) -> str:
    """A connection id as an asset URI's host: not empty, no '/' and no spaces."""
    text = str(conn_id).strip()
    if not text or "/" in text or any(c.isspace() for c in text):
        raise ValueError(f"conn_id must be a connection id without '/' or spaces, got {text!r}")
    return text


def ezcater_order_asset_uri(conn_id: str = "ezcater_default", key: str = "submitted") -> str:
    """``ezcater://<conn_id>/orders/<key>``: the asset URI of one connection's order event."""
    conn_id = _asset_conn_id(conn_id)
    key = str(key).strip().lower()
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


# ------------------------------------------------------------------------------------- DataKitchen


def _statuses(statuses: str | Iterable[str] | None) -> list[str]:
    from airflow_provider_orders.triggers.datakitchen import normalize_statuses

    return normalize_statuses(statuses)


def _identifier(what: str, value: str) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError(f"{what} must not be empty")
    return text


def datakitchen_order_runs_asset_uri(
    conn_id: str = "datakitchen_default",
    *,
    kitchen: str,
    recipe: str | None = None,
    variation: str | None = None,
    statuses: str | Iterable[str] | None = DEFAULT_FINISHED_STATUSES,
) -> str:
    """``datakitchen://<conn_id>/kitchens/<kitchen>/runs?recipe=..&status=..&variation=..``: the URI of
    the asset that receives the runs of a kitchen (and recipe / variation) that end in ``statuses``."""
    conn_id = _asset_conn_id(conn_id)
    # Sorted by name: Airflow normalises an asset URI's query that way, and name and URI stay equal.
    query = {"recipe": recipe, "status": ",".join(_statuses(statuses)), "variation": variation}
    params = [(k, _identifier(k, v)) for k, v in sorted(query.items()) if v is not None]
    kitchen_part = quote(_identifier("kitchen", kitchen), safe="")
    return f"{DATAKITCHEN_SCHEME}://{conn_id}/kitchens/{kitchen_part}/runs?{urlencode(params, safe=',')}"


def datakitchen_order_runs_asset(
    conn_id: str = "datakitchen_default",
    *,
    kitchen: str,
    recipe: str | None = None,
    variation: str | None = None,
    statuses: str | Iterable[str] | None = DEFAULT_FINISHED_STATUSES,
    poll_interval: float = 60.0,
    since: float | None = None,
    lookback_minutes: int | None = None,
) -> Asset:
    """The asset that receives one asset event per DataKitchen order run that finishes, whoever
    started the run (an Airflow task, DataKitchen's scheduler, someone in the UI).

    The asset carries an ``AssetWatcher`` whose
    :class:`~airflow_provider_orders.triggers.datakitchen.FinishedOrderRunsTrigger` lists the kitchen's
    runs every ``poll_interval`` seconds in the triggerer; the watcher runs while an unpaused DAG
    schedules on the asset. Name and URI are :func:`datakitchen_order_runs_asset_uri`. Each event's
    ``extra["payload"]`` is ``{kitchen, order_id, order_run_id, recipe, variation, status,
    finished_at}``: read a run's events with :func:`finished_runs_from_events`.

    :param conn_id: connection of type ``datakitchen``.
    :param kitchen: the kitchen to watch.
    :param recipe: only runs of this recipe (None: every recipe).
    :param variation: only runs of this variation (None: every variation).
    :param statuses: the finished statuses that fire (default ``COMPLETED_SERVING`` only); any of
        ``COMPLETED_SERVING``, ``SERVING_ERROR``, ``STOPPED_SERVING``, ``SERVING_RERAN``.
    :param poll_interval: seconds between two listings of the kitchen.
    :param since: epoch seconds: on the watcher's very first start, also fire for runs that finished
        after this (default: from the start on; earlier runs are history).
    :param lookback_minutes: how far back each listing reaches (default one day): orders created
        within it. Keep it longer than the longest run plus any triggerer downtime.
    """
    from airflow.sdk import Asset, AssetWatcher

    from airflow_provider_orders.triggers.datakitchen import FinishedOrderRunsTrigger

    uri = datakitchen_order_runs_asset_uri(
        conn_id, kitchen=kitchen, recipe=recipe, variation=variation, statuses=statuses
    )
    options: dict[str, Any] = {}
    if lookback_minutes is not None:
        options["lookback_minutes"] = lookback_minutes
    trigger = FinishedOrderRunsTrigger(
        datakitchen_conn_id=conn_id,
        kitchen=kitchen.strip(),
        recipe=recipe,
        variation=variation,
        statuses=_statuses(statuses),
        poll_interval=poll_interval,
        since=since,
        **options,
    )
    watcher = AssetWatcher(name="datakitchen-finished-runs", trigger=trigger)
    return Asset(name=uri, uri=uri, group=DATAKITCHEN_SCHEME, watchers=[watcher])


#: The payload keys of a finished-run event, in the order :func:`finished_runs_from_events` returns.
FINISHED_RUN_FIELDS = ("kitchen", "order_id", "order_run_id", "recipe", "variation", "status", "finished_at")


def _finished_run(event: Any) -> dict[str, Any] | None:
    extra = _extra_of(event)
    payload = extra.get("payload") if isinstance(extra.get("payload"), Mapping) else extra
    if not isinstance(payload, Mapping):
        return None
    run_id = payload.get("order_run_id")
    if not isinstance(run_id, str) or not run_id:
        return None
    return {key: payload.get(key) for key in FINISHED_RUN_FIELDS}


def finished_runs_from_events(
    triggering_asset_events: Any,
    *,
    statuses: str | Iterable[str] | None = None,
    kitchen: str | None = None,
) -> list[dict[str, Any]]:
    """The DataKitchen runs a DAG run's asset events carry, oldest end first, each run once.

    One asset-triggered run can carry several events (the scheduler folds every event since the
    previous run into the next one). Each item is ``{kitchen, order_id, order_run_id, recipe,
    variation, status, finished_at}`` (``finished_at`` ISO 8601 UTC): JSON, so a task can return it.

    :param triggering_asset_events: ``context["triggering_asset_events"]`` (asset → events), or a list
        of events / event dicts / payload dicts. Events of other assets (no ``order_run_id``) are
        skipped.
    :param statuses: only runs that ended in one of these (default: every status).
    :param kitchen: only runs of this kitchen.
    """
    wanted = None if statuses is None else set(_statuses(statuses))
    runs: dict[str, dict[str, Any]] = {}
    for event in _events(triggering_asset_events, None):
        run = _finished_run(event)
        if run is None or run["order_run_id"] in runs:
            continue
        if wanted is not None and run["status"] not in wanted:
            continue
        if kitchen is not None and run["kitchen"] != kitchen:
            continue
        runs[run["order_run_id"]] = run
    return sorted(runs.values(), key=lambda r: str(r["finished_at"] or ""))


__all__ = [
    "DATAKITCHEN_SCHEME",
    "FINISHED_RUN_FIELDS",
    "SCHEME",
    "datakitchen_order_runs_asset",
    "datakitchen_order_runs_asset_uri",
    "ezcater_order_asset",
    "ezcater_order_asset_uri",
    "finished_runs_from_events",
    "order_ids_from_events",
    "parse_order_asset_uri",
]
