"""The receiver's metadata-DB side: one transaction per verified delivery.

1. **The guard.** A row in ``orders_ezcater_webhook_delivery`` keyed ``(conn_id, delivery_id)``. ezCater
   repeats deliveries, and several API-server workers or replicas may each get a copy: the primary key
   lets exactly one transaction through; the others find the row (or wait on it and then find it) and
   answer "duplicate". The table is created on first use (``CREATE TABLE`` if missing); rows older than
   ``retention_days`` are pruned now and then.
2. **Somebody listens.** The asset ``ezcater://<conn_id>/orders/<key>`` exists only once a DAG that
   schedules on it has been parsed. With no asset row, no active asset or no DAG scheduling on it, the
   transaction is rolled back (no guard row stays) and the receiver answers 503: ezCater delivers again
   later, and that later copy is not refused as a duplicate. A *paused* consumer counts as listening:
   its run is queued and starts when the DAG is unpaused.
3. **The asset event**, through Airflow's own ``asset_manager.register_asset_change`` (listeners,
   metrics and team rules included), with ``extra = {delivery_id, order_id, key, caterer_id,
   occurred_at}``.
4. **Every event reaches a run** (apache/airflow#56050). The scheduler builds an asset-triggered run from
   the events up to the newest ``asset_dag_run_queue.created_at`` and then deletes the queue row; an
   event that lands while the row is already queued neither moves ``created_at`` nor re-creates the row,
   so it waits for some later event. Here, under a lock on the asset row (receiver transactions of one
   asset run one after another, so their event timestamps follow commit order and only grow), each
   consumer's queue row is moved forward to this event's timestamp, or created again when the scheduler
   has just consumed it. On PostgreSQL and MySQL the scheduler holds that queue row locked while it
   builds the run: the update waits for it and then re-creates the row, so the event is in that run or
   in the next one, never in neither. SQLite has no row locks: the guarantee needs a server database.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_orders.assets import ezcater_order_asset_uri
from airflow_provider_orders.version_compat import AIRFLOW_V_3_2_PLUS, AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Table
    from sqlalchemy.orm import Session

    from airflow_provider_orders.models.ezcater import Delivery

log = logging.getLogger(__name__)

TABLE_NAME = "orders_ezcater_webhook_delivery"
#: One delivery in this many prunes guard rows older than the retention.
PRUNE_EVERY = 200
_ONE_MICROSECOND = timedelta(microseconds=1)

_table: Table | None = None
_table_ready: set[str] = set()
_table_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What one delivery did: ``created`` (an asset event), ``duplicate`` or ``no_listener``."""

    status: str
    asset_uri: str
    asset_event_id: int | None = None
    queued_dag_ids: tuple[str, ...] = field(default_factory=tuple)


def delivery_table() -> Table:
    """The guard table (its own SQLAlchemy metadata: Airflow's migrations never see it)."""
    global _table
    if _table is None:
        from airflow.utils.sqlalchemy import UtcDateTime
        from sqlalchemy import Column, Integer, MetaData, String, Table

        _table = Table(
            TABLE_NAME,
            MetaData(),
            Column("conn_id", String(250), primary_key=True),
            Column("delivery_id", String(250), primary_key=True),
            Column("event_key", String(50), nullable=False),
            Column("order_id", String(250), nullable=False),
            Column("received_at", UtcDateTime, nullable=False, index=True),
            Column("asset_event_id", Integer, nullable=True),
        )
    return _table


def ensure_table(session: Session) -> None:
    """Create the guard table if it is missing (once per process and database)."""
    bind = session.get_bind()
    key = str(bind.engine.url)
    if key in _table_ready:
        return
    with _table_lock:
        if key in _table_ready:
            return
        from sqlalchemy import inspect
        from sqlalchemy.exc import DatabaseError

        table = delivery_table()
        try:
            table.create(bind=bind.engine, checkfirst=True)
        except DatabaseError:  # another process created it between the check and the CREATE
            if not inspect(bind.engine).has_table(TABLE_NAME):
                raise
        _table_ready.add(key)


