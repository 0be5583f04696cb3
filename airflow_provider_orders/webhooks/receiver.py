"""``POST /ezcater/webhooks/{conn_id}``: ezCater's signed deliveries become asset events.

Mounted on the Airflow API server by :mod:`.plugin`. Airflow does not authenticate plugin routes: this
app checks every request itself and serves nothing but the one route (no docs, no OpenAPI document).

Answers, in the order the checks run:

| answer | when |
| --- | --- |
| 413 | the body is larger than ``max_body_bytes`` (checked before anything is read past it) |
| 401 | the signature is missing, malformed or wrong, the connection does not exist, is not an ``ezcater`` connection or has no ``webhook_secret``: one answer for all, so the route cannot be used to probe connection names |
| 401 | a correct signature whose timestamp is outside ``timestamp_tolerance`` (only a sender that knows the secret can get this answer) |
| 400 | a verified body that is not a delivery (not JSON, or a field missing / malformed) |
| 200 ``ignored`` | a verified delivery for another entity than Order, or an event key this provider does not know |
| 200 ``duplicate`` | a delivery id this connection has already recorded |
| 202 ``recorded`` | a new delivery: one asset event on ``ezcater://<conn_id>/orders/<key>`` |
| 503 | no DAG schedules on that asset yet, or the metadata DB is unavailable: nothing is recorded, so ezCater's next attempt is processed |

The request never calls ezCater. Settings come from Airflow's configuration, section
``[ezcater_webhooks]`` (environment ``AIRFLOW__EZCATER_WEBHOOKS__<OPTION>``): ``timestamp_tolerance``
(seconds, default 300), ``max_body_bytes`` (65536), ``secret_cache_seconds`` (30: how long a
connection's secret is reused before it is read again), ``retention_days`` (30: how long delivery ids
are kept for de-duplication).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# This module is imported only by the API server (through the plugin's ``fastapi_apps``) and tests:
# FastAPI resolves the route's annotations at import time, so Request is a module-level import.
from fastapi import Request  # noqa: TC002

from airflow_provider_orders.models.ezcater import (
    ORDER_EVENT_KEYS,
    WEBHOOK_ROUTE_PREFIX,
    WEBHOOK_SECRET_EXTRA,
    Delivery,
    DeliveryError,
)
from airflow_provider_orders.webhooks import signature

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

    from airflow_provider_orders.webhooks._store import Outcome

log = logging.getLogger(__name__)

CONF_SECTION = "ezcater_webhooks"
CONN_TYPE = "ezcater"
#: Connection ids Airflow accepts; anything else cannot name a connection and gets the same 401.
_CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
UNAUTHORIZED = {"detail": "Missing or invalid X-Ezcater-Signature"}
STALE = {"detail": "X-Ezcater-Signature timestamp is outside the accepted window; check the clocks"}


@dataclass(frozen=True)
class ReceiverSettings:
    timestamp_tolerance: float = 300.0
    max_body_bytes: int = 65536
    secret_cache_seconds: float = 30.0
    retention_days: float = 30.0

    @classmethod
    def from_airflow_conf(cls) -> ReceiverSettings:
        from airflow.configuration import conf

        default = cls()

        def number(option: str, fallback: float) -> float:
            value = conf.getfloat(CONF_SECTION, option, fallback=fallback)
            if value <= 0:
                raise ValueError(f"[{CONF_SECTION}] {option} must be positive, got {value}")
            return value

        return cls(
            timestamp_tolerance=number("timestamp_tolerance", default.timestamp_tolerance),
            max_body_bytes=int(number("max_body_bytes", default.max_body_bytes)),
            secret_cache_seconds=number("secret_cache_seconds", default.secret_cache_seconds),
            retention_days=number("retention_days", default.retention_days),
        )


def read_connection_secret(conn_id: str) -> str | None:
    """The ``webhook_secret`` extra of an ``ezcater`` connection; None when there is none to use."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    if (conn.conn_type or "").lower() != CONN_TYPE:
        log.warning("Connection %r is not an ezCater connection: its deliveries are refused", conn_id)
        return None
    try:
        extra = conn.extra_dejson
    except Exception:
        return None
    secret = None
    if isinstance(
        extra, dict
    ):  # the plain name, or the ``extra__ezcater__`` form older forms stored (as the hook)
        secret = extra.get(WEBHOOK_SECRET_EXTRA) or extra.get(f"extra__{CONN_TYPE}__{WEBHOOK_SECRET_EXTRA}")
    if not isinstance(secret, str) or not secret.strip():
        log.warning(
            "Connection %r has no %r extra: its deliveries are refused (run `orders-ezcater subscribe`)",
            conn_id,
            WEBHOOK_SECRET_EXTRA,
        )
        return None
    return secret.strip()


