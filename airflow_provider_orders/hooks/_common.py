"""What both hooks share: connection-extras parsing, URL handling, secret masking, error triage helpers
and the process-wide async HTTP clients.

Heavy clients (requests, httpx) are imported inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.sdk import BaseHook

from airflow_provider_orders.exceptions import PermanentOrdersError
from airflow_provider_orders.hooks._retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx
    from airflow.sdk import Connection

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_DELAY = 1.0

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class HookConfig(Protocol):
    """A hook's parsed connection: whatever it holds, it names the one secret to mask."""

    @property
    def secret(self) -> str: ...


ConfigT = TypeVar("ConfigT", bound=HookConfig)


class ConfiguredHook(BaseHook, Generic[ConfigT]):
    """Base of both hooks: reads the connection once (sync or async), parses it, masks its secret.

    Subclasses set ``conn_name_attr`` as every Airflow hook does, and implement :meth:`_parse_config`.
    """

    conn_name_attr: str
    _config: ConfigT | None = None

    def _parse_config(self, conn: Connection, extra: Mapping[str, Any], conn_id: str) -> ConfigT:
        raise NotImplementedError

    @property
    def _conn_id(self) -> str:
        return str(getattr(self, self.conn_name_attr))

    def _get_config(self) -> ConfigT:
        if self._config is None:
            conn = self.get_connection(self._conn_id)
            config = self._parse_config(conn, conn.extra_dejson, self._conn_id)
            mask(config.secret)
            self._config = config
        return self._config

    async def _aget_config(self) -> ConfigT:
        """The async twin for triggers: the connection is read with the async API.

        A thousand triggers starting together each read their connection once; the loop's request gate
        lets only a few lookups run at a time, so the loop keeps ticking meanwhile.
        """
        if self._config is None:
            async with async_request_gate():
                if self._config is None:
                    conn = await self.aget_connection(self._conn_id)
                    extra = await conn.aextra_dejson()
                    config = self._parse_config(conn, extra, self._conn_id)
                    await amask(config.secret)
                    self._config = config
        return self._config


def get_extra(extra: Mapping[str, Any], key: str, conn_type: str) -> Any:
    """An extra by its plain name, or by the ``extra__<conn_type>__<key>`` form older UIs stored.

    Empty strings count as unset (a cleared form field).
    """
    for name in (key, f"extra__{conn_type}__{key}"):
        value = extra.get(name)
        if value is not None and value != "":
            return value
    return None


def get_extra_str(extra: Mapping[str, Any], key: str, conn_type: str) -> str | None:
    value = get_extra(extra, key, conn_type)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _bad_extra(conn_id: str, key: str, value: Any, expected: str) -> PermanentOrdersError:
    return PermanentOrdersError(
        f"Connection '{conn_id}': extra '{key}' must be {expected}, got {value!r}. "
        "Fix the connection's extras."
    )


def _as_float(conn_id: str, key: str, value: Any, *, minimum: float) -> float:
    if isinstance(value, bool):
        raise _bad_extra(conn_id, key, value, "a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _bad_extra(conn_id, key, value, "a number") from None
    if number < minimum:
        raise _bad_extra(conn_id, key, value, f"a number >= {minimum:g}")
    return number


def _as_int(conn_id: str, key: str, value: Any, *, minimum: int) -> int:
    number = _as_float(conn_id, key, value, minimum=minimum)
    if number != int(number):
        raise _bad_extra(conn_id, key, value, "a whole number")
    return int(number)


def _as_bool(conn_id: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad_extra(conn_id, key, value, "true or false")


@dataclass(frozen=True)
class ConnectionSettings:
    """The extras both connection types share.

    :param timeout: seconds, connect and read timeout of every HTTP request (extra ``timeout``, default 60).
    :param verify_ssl: verify TLS certificates (extra ``verify_ssl``, default true).
    :param max_retries: extra attempts for a transient failure inside one call (extra ``max_retries``, 5).
    :param retry_delay: base of the exponential backoff in seconds (extra ``retry_delay``, 1.0).
    """

    timeout: float = DEFAULT_TIMEOUT
    verify_ssl: bool = True
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_delay: float = DEFAULT_RETRY_DELAY

    @functools.cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, retry_delay=self.retry_delay)


def parse_settings(extra: Mapping[str, Any], *, conn_id: str, conn_type: str) -> ConnectionSettings:
    """Read ``timeout`` / ``verify_ssl`` / ``max_retries`` / ``retry_delay`` from a connection's extras.

    Values may be JSON numbers/booleans or the strings a form stores; a wrong value fails with a message
    naming the connection and the extra.
    """
    settings = ConnectionSettings()
    timeout = get_extra(extra, "timeout", conn_type)
    verify = get_extra(extra, "verify_ssl", conn_type)
    max_retries = get_extra(extra, "max_retries", conn_type)
    retry_delay = get_extra(extra, "retry_delay", conn_type)
    return ConnectionSettings(
        timeout=settings.timeout
        if timeout is None
        else _as_float(conn_id, "timeout", timeout, minimum=0.001),
        verify_ssl=settings.verify_ssl if verify is None else _as_bool(conn_id, "verify_ssl", verify),
        max_retries=settings.max_retries
        if max_retries is None
        else _as_int(conn_id, "max_retries", max_retries, minimum=0),
        retry_delay=settings.retry_delay
        if retry_delay is None
        else _as_float(conn_id, "retry_delay", retry_delay, minimum=0.0),
    )


def normalize_url(
    host: str | None, *, default: str, port: int | None = None, default_path: str = "", conn_id: str = ""
) -> str:
    """Connection host → absolute URL without a trailing slash.

    Empty → ``default``; no scheme → ``https://``; a connection ``port`` is added when the host has none;
    ``default_path`` is used when the host has no path (e.g. ``/graphql``).
    """
    text = (host or "").strip()
    if not text:
        return default.rstrip("/")
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    try:
        host_port = parts.port
    except ValueError as exc:
        raise PermanentOrdersError(
            f"Connection '{conn_id}': host {text!r} is not a usable URL ({exc})."
        ) from None
    if not parts.hostname:
        raise PermanentOrdersError(
            f"Connection '{conn_id}': host {text!r} is not a usable URL (no host name)."
        )
    netloc = parts.netloc
    if port and host_port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if not path and default_path:
        path = default_path
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


def quote_segment(segment: Any) -> str:
    """Percent-encode one URL path segment: ``my kitchen/x`` → ``my%20kitchen%2Fx``."""
    return quote(str(segment), safe="")


def mask(secret: str | None) -> None:
    """Register a secret with Airflow's secrets masker (task process and, if any, the supervisor)."""
    if secret:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)


async def amask(secret: str | None) -> None:
    """Async :func:`mask`: uses the supervisor channel's async send (no deadlock inside a trigger)."""
    if secret:
        from airflow.sdk.log import amask_secret

        await amask_secret(secret)


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
    "ConnectionSettings",
    "aclose_shared_async_clients",
    "amask",
    "async_request_gate",
    "async_timeout",
    "configuration_failure",
    "describe_client_error",
    "get_extra",
    "get_extra_str",
    "mask",
    "never_sent",
    "normalize_url",
    "parse_settings",
    "quote_segment",
    "shared_async_client",
    "tls_failure",
]