def _utcnow() -> datetime:
    return datetime.now(tz=timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def record_delivery(
    conn_id: str,
    delivery: Delivery,
    *,
    retention_days: float = 30.0,
    session_factory: Callable[[], Any] | None = None,
) -> Outcome:
    """Record one verified delivery (see the module docstring); one transaction, committed here."""
    from airflow.utils.session import create_session
    from sqlalchemy.exc import IntegrityError

    uri = ezcater_order_asset_uri(conn_id, delivery.key)
    callbacks: list[Callable[[], None]] = []
    factory = session_factory or (lambda: create_session(scoped=False))
    with factory() as session:
        ensure_table(session)
        table = delivery_table()
        try:
            session.execute(
                table.insert().values(
                    conn_id=conn_id,
                    delivery_id=delivery.id,
                    event_key=delivery.key,
                    order_id=delivery.entity_id,
                    received_at=_utcnow(),
                )
            )
            session.flush()
        except IntegrityError:
            session.rollback()
            return Outcome("duplicate", uri)
        outcome = _emit(session, conn_id, delivery, uri, callbacks)
        if outcome.status != "created":
            session.rollback()
            return outcome
        session.execute(
            table.update()
            .where(table.c.conn_id == conn_id, table.c.delivery_id == delivery.id)
            .values(asset_event_id=outcome.asset_event_id)
        )
        if random.randrange(PRUNE_EVERY) == 0:
            cutoff = _utcnow() - timedelta(days=retention_days)
            session.execute(table.delete().where(table.c.received_at < cutoff))
    for callback in callbacks:  # listeners (e.g. OpenLineage) run after the commit, never inside it
        try:
            callback()
        except Exception:
            log.exception("An asset listener failed for %s (the asset event is recorded)", uri)
    return outcome


def _emit(
    session: Session, conn_id: str, delivery: Delivery, uri: str, callbacks: list[Callable[[], None]]
) -> Outcome:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import (
        AssetActive,
        AssetDagRunQueue,
        AssetEvent,
        AssetModel,
        DagScheduleAssetReference,
    )
    from airflow.models.dag import DagModel
    from airflow.utils.sqlalchemy import with_row_locks
    from sqlalchemy import func, select, update

    asset = session.scalar(
        with_row_locks(
            select(AssetModel).where(AssetModel.name == uri, AssetModel.uri == uri),
            session=session,
            key_share=False,
        )
    )
    if asset is None:
        return Outcome("no_listener", uri)
    active = session.scalar(
        select(func.count()).select_from(AssetActive).where(AssetActive.name == uri, AssetActive.uri == uri)
    )
    consumers = list(
        session.scalars(
            select(DagScheduleAssetReference.dag_id).where(DagScheduleAssetReference.asset_id == asset.id)
        )
    )
    if not active or not consumers:
        return Outcome("no_listener", uri)

    # This transaction holds the asset row: the newest event of the asset is committed and final.
    newest = _aware(
        session.scalar(select(func.max(AssetEvent.timestamp)).where(AssetEvent.asset_id == asset.id))
    )
    stamp = _utcnow()
    if newest is not None and stamp <= newest:
        stamp = newest + _ONE_MICROSECOND
    if AIRFLOW_V_3_3_PLUS:  # listeners are told after our commit (the caller runs the callbacks)
        event = asset_manager.register_asset_change(
            asset=asset, extra=delivery.asset_extra(), session=session, callback_sink=callbacks
        )
    else:  # before 3.3 there is no callback sink: listeners are told inside the transaction
        event = asset_manager.register_asset_change(
            asset=asset, extra=delivery.asset_extra(), session=session
        )
    if event is None:  # the asset vanished under us (not expected: its row is locked)
        return Outcome("no_listener", uri)
    event.timestamp = stamp
    session.flush()

    queued: list[str] = []
    partitioned: set[str] = set()  # partitioned timetables (3.2+) queue by partition key, not here
    if AIRFLOW_V_3_2_PLUS:
        partitioned = {
            dag_id
            for dag_id, flag in session.execute(
                select(DagModel.dag_id, DagModel.timetable_partitioned).where(DagModel.dag_id.in_(consumers))
            )
            if flag
        }
    for dag_id in sorted(set(consumers) - partitioned):
        where = (AssetDagRunQueue.asset_id == asset.id, AssetDagRunQueue.target_dag_id == dag_id)
        # Waits while a scheduler holds the row to build a run from it; then finds it gone.
        session.execute(
            update(AssetDagRunQueue)
            .where(*where, AssetDagRunQueue.created_at < stamp)
            .values(created_at=stamp)
        )
        if session.scalar(select(func.count()).select_from(AssetDagRunQueue).where(*where)) == 0:
            _insert_queue_row(session, asset.id, dag_id, stamp)
        queued.append(dag_id)
    log.info(
        "ezCater delivery %s (order %s, %s) for connection %s: asset event %s on %s, queued for %s",
        delivery.id,
        delivery.entity_id,
        delivery.key,
        conn_id,
        event.id,
        uri,
        ", ".join(queued) or "no unpartitioned DAG",
    )
    return Outcome("created", uri, event.id, tuple(queued))


def _insert_queue_row(session: Session, asset_id: int, dag_id: str, stamp: datetime) -> None:
    from airflow.models.asset import AssetDagRunQueue
    from sqlalchemy.exc import IntegrityError

    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        session.execute(
            insert(AssetDagRunQueue)
            .values(asset_id=asset_id, target_dag_id=dag_id, created_at=stamp)
            .on_conflict_do_nothing()
        )
        return
    try:
        with session.begin_nested():
            session.add(AssetDagRunQueue(asset_id=asset_id, target_dag_id=dag_id, created_at=stamp))
    except IntegrityError:  # queued meanwhile by someone else: queued is all we need
        pass


__all__ = ["TABLE_NAME", "Outcome", "delivery_table", "ensure_table", "record_delivery"]
