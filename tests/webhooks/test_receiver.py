"""The notification receiver in-process: the FastAPI app over ASGI, Airflow's real SQLite metadata DB,
connections from ``AIRFLOW_CONN_*``, and asset consumers parsed from real DAG files.

What needs a scheduler and an API server (the run that follows, concurrency on PostgreSQL, bursts) is in
``tests/e2e/test_notifications.py``.
"""

from __future__ import annotations

import json
import logging
import textwrap
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_orders.assets import ezcater_order_asset_uri
from airflow_provider_orders.webhooks import signature
from airflow_provider_orders.webhooks.receiver import ReceiverSettings, SecretCache, create_app

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from starlette.testclient import TestClient

SECRET = "whsec-test-" + "x" * 20


def delivery(key: str = "submitted", **overrides: Any) -> dict[str, Any]:
    body = {
        "id": str(uuid.uuid4()),
        "parent_type": "Caterer",
        "parent_id": "c0ffee00-0000-4000-8000-000000000001",
        "entity_type": "Order",
        "entity_id": str(uuid.uuid4()),
        "key": key,
        "created_at": "2026-12-01T05:00:00.000Z",
        "occurred_at": "2026-12-01T05:00:00.000Z",
        "updated_at": "2026-12-01T05:00:00.000Z",
        "payload": None,
    }
    body.update(overrides)
    return body


def signed(body: dict[str, Any] | bytes, secret: str = SECRET, ts: float | None = None) -> tuple[bytes, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = signature.sign(secret, raw, int(time.time() if ts is None else ts))
    return raw, {signature.HEADER: header, "Content-Type": "application/json"}


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def home(airflow_db: Path) -> Path:
    return airflow_db


def _consumer_dag(dag_id: str, uri: str, *, paused: bool = False) -> str:
    return textwrap.dedent(
        f"""
        from airflow.sdk import Asset, dag, task

        @dag(dag_id={dag_id!r}, schedule=[Asset(name={uri!r}, uri={uri!r}, group="ezcater")],
             catchup=False, is_paused_upon_creation={paused!r})
        def consumer():
            @task
            def noop():
                return None
            noop()

        consumer()
        """
    )


def sync_dags(home: Path, files: dict[str, str]) -> None:
    """Write DAG files into the dags folder and parse them into the metadata DB, as the dag-processor does."""
    from airflow_versions import sync_dags_folder

    for name, text in files.items():
        (home / "dags" / name).write_text(text)
    sync_dags_folder(home / "dags")


def asset_events(uri: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra, AssetEvent.timestamp)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        ).all()
        return [{"extra": extra, "timestamp": ts} for extra, ts in rows]


def queue_rows(uri: str) -> dict[str, Any]:
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetDagRunQueue.target_dag_id, AssetDagRunQueue.created_at)
            .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
            .where(AssetModel.uri == uri)
        ).all()
        return dict(rows)


