"""HTTP plumbing both hooks share: URL path segments, what a client-side failure means (sent or not,
configuration or transient), and the async clients and request gates a triggerer's event loop shares
(one per API host).

Heavy clients (requests, httpx) are imported inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow_provider_orders.exceptions import PermanentOrdersError
from airflow_provider_orders.hooks._retry import RetryableError

if TYPE_CHECKING:
    import httpx

#: HTTP statuses after which the server certainly did not act on the request (both APIs): a create or a
#: mutation may be sent again.
NOT_ACTED_STATUSES = frozenset({408, 429, 503})


def is_transient_status(status: int) -> bool:
    """A status that may heal by itself: one of :data:`NOT_ACTED_STATUSES` or any 5xx."""
    return status in NOT_ACTED_STATUSES or status >= 500


def quote_segment(segment: Any) -> str:
    """Percent-encode one URL path segment: ``my kitchen/x`` → ``my%20kitchen%2Fx``."""
    return quote(str(segment), safe="")


# --------------------------------------------------------------------------------------------------
# Triage of client-side failures
# --------------------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes/contexts and the exceptions wrapped in their ``args`` / ``reason``."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return seen


def never_sent(exc: BaseException) -> bool:
    """True if a requests/urllib3/httpx failure happened before the request could reach the server.

    That is: the TCP (or TLS) connection was never established (refused, unreachable, DNS failure,
    connect timeout) or no pooled connection was available. Anything else (reset, closed without an
    answer, read timeout) may have happened after the server received the request.
    """
    import requests
    import urllib3.exceptions

    for err in _chain(exc):
        if isinstance(err, (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
            return True  # urllib3's NewConnectionError (refused, DNS) is a ConnectTimeoutError
        if isinstance(err, ConnectionRefusedError):
            return True
        if type(err).__module__.startswith("httpx") and type(err).__name__ in {
            "ConnectError",
            "ConnectTimeout",
            "PoolTimeout",
        }:
            return True
    return False


def tls_failure(exc: BaseException) -> str | None:
    """The text of a TLS certificate failure in ``exc``'s chain (a configuration problem), else None."""
    import ssl

    for err in _chain(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            return str(err)
    return None


def configuration_failure(exc: BaseException, where: str, conn_id: str) -> PermanentOrdersError | None:
    """A client failure no retry can heal (TLS certificate refused, unusable URL), else None."""
    import requests

    tls = tls_failure(exc)
    if tls:
        return PermanentOrdersError(
            f"TLS certificate verification failed for {where}: {tls}. Fix the certificate, or set the "
            f"extra verify_ssl of connection '{conn_id}' to false."
        )
    for err in _chain(exc):
        bad_url = isinstance(err, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)) or (
            type(err).__module__.startswith("httpx")
            and type(err).__name__ in {"InvalidURL", "UnsupportedProtocol"}
        )
        if bad_url:
            return PermanentOrdersError(
                f"The host of connection '{conn_id}' does not make a usable URL ({where}): "
                f"{describe_client_error(err)}"
            )
    return None


