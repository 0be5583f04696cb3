"""ezCater notification deliveries: signed webhook POSTs sent from a small pool of background threads.

A delivery is a pointer to an order event, compact JSON::

    {"id": "<uuid4>", "parent_type": "Caterer", "parent_id": "<caterer uuid>", "entity_type": "Order",
     "entity_id": "<order uuid>", "key": "submitted", "created_at": "2026-12-01T05:00:00.123Z",
     "occurred_at": "...", "updated_at": "...", "payload": null}

POSTed to the subscriber's ``webhookUrl`` with ``Content-Type: application/json`` and
``X-Ezcater-Signature: <unix ts>.<hex>``, hex = HMAC-SHA256(secret, f"{ts}.{raw_body}"). A 2xx answer
delivers it; any other status or a connection error is retried after ``retry_base`` seconds, doubling
each time up to ``retry_max_delay``, at most ``max_attempts`` attempts in all (then the delivery is
``failed``). Each attempt is signed afresh (new timestamp); body and id never change.

Deliveries are sent only while the engine runs (:meth:`DeliveryEngine.start`; the sandbox starts it
with its server): one queued while it is stopped waits, ``pending``. Several go out at once (``workers``
threads), so they may arrive in any order.

Delivery faults (:meth:`DeliveryEngine.inject_fault`) apply to the next ``count`` deliveries created;
like the server's request faults they queue first in, first out, and a delivery takes at most one (the
first armed): ``bad_signature`` then ``stale_timestamp``, each with count 1, spoil two deliveries.

* ``duplicate``: the delivery is sent twice with the same id, the copy right after the original's
  first attempt (the copy is a delivery of its own, ``duplicate_of`` = the id, retried like any other).
* ``delay``: the first attempt waits ``seconds``.
* ``bad_signature``: the first attempt is signed with a wrong secret; retries are signed correctly.
* ``stale_timestamp``: the first attempt is signed with a timestamp ``seconds`` in the past (the
  signature matches that timestamp); retries carry a fresh one.

This module imports nothing of the provider: it is plain stdlib.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import secrets
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

SIGNATURE_HEADER = "X-Ezcater-Signature"
USER_AGENT = "orders-sandbox-ezcater-notifications"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
FAULT_KINDS = ("duplicate", "delay", "bad_signature", "stale_timestamp")
#: Fault kinds that need ``seconds > 0``.
TIMED_FAULT_KINDS = ("delay", "stale_timestamp")


def iso_utc(epoch: float) -> str:
    """``2026-12-01T05:00:00.123Z``: ISO 8601 in UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def sign(secret: str, timestamp: int, raw_body: str) -> str:
    """The ``X-Ezcater-Signature`` value for ``raw_body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{raw_body}".encode(), hashlib.sha256).hexdigest()
    return f"{timestamp}.{digest}"


@dataclass
class DeliveryFault:
    """A delivery fault armed for the next ``count`` deliveries (see the module docstring)."""

    kind: str
    count: int = 1
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown delivery fault {self.kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(
                f"delivery fault {self.kind}: count must be a positive integer, got {self.count!r}"
            )
        self.seconds = float(self.seconds)
        if self.kind in TIMED_FAULT_KINDS and self.seconds <= 0:
            raise ValueError(f"delivery fault {self.kind}: give seconds > 0")
        if self.seconds < 0:
            raise ValueError(f"delivery fault {self.kind}: seconds must not be negative")

    def describe(self) -> str:
        return f"{self.kind} {self.seconds:g}s" if self.kind in TIMED_FAULT_KINDS else self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "seconds": self.seconds}


@dataclass
class Delivery:
    """One notification to one subscriber and every attempt to send it."""

    id: str
    order_id: str
    caterer_uuid: str
    key: str
    subscriber_id: str
    url: str
    secret: str
    body: str
    created: float
    duplicate_of: str | None = None
    state: str = PENDING
    attempts: list[dict[str, Any]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    first_delay: float = 0.0
    bad_signature: bool = False
    stale_seconds: float = 0.0
    duplicate: bool = False
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "order_id": self.order_id,
            "caterer_uuid": self.caterer_uuid,
            "key": self.key,
            "subscriber_id": self.subscriber_id,
            "url": self.url,
            "state": self.state,
            "attempts": [dict(a) for a in self.attempts],
            "duplicate_of": self.duplicate_of,
            "faults": list(self.faults),
            "body": self.body,
            "created": self.created,
        }

    def describe(self) -> str:
        return (
            f"{self.key} of order {self.order_id} to {self.url} (id {self.id}, {len(self.attempts)} attempts)"
        )


class DeliveryEngine:
    """Queues deliveries and sends them from ``workers`` threads, retrying with exponential backoff.

    :param retry_base: seconds before the first retry; each further retry waits twice as long.
    :param retry_max_delay: the longest wait between two attempts.
    :param max_attempts: attempts in all (the first included) before a delivery is ``failed``.
    :param workers: threads sending at once.
    :param timeout: seconds an attempt may take (connect + answer).
    :param clock: epoch-seconds clock of ``created_at`` / ``updated_at`` (the signature uses real time).
    """

    def __init__(
        self,
        retry_base: float = 1.0,
        retry_max_delay: float = 60.0,
        max_attempts: int = 8,
        *,
        workers: int = 8,
        timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if retry_base < 0 or retry_max_delay < 0:
            raise ValueError("delivery retry delays must not be negative")
        if max_attempts < 1:
            raise ValueError(f"delivery_max_attempts must be at least 1, got {max_attempts}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.retry_base = float(retry_base)
        self.retry_max_delay = float(retry_max_delay)
        self.max_attempts = int(max_attempts)
        self.workers = int(workers)
        self.timeout = float(timeout)
        self.clock = clock or time.time
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Delivery]] = []  # (monotonic due time, seq, delivery)
        self._seq = itertools.count()
        self._deliveries: list[Delivery] = []
        self._faults: list[DeliveryFault] = []
        self._threads: list[threading.Thread] = []
        self._running = False
        self._generation = 0

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the sending threads (idempotent); deliveries queued meanwhile go out now."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._threads = [
                threading.Thread(target=self._work, name=f"ezcater-delivery-{i}", daemon=True)
                for i in range(self.workers)
            ]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the threads (an attempt in flight finishes first); pending deliveries stay pending."""
        with self._cond:
            if not self._running:
                return
            self._running = False
            threads, self._threads = self._threads, []
            self._cond.notify_all()
        limit = self.timeout + 1.0 if timeout is None else timeout
        for thread in threads:
            thread.join(timeout=limit)

    @property
    def running(self) -> bool:
        return self._running

    def reset(self) -> None:
        """Forget every delivery and fault (attempts in flight are discarded when they end)."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._deliveries.clear()
            self._faults.clear()
            self._cond.notify_all()

    # ---------------------------------------------------------------- faults
    def inject_fault(self, kind: str, count: int = 1, seconds: float = 0.0) -> DeliveryFault:
        fault = DeliveryFault(kind, count, seconds)
        with self._cond:
            self._faults.append(fault)
        return fault

    @property
    def faults(self) -> list[DeliveryFault]:
        with self._cond:
            return [DeliveryFault(f.kind, f.count, f.seconds) for f in self._faults]

    def clear_faults(self) -> int:
        with self._cond:
            n = len(self._faults)
            self._faults.clear()
            return n

    def _take_fault(self) -> DeliveryFault | None:
        """The first armed fault, counted down (lock held)."""
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.count -= 1
        if fault.count <= 0:
            self._faults.pop(0)
        return fault

    # ---------------------------------------------------------------- submitting
    def submit(
        self,
        *,
        order_id: str,
        caterer_uuid: str,
        key: str,
        occurred_at: float,
        subscriber_id: str,
        url: str,
        secret: str,
    ) -> Delivery:
        """Queue a delivery of ``key`` for ``order_id`` to ``url``, signed with ``secret``."""
        delivery_id = str(uuidlib.uuid4())
        created = self.clock()
        body = json.dumps(
            {
                "id": delivery_id,
                "parent_type": "Caterer",
                "parent_id": caterer_uuid,
                "entity_type": "Order",
                "entity_id": order_id,
                "key": key,
                "created_at": iso_utc(created),
                "occurred_at": iso_utc(occurred_at),
                "updated_at": iso_utc(created),
                "payload": None,
            },
            separators=(",", ":"),
        )
        delivery = Delivery(
            delivery_id, order_id, caterer_uuid, key, subscriber_id, url, secret, body, created
        )
        with self._cond:
            delivery.generation = self._generation
            fault = self._take_fault()
            if fault is not None:
                delivery.faults.append(fault.describe())
                if fault.kind == "duplicate":
                    delivery.duplicate = True
                elif fault.kind == "delay":
                    delivery.first_delay = fault.seconds
                elif fault.kind == "bad_signature":
                    delivery.bad_signature = True
                else:
                    delivery.stale_seconds = fault.seconds
            self._deliveries.append(delivery)
            self._push(delivery, time.monotonic() + delivery.first_delay)
        return delivery

    def _push(self, delivery: Delivery, due: float) -> None:
        heapq.heappush(self._queue, (due, next(self._seq), delivery))
        self._cond.notify()

    # ---------------------------------------------------------------- reading
    def deliveries(self, order_id: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        """Every delivery (duplicates included) in creation order, filtered by order and/or key."""
        with self._cond:
            return [
                d.to_dict()
                for d in self._deliveries
                if (order_id is None or d.order_id == order_id) and (key is None or d.key == key)
            ]

    def wait(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until no delivery is pending; every delivery then. TimeoutError names the pending ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pending = [d for d in self._deliveries if d.state == PENDING]
                if not pending:
                    return [d.to_dict() for d in self._deliveries]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    shown = "; ".join(d.describe() for d in pending[:10])
                    more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
                    stopped = "" if self._running else " (the sandbox is not running: nothing is sent)"
                    raise TimeoutError(
                        f"{len(pending)} deliveries still pending after {timeout:g} s{stopped}: {shown}{more}"
                    )
                self._cond.wait(remaining)

    # ---------------------------------------------------------------- sending
    def _work(self) -> None:
        while True:
            with self._cond:
                delivery = self._next()
                if delivery is None:
                    return
                first = not delivery.attempts
                bad_signature = first and delivery.bad_signature
                stale = delivery.stale_seconds if first else 0.0
                generation = delivery.generation
            attempt = self._attempt(delivery, bad_signature, stale)
            with self._cond:
                if generation != self._generation:
                    continue  # reset meanwhile: forget it
                delivery.attempts.append(attempt)
                status = attempt.get("status")
                if isinstance(status, int) and 200 <= status < 300:
                    delivery.state = DELIVERED
                elif len(delivery.attempts) >= self.max_attempts:
                    delivery.state = FAILED
                else:
                    wait = min(self.retry_base * 2 ** (len(delivery.attempts) - 1), self.retry_max_delay)
                    self._push(delivery, time.monotonic() + wait)
                if first and delivery.duplicate:
                    self._push_copy(delivery)
                self._cond.notify_all()

    def _next(self) -> Delivery | None:
        """The next due delivery, waiting for it (lock held); None when the engine stops."""
        while True:
            if not self._running:
                return None
            if self._queue:
                due = self._queue[0][0]
                now = time.monotonic()
                if due <= now:
                    return heapq.heappop(self._queue)[2]
                self._cond.wait(due - now)
            else:
                self._cond.wait()

    def _push_copy(self, original: Delivery) -> None:
        copy = Delivery(
            original.id,
            original.order_id,
            original.caterer_uuid,
            original.key,
            original.subscriber_id,
            original.url,
            original.secret,
            original.body,
            self.clock(),
            duplicate_of=original.id,
            faults=["duplicate copy"],
            generation=original.generation,
        )
        self._deliveries.append(copy)
        self._push(copy, time.monotonic())

    def _attempt(self, delivery: Delivery, bad_signature: bool, stale_seconds: float) -> dict[str, Any]:
        now = time.time()
        timestamp = int(now - stale_seconds)
        secret = secrets.token_urlsafe(32) if bad_signature else delivery.secret
        attempt: dict[str, Any] = {"at": now, "signed_at": timestamp, "status": None, "error": None}
        notes = []
        if bad_signature:
            notes.append("bad_signature")
        if stale_seconds:
            notes.append(f"stale_timestamp {stale_seconds:g}s")
        if notes:
            attempt["fault"] = ", ".join(notes)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, timestamp, delivery.body),
            "User-Agent": USER_AGENT,
        }
        started = time.monotonic()
        try:
            attempt["status"] = _post(delivery.url, delivery.body.encode(), headers, self.timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            attempt["error"] = f"{type(exc).__name__}: {exc}"
        attempt["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        return attempt


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``url``; the answer's status (its body is read and dropped)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return int(response.status)
    finally:
        connection.close()


__all__ = [
    "FAULT_KINDS",
    "SIGNATURE_HEADER",
    "Delivery",
    "DeliveryEngine",
    "DeliveryFault",
    "iso_utc",
    "sign",
]