@pytest.fixture
def conn_id(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ezCater connection (its own assets) with the webhook secret in its extras."""
    name = "ez_" + uuid.uuid4().hex[:10]
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{name.upper()}",
        json.dumps({"conn_type": "ezcater", "password": "api-token", "extra": {"webhook_secret": SECRET}}),
    )
    return name


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    from starlette.testclient import TestClient

    app = create_app(
        ReceiverSettings(timestamp_tolerance=300, max_body_bytes=4096, secret_cache_seconds=0.001)
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def listening(home: Path, conn_id: str) -> str:
    """A DAG scheduling on the connection's ``submitted`` asset; returns the asset URI."""
    uri = ezcater_order_asset_uri(conn_id, "submitted")
    sync_dags(home, {f"{conn_id}_consumer.py": _consumer_dag(f"{conn_id}_consumer", uri)})
    return uri


def post(client: TestClient, conn_id: str, raw: bytes, headers: dict[str, str]) -> Any:
    return client.post(f"/webhooks/{conn_id}", content=raw, headers=headers)


# ------------------------------------------------------------------------------------------ signature
def test_signature_round_trip_and_refusals() -> None:
    body = b'{"id": "1"}'
    now = 1_800_000_000
    header = signature.sign("s3cret", body, now)
    assert signature.verify(header, "s3cret", body, now=now, tolerance=300).ok
    assert signature.verify(header, "other", body, now=now, tolerance=300).verdict is signature.Verdict.FORGED
    assert (
        signature.verify(header, "s3cret", body + b" ", now=now, tolerance=300).verdict
        is signature.Verdict.FORGED
    )
    assert signature.verify(header, None, body, now=now, tolerance=300).verdict is signature.Verdict.FORGED
    assert signature.verify(None, "s3cret", body, now=now, tolerance=300).verdict is signature.Verdict.MISSING
    for bad in ("abc", f"{now}", f"{now}.zz", f"x.{'a' * 64}", f"{now}.{'a' * 63}"):
        assert (
            signature.verify(bad, "s3cret", body, now=now, tolerance=300).verdict
            is signature.Verdict.MALFORMED
        )
    stale = signature.verify(header, "s3cret", body, now=now + 301, tolerance=300)
    assert stale.verdict is signature.Verdict.STALE
    assert signature.verify(header, "s3cret", body, now=now - 299, tolerance=300).ok  # ahead within tolerance


# ------------------------------------------------------------------------------------------ receiver
def test_a_verified_delivery_becomes_one_asset_event_with_the_order(
    client: TestClient, conn_id: str, listening: str
) -> None:
    body = delivery()
    raw, headers = signed(body)
    answer = post(client, conn_id, raw, headers)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"status": "recorded", "delivery_id": body["id"], "asset": listening}
    events = asset_events(listening)
    assert [e["extra"] for e in events] == [
        {
            "delivery_id": body["id"],
            "order_id": body["entity_id"],
            "key": "submitted",
            "caterer_id": body["parent_id"],
            "occurred_at": body["occurred_at"],
        }
    ]
    queued = queue_rows(listening)
    assert list(queued) == [f"{conn_id}_consumer"]
    assert queued[f"{conn_id}_consumer"] >= events[0]["timestamp"]


def test_a_repeated_delivery_answers_2xx_and_creates_nothing(
    client: TestClient, conn_id: str, listening: str
) -> None:
    body = delivery()
    first = post(client, conn_id, *signed(body))
    again = post(client, conn_id, *signed(body, ts=time.time() + 5))  # re-signed, as a retry would be
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"status": "duplicate", "delivery_id": body["id"]}
    assert len(asset_events(listening)) == 1


def test_the_same_delivery_id_on_another_connection_is_its_own(
    client: TestClient, conn_id: str, listening: str, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    other = conn_id + "_b"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{other.upper()}",
        json.dumps({"conn_type": "ezcater", "password": "t", "extra": {"webhook_secret": SECRET}}),
    )
    other_uri = ezcater_order_asset_uri(other, "submitted")
    sync_dags(home, {f"{other}_consumer.py": _consumer_dag(f"{other}_consumer", other_uri)})
    body = delivery()
    assert post(client, conn_id, *signed(body)).status_code == 202
    assert post(client, other, *signed(body)).status_code == 202
    assert len(asset_events(listening)) == len(asset_events(other_uri)) == 1


def test_a_delivery_nobody_listens_to_is_refused_so_that_ezcater_retries_it(
    client: TestClient, conn_id: str, home: Path
) -> None:
    body = delivery(key="cancelled")
    refused = post(client, conn_id, *signed(body))
    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    uri = ezcater_order_asset_uri(conn_id, "cancelled")
    assert uri in refused.json()["detail"]
    # A DAG that schedules on the asset is deployed; ezCater's next attempt of the same delivery lands.
    sync_dags(home, {f"{conn_id}_cancelled.py": _consumer_dag(f"{conn_id}_cancelled", uri)})
    landed = post(client, conn_id, *signed(body))
    assert landed.status_code == 202, landed.text
    assert [e["extra"]["delivery_id"] for e in asset_events(uri)] == [body["id"]]