def describe_client_error(exc: BaseException) -> str:
    """A short description of a client-side failure (no request bodies, no headers)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{name}: {text}" if text else name


# --------------------------------------------------------------------------------------------------
# Process-wide async clients and request gates, per event loop and per (service, host)
# --------------------------------------------------------------------------------------------------

#: HTTP requests one event loop runs at once against one (service, host); the others wait their turn in
#: its :class:`RequestGate` (O(1) per waiter, FIFO, a bounded wait). It is what bounds a triggerer's request
#: rate per API (in flight / API latency): 20 at 200 ms is 100 requests/s, 1,000 triggers polling every
#: 10 s. Each (service, host) has its own gate, so a hung API never holds the slots of another one.
ASYNC_MAX_IN_FLIGHT = 20
#: Connections of each shared ``httpx.AsyncClient`` (its pool limit). There is one client per gate (and
#: TLS setting), and the limit is above :data:`ASYNC_MAX_IN_FLIGHT`, so that httpcore's own pool queue
#: stays empty: httpcore 1.0.x re-scans every queued request against every connection on each pool event
#: (O(queued x connections), encode/httpcore#1035), which stalled the event loop of a triggerer holding
#: 1,000 deferred tasks for seconds.
ASYNC_MAX_CONNECTIONS = ASYNC_MAX_IN_FLIGHT + 4

#: The gate of Airflow connection lookups (they go to Airflow, not to either API).
CONNECTION_LOOKUPS = ("airflow", "connection lookups")


class RequestGateTimeout(RetryableError):
    """No slot of a request gate freed within the wait: the requests ahead are slow or hung. Retryable
    (nothing was sent); a spent retry budget becomes a ``TransientOrdersError`` as usual."""

    def __init__(self, service: str, host: str, in_flight: int, waiting: int, wait: float) -> None:
        super().__init__(
            f"{_SERVICE_NAMES.get(service, service)} at {host} is slow to answer: {in_flight} request(s) "
            f"already in flight from this event loop (the limit per host) and {waiting} waiting; no slot "
            f"freed within {wait:g} s, so this request was not sent"
        )
        self.service = service
        self.host = host
        self.in_flight = in_flight


_SERVICE_NAMES = {"datakitchen": "DataKitchen", "ezcater": "ezCater", "airflow": "Airflow"}


class RequestGate:
    """One event loop's gate for one (service, host): at most ``limit`` requests in flight, the others
    wait in FIFO order. A released slot is handed straight to the first live waiter; a waiter that gives
    up (timeout, cancellation) is skipped lazily, so entering, leaving and giving up are all O(1)."""

    def __init__(self, service: str, host: str, limit: int = ASYNC_MAX_IN_FLIGHT) -> None:
        self.service = service
        self.host = host
        self.limit = limit
        self.in_flight = 0
        self.waiting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def __call__(self, wait: float | None) -> _GateSlot:
        return _GateSlot(self, wait)

    async def acquire(self, wait: float | None) -> None:
        """Take a slot, waiting at most ``wait`` seconds (None: as long as it takes).

        :raises RequestGateTimeout: no slot within ``wait``.
        """
        if self.in_flight < self.limit and not self.waiting:
            self.in_flight += 1  # free: no yield to the loop
            return
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[None] = loop.create_future()
        self._waiters.append(slot)
        self.waiting += 1
        timer = loop.call_later(wait, _give_up, slot) if wait is not None else None
        try:
            await slot  # release() hands its slot over (in_flight stays counted)
        except asyncio.TimeoutError:
            raise RequestGateTimeout(
                self.service, self.host, self.in_flight, self.waiting - 1, wait or 0.0
            ) from None
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                # the slot was handed over just as this task was cancelled: pass it on
                self.release()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not slot.done():
                slot.cancel()  # release() skips it
            if slot.cancelled() or slot.exception() is not None:
                self.waiting -= 1  # gave up; release() decrements for the waiters it serves

    def release(self) -> None:
        """Give the slot to the first waiter still waiting, or free it."""
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                self.waiting -= 1
                slot.set_result(None)
                return
        self.in_flight -= 1


def _give_up(slot: asyncio.Future[None]) -> None:
    if not slot.done():
        slot.set_exception(asyncio.TimeoutError())


class _GateSlot:
    """``async with`` one slot of a :class:`RequestGate`. On leaving, a cancellation of the task that the
    code inside swallowed is raised again (see :func:`reraise_swallowed_cancellation`)."""

    __slots__ = ("_cancellations", "_gate", "_wait")

    def __init__(self, gate: RequestGate, wait: float | None) -> None:
        self._gate = gate
        self._wait = wait
        self._cancellations = 0

    async def __aenter__(self) -> None:
        self._cancellations = pending_cancellations()
        await self._gate.acquire(self._wait)

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self._gate.release()
        if exc_type is None or not issubclass(exc_type, asyncio.CancelledError):
            reraise_swallowed_cancellation(self._cancellations)


# --------------------------------------------------------------------------------------------------
# Cancellations lost inside third-party async code
# --------------------------------------------------------------------------------------------------


def pending_cancellations() -> int:
    """How many cancellation requests the running task has not withdrawn (``Task.cancelling()``, Python
    3.11+; always 0 on 3.10, where asyncio does not count them)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


def reraise_swallowed_cancellation(before: int) -> None:
    """Raise ``CancelledError`` if the running task was cancelled since it had ``before`` pending
    cancellations (:func:`pending_cancellations`) and is nevertheless running normal code: something it
    awaited swallowed the cancellation.

    anyio before 4.16 does so when a ``Task.cancel()`` lands in the event loop iteration in which one of
    its own cancel scopes fires (agronholm/anyio#1214). Every httpx connect opens such a scope (the happy
    eyeballs race of ``anyio.connect_tcp``), and Airflow 3.0 to 3.3 shipped with anyio 4.10 to 4.15. A
    trigger the triggerer cancelled (its task cleared or marked, the trigger moved to another triggerer)
    would then go on polling, and could fire, for as long as the triggerer runs.
    """
    if pending_cancellations() > before:
        raise asyncio.CancelledError("cancelled while awaiting code that swallowed the cancellation")