class SecretCache:
    """conn_id → secret (or None), read at most once per ``ttl`` seconds per connection."""

    def __init__(self, ttl: float, reader: Callable[[str], str | None] = read_connection_secret) -> None:
        self.ttl = ttl
        self._reader = reader
        self._entries: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def get(self, conn_id: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(conn_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        secret = self._reader(conn_id)
        with self._lock:
            if len(self._entries) > 1000:  # probing many names must not grow memory
                self._entries.clear()
            self._entries[conn_id] = (now + self.ttl, secret)
        return secret


def create_app(
    settings: ReceiverSettings | None = None,
    *,
    secrets: SecretCache | None = None,
    record: Callable[..., Outcome] | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The FastAPI app the plugin mounts at ``/ezcater`` (arguments are for tests)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from airflow_provider_orders.webhooks._store import record_delivery

    config = settings or ReceiverSettings.from_airflow_conf()
    cache = secrets or SecretCache(config.secret_cache_seconds)
    store = record or record_delivery
    app = FastAPI(
        title="ezCater notifications (airflow-provider-orders)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def answer(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(payload, status_code=status, headers=headers)

    async def bounded_body(request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > config.max_body_bytes):
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                return None
        return bytes(body)

    @app.post(WEBHOOK_ROUTE_PREFIX + "{conn_id}", include_in_schema=False)
    async def receive(conn_id: str, request: Request) -> JSONResponse:
        body = await bounded_body(request)
        if body is None:
            return answer(413, {"detail": f"Body larger than {config.max_body_bytes} bytes"})
        header = request.headers.get(signature.HEADER)
        secret = await run_in_threadpool(cache.get, conn_id) if _CONN_ID_RE.match(conn_id) else None
        check = signature.verify(header, secret, body, now=clock(), tolerance=config.timestamp_tolerance)
        if check.verdict is signature.Verdict.STALE:
            log.warning(
                "ezCater delivery for %r refused: signature timestamp %s is stale", conn_id, check.timestamp
            )
            return answer(401, STALE)
        if not check.ok:
            log.info("ezCater delivery for %r refused: signature %s", conn_id[:250], check.verdict.value)
            return answer(401, UNAUTHORIZED)
        try:
            delivery = Delivery.from_api(json.loads(body))
        except (ValueError, DeliveryError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            reason = str(exc) if isinstance(exc, DeliveryError) else "the body is not JSON"
            return answer(400, {"detail": f"Not an ezCater delivery: {reason}"})
        if not delivery.is_order_event or delivery.key not in ORDER_EVENT_KEYS:
            log.warning(
                "ezCater delivery %s for %r ignored: %s %r is not an order event this provider handles",
                delivery.id,
                conn_id,
                delivery.entity_type,
                delivery.key,
            )
            return answer(200, {"status": "ignored", "delivery_id": delivery.id})
        try:
            outcome = await run_in_threadpool(store, conn_id, delivery, retention_days=config.retention_days)
        except Exception:
            log.exception("ezCater delivery %s for %r could not be recorded", delivery.id, conn_id)
            return answer(
                503, {"detail": "The delivery could not be recorded; retry later"}, {"Retry-After": "30"}
            )
        if outcome.status == "duplicate":
            return answer(200, {"status": "duplicate", "delivery_id": delivery.id})
        if outcome.status == "no_listener":
            log.warning(
                "ezCater delivery %s (order %s) for %r refused with 503: no DAG schedules on %s yet",
                delivery.id,
                delivery.entity_id,
                conn_id,
                outcome.asset_uri,
            )
            return answer(
                503,
                {"detail": f"No DAG schedules on {outcome.asset_uri} yet; deliver again later"},
                {"Retry-After": "60"},
            )
        return answer(202, {"status": "recorded", "delivery_id": delivery.id, "asset": outcome.asset_uri})

    return app


__all__ = ["CONF_SECTION", "ReceiverSettings", "SecretCache", "create_app", "read_connection_secret"]