def test_a_paused_consumer_gets_its_run_queued(client: TestClient, conn_id: str, home: Path) -> None:
    uri = ezcater_order_asset_uri(conn_id, "accepted")
    sync_dags(home, {f"{conn_id}_paused.py": _consumer_dag(f"{conn_id}_paused", uri, paused=True)})
    assert post(client, conn_id, *signed(delivery(key="accepted"))).status_code == 202
    assert list(queue_rows(uri)) == [f"{conn_id}_paused"]


def test_an_event_arriving_while_the_asset_is_queued_moves_the_queue_forward(
    client: TestClient, conn_id: str, listening: str
) -> None:
    """apache/airflow#56050: the queue row's created_at bounds the events the next run consumes."""
    assert post(client, conn_id, *signed(delivery())).status_code == 202
    first_queued = queue_rows(listening)[f"{conn_id}_consumer"]
    assert post(client, conn_id, *signed(delivery())).status_code == 202
    events = asset_events(listening)
    second_queued = queue_rows(listening)[f"{conn_id}_consumer"]
    assert second_queued > first_queued
    assert second_queued >= events[-1]["timestamp"]
    assert events[-1]["timestamp"] > events[0]["timestamp"]


def test_an_event_after_the_scheduler_consumed_the_queue_row_queues_again(
    client: TestClient, conn_id: str, listening: str
) -> None:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    assert post(client, conn_id, *signed(delivery())).status_code == 202
    with create_session() as session:  # what the scheduler does once it built the run
        session.execute(
            delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == f"{conn_id}_consumer")
        )
    assert post(client, conn_id, *signed(delivery())).status_code == 202
    assert list(queue_rows(listening)) == [f"{conn_id}_consumer"]


@pytest.mark.parametrize(
    "case",
    ["missing", "malformed", "forged", "wrong_secret", "unknown_connection", "not_ezcater", "no_secret"],
)
def test_unverified_deliveries_get_one_and_the_same_401_and_create_nothing(
    client: TestClient, conn_id: str, listening: str, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    raw, headers = signed(delivery())
    target = conn_id
    if case == "missing":
        del headers[signature.HEADER]
    elif case == "malformed":
        headers[signature.HEADER] = "sha256=" + headers[signature.HEADER]
    elif case == "forged":
        raw = raw.replace(b'"submitted"', b'"cancelled"')
    elif case == "wrong_secret":
        raw, headers = signed(delivery(), secret="not-the-secret")
    elif case == "unknown_connection":
        target = "no_such_connection_" + uuid.uuid4().hex[:6]
    elif case == "not_ezcater":
        target = "http_" + uuid.uuid4().hex[:6]
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{target.upper()}",
            json.dumps({"conn_type": "http", "host": "x", "extra": {"webhook_secret": SECRET}}),
        )
    elif case == "no_secret":
        target = "ez_nosecret_" + uuid.uuid4().hex[:6]
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{target.upper()}", json.dumps({"conn_type": "ezcater", "password": "t"})
        )
    answer = post(client, target, raw, headers)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Missing or invalid X-Ezcater-Signature"}
    assert asset_events(listening) == []