@dataclass
class _LoopState:
    """What the hooks share within one event loop."""

    gates: dict[tuple[str, str], RequestGate] = field(default_factory=dict)
    clients: dict[tuple[bool, str, str], httpx.AsyncClient] = field(default_factory=dict)


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
_LOOPS_LOCK = threading.Lock()


def _loop_state() -> _LoopState:
    loop = asyncio.get_running_loop()
    state = _LOOPS.get(loop)
    if state is None:
        with _LOOPS_LOCK:
            for other in [lp for lp in _LOOPS if lp.is_closed()]:
                del _LOOPS[other]
            state = _LOOPS.get(loop)
            if state is None:
                state = _LOOPS[loop] = _LoopState()
    return state


@functools.lru_cache(maxsize=256)
def url_host(url: str) -> str:
    """The gate key of a base URL: its ``host[:port]``, lower-cased (``https://API.x.io/graphql`` →
    ``api.x.io``)."""
    return urlsplit(url).netloc.rpartition("@")[2].lower() or url


def request_gate(service: str, host: str) -> RequestGate:
    """The running loop's :class:`RequestGate` for ``service`` (``"datakitchen"`` / ``"ezcater"``) at
    ``host`` (:func:`url_host` of the connection's URL)."""
    state = _loop_state()
    gate = state.gates.get((service, host))
    if gate is None:
        gate = state.gates[(service, host)] = RequestGate(service, host)
    return gate


def async_request_gate(service: str, host: str, *, wait: float | None) -> _GateSlot:
    """One slot of the running loop's gate for (``service``, ``host``): hold it (``async with``) around
    every async HTTP request, never across a retry's sleep, and never while acquiring it again.

    It bounds what one triggerer loop sends to one API host at once to :data:`ASYNC_MAX_IN_FLIGHT`, however
    many triggers wake at the same moment; another API (or host) has its own gate, so a hung one stalls
    only its own callers. Waiting longer than ``wait`` seconds (the request timeout) raises
    :class:`RequestGateTimeout`, which the hooks' retry policy retries; ``None`` waits as long as it takes
    (connection lookups and one-off imports, which never hang on an API).
    """
    return request_gate(service, host)(wait)


def shared_async_client(verify_ssl: bool, service: str, host: str) -> httpx.AsyncClient:
    """The running loop's shared ``httpx.AsyncClient`` for this TLS setting and gate (service, host).

    A triggerer runs hundreds of triggers in one loop; a client per trigger would hold hundreds of
    connection pools and TLS contexts. One client per gate keeps its pool (:data:`ASYNC_MAX_CONNECTIONS`)
    above what its gate lets through, so no host can exhaust the pool another host's requests need.
    Timeouts are passed per request, so one client serves every connection to that host. Send through it
    while holding :func:`async_request_gate` of the same (service, host).
    """
    state = _loop_state()
    key = (verify_ssl, service, host)
    client = state.clients.get(key)
    if client is None or client.is_closed:
        import httpx

        client = httpx.AsyncClient(
            verify=verify_ssl,
            limits=httpx.Limits(
                max_connections=ASYNC_MAX_CONNECTIONS, max_keepalive_connections=ASYNC_MAX_CONNECTIONS
            ),
            follow_redirects=False,
        )
        state.clients[key] = client
    return client


async def aclose_shared_async_clients() -> None:
    """Close the running loop's shared async clients (call before the loop ends, e.g. in tests)."""
    loop = asyncio.get_running_loop()
    with _LOOPS_LOCK:
        state = _LOOPS.pop(loop, None)
    for client in state.clients.values() if state is not None else ():
        await client.aclose()


def async_timeout(seconds: float) -> httpx.Timeout:
    """Per-request httpx timeout: ``seconds`` for connect/read/write and for a pooled connection (which the
    gate makes immediate: its client's pool is larger than the gate)."""
    import httpx

    return httpx.Timeout(seconds)


__all__ = [
    "ASYNC_MAX_CONNECTIONS",
    "ASYNC_MAX_IN_FLIGHT",
    "CONNECTION_LOOKUPS",
    "NOT_ACTED_STATUSES",
    "RequestGate",
    "RequestGateTimeout",
    "aclose_shared_async_clients",
    "async_request_gate",
    "async_timeout",
    "configuration_failure",
    "describe_client_error",
    "is_transient_status",
    "never_sent",
    "pending_cancellations",
    "quote_segment",
    "request_gate",
    "reraise_swallowed_cancellation",
    "shared_async_client",
    "tls_failure",
    "url_host",
]
