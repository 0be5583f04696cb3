"""HTTP plumbing both hooks share: URL path segments, what a client-side failure means (sent or not,
configuration or transient), and the process-wide async clients a triggerer's event loop shares.

Heavy clients (requests, httpx) are imported inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_orders.exceptions import PermanentOrdersError

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
# Process-wide async clients: one httpx.AsyncClient per (event loop, verify_ssl), one request gate per loop
# --------------------------------------------------------------------------------------------------

#: HTTP requests (and connection lookups) one event loop runs at once; the others wait their turn in an
#: ``asyncio.Semaphore`` (O(1) per waiter, woken in FIFO order). It is what bounds a triggerer's request
#: rate (in flight / API latency): 20 at 200 ms is 100 requests/s, 1,000 triggers polling every 10 s.
ASYNC_MAX_IN_FLIGHT = 20
#: Connections of each shared ``httpx.AsyncClient`` (its pool limit), above :data:`ASYNC_MAX_IN_FLIGHT` so
#: that httpcore's own pool queue stays empty: httpcore 1.0.x re-scans every queued request against every
#: connection on each pool event (O(queued x connections), encode/httpcore#1035), which stalled the event
#: loop of a triggerer holding 1,000 deferred tasks for seconds.
ASYNC_MAX_CONNECTIONS = ASYNC_MAX_IN_FLIGHT + 4


@dataclass
class _LoopState:
    """What the hooks share within one event loop."""

    gate: asyncio.Semaphore
    clients: dict[bool, httpx.AsyncClient] = field(default_factory=dict)


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
                state = _LOOPS[loop] = _LoopState(asyncio.Semaphore(ASYNC_MAX_IN_FLIGHT))
    return state


def async_request_gate() -> asyncio.Semaphore:
    """The running loop's gate: hold it (``async with``) around every async HTTP request and connection
    lookup, never across a retry's sleep, and never while acquiring it again (no nesting).

    It bounds what one triggerer loop does at once to :data:`ASYNC_MAX_IN_FLIGHT`, however many triggers
    wake at the same moment, so no single loop iteration does more than that many requests' worth of work.
    """
    return _loop_state().gate


def shared_async_client(verify_ssl: bool) -> httpx.AsyncClient:
    """The running loop's shared ``httpx.AsyncClient`` for this TLS setting.

    A triggerer runs hundreds of triggers in one loop; a client per trigger would hold hundreds of
    connection pools and TLS contexts. Timeouts are passed per request, so one client serves every
    connection of the loop. Send through it while holding :func:`async_request_gate`.
    """
    state = _loop_state()
    client = state.clients.get(verify_ssl)
    if client is None or client.is_closed:
        import httpx

        client = httpx.AsyncClient(
            verify=verify_ssl,
            limits=httpx.Limits(
                max_connections=ASYNC_MAX_CONNECTIONS, max_keepalive_connections=ASYNC_MAX_CONNECTIONS
            ),
            follow_redirects=False,
        )
        state.clients[verify_ssl] = client
    return client


async def aclose_shared_async_clients() -> None:
    """Close the running loop's shared async clients (call before the loop ends, e.g. in tests)."""
    loop = asyncio.get_running_loop()
    with _LOOPS_LOCK:
        state = _LOOPS.pop(loop, None)
    for client in state.clients.values() if state is not None else ():
        await client.aclose()


def async_timeout(seconds: float) -> httpx.Timeout:
    """Per-request httpx timeout: ``seconds`` for connect/read/write; waiting for a pooled slot (or for the
    loop's request gate) is unbounded: other triggers hold them, and their own requests are bounded."""
    import httpx

    return httpx.Timeout(seconds, pool=None)


__all__ = [
    "ASYNC_MAX_CONNECTIONS",
    "ASYNC_MAX_IN_FLIGHT",
    "NOT_ACTED_STATUSES",
    "aclose_shared_async_clients",
    "async_request_gate",
    "async_timeout",
    "configuration_failure",
    "describe_client_error",
    "is_transient_status",
    "never_sent",
    "quote_segment",
    "shared_async_client",
    "tls_failure",
]