def test_the_secret_is_read_under_its_older_extra_name_too(
    client: TestClient, listening: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection saved by an older form keeps ``extra__ezcater__webhook_secret``: the hook (and so
    ``orders-ezcater status``) reads it, so the receiver must too, or status says "set" while every
    delivery gets 401."""
    target = "ez_prefixed_" + uuid.uuid4().hex[:6]
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{target.upper()}",
        json.dumps(
            {"conn_type": "ezcater", "password": "t", "extra": {"extra__ezcater__webhook_secret": SECRET}}
        ),
    )
    answer = post(client, target, *signed(delivery()))
    # past the signature check: what remains is that no DAG listens on this connection's asset yet
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"].startswith(f"No DAG schedules on ezcater://{target}/orders/submitted")


def test_a_stale_or_future_timestamp_is_refused(client: TestClient, conn_id: str, listening: str) -> None:
    for ts in (time.time() - 301, time.time() + 400):
        answer = post(client, conn_id, *signed(delivery(), ts=ts))
        assert answer.status_code == 401
        assert "outside the accepted window" in answer.json()["detail"]
    assert asset_events(listening) == []


def test_oversized_bodies_get_413_whether_declared_or_streamed(client: TestClient, conn_id: str) -> None:
    big = delivery(payload="x" * 5000)
    raw, headers = signed(big)
    assert post(client, conn_id, raw, headers).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for i in range(0, len(raw), 1000):
            yield raw[i : i + 1000]

    assert client.post(f"/webhooks/{conn_id}", content=chunks(), headers=headers).status_code == 413


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps(delivery(id=None)).encode(), "'id'"),
        (json.dumps(delivery(entity_id="")).encode(), "'entity_id'"),
        (json.dumps(delivery(key="sub mitted")).encode(), "'key'"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_a_verified_body_that_is_not_a_delivery_gets_400(
    client: TestClient, conn_id: str, listening: str, raw: bytes, reason: str
) -> None:
    answer = post(client, conn_id, *signed(raw))
    assert answer.status_code == 400
    assert reason in answer.json()["detail"]
    assert asset_events(listening) == []


def test_other_entities_and_unknown_keys_are_acknowledged_and_ignored(
    client: TestClient, conn_id: str, listening: str
) -> None:
    menu = post(client, conn_id, *signed(delivery(entity_type="Menu", key="updated")))
    future = post(client, conn_id, *signed(delivery(key="modified")))
    assert (menu.status_code, future.status_code) == (200, 200)
    assert menu.json()["status"] == future.json()["status"] == "ignored"
    assert asset_events(listening) == []


def test_the_app_serves_nothing_but_the_webhook_route(client: TestClient, conn_id: str) -> None:
    assert client.get(f"/webhooks/{conn_id}").status_code == 405
    for path in ("/", "/docs", "/redoc", "/openapi.json", "/webhooks"):
        assert client.get(path).status_code == 404, path


def test_the_secret_never_reaches_an_answer_or_a_log_line(
    client: TestClient, conn_id: str, listening: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        post(client, conn_id, *signed(delivery())),
        post(client, conn_id, *signed(delivery(), secret="wrong")),
        post(client, conn_id, *signed(delivery(), ts=time.time() - 1000)),
        post(client, conn_id, *signed(b"{}")),
    ]
    assert [a.status_code for a in answers] == [202, 401, 401, 400]
    assert all(SECRET not in a.text for a in answers)
    assert SECRET not in caplog.text
    assert "api-token" not in caplog.text


def test_the_secret_cache_reads_a_connection_once_per_ttl() -> None:
    reads: list[str] = []

    def reader(conn_id: str) -> str | None:
        reads.append(conn_id)
        return "s" if conn_id == "known" else None

    cache = SecretCache(ttl=60, reader=reader)
    assert [cache.get("known"), cache.get("known"), cache.get("unknown"), cache.get("unknown")] == [
        "s",
        "s",
        None,
        None,
    ]
    assert reads == ["known", "unknown"]


def test_the_plugin_is_registered_and_mounts_the_app_at_ezcater() -> None:
    from importlib.metadata import entry_points

    from airflow_provider_orders.webhooks.plugin import EzCaterWebhooksPlugin

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "ezcater_webhooks"]
    assert entry.load() is EzCaterWebhooksPlugin
    (app,) = EzCaterWebhooksPlugin().fastapi_apps
    assert app["url_prefix"] == "/ezcater"
    assert [r.path for r in app["app"].routes] == ["/webhooks/{conn_id}"]
