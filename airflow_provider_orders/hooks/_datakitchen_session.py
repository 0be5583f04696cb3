"""DataKitchen sessions: the process-wide JWT cache, the login that fills it, and sending with the token.

One JWT per (API base URL, user, password digest) serves every hook of the process: a triggerer running
a thousand triggers logs in once. A token is renewed shortly before its ``exp`` and once more on a 401,
replaced when an answer carries a ``refreshed_token`` header, and registered with Airflow's secrets
masker the moment it arrives. The cache also remembers each user's customer name for order-run links.

Everything has a sync twin (``requests``; threads wait on a lock to log in) and an async twin (``httpx``,
the event loop's shared client and request gate; tasks of one loop wait on an ``asyncio.Lock``). Both
read answers with :mod:`~airflow_provider_orders.hooks._datakitchen_errors`: the caller decides what the
answer to its call means, this module only sends it with a valid token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_orders import __version__
from airflow_provider_orders.hooks._connection import amask, mask, mask_nowait
from airflow_provider_orders.hooks._datakitchen_errors import (
    CallFacts,
    ConnectionFacts,
    client_failure,
    login_answer,
    login_failure,
)
from airflow_provider_orders.hooks._http import async_request_gate, async_timeout, url_host
from airflow_provider_orders.hooks._retry import RetryableError

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    import httpx
    import requests

    from airflow_provider_orders.hooks._connection import ConnectionSettings

#: Renew a token this long before its ``exp`` at most (less for short-lived tokens: 10 % of the lifetime).
RENEW_AHEAD_SECONDS = 300.0

#: A token-cache key: (API base URL, username, SHA-256 hex digest of the password).
TokenKey = tuple[str, str, str]

#: The service name of DataKitchen's request gates and shared clients (:mod:`._http`).
SERVICE = "datakitchen"


def token_key(base_url: str, username: str, password: str) -> TokenKey:
    """The cache key of a connection. The password is kept as a digest, in memory only: a connection with
    a wrong password never rides on a token another connection obtained."""
    return (base_url, username, hashlib.sha256(password.encode("utf-8")).hexdigest())


class SessionFacts(ConnectionFacts, Protocol):
    """What logging in and sending need from the hook's parsed connection."""

    @property
    def key(self) -> TokenKey: ...
    @property
    def settings(self) -> ConnectionSettings: ...


class RequestFacts(CallFacts, Protocol):
    """What sending needs from the hook's request description."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str:
        """Below the API base URL, already encoded: ``/v2/...``."""
        ...

    @property
    def json(self) -> Any: ...


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it; None if unreadable."""
    parts = token.split(".")
    if len(parts) < 2:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


@dataclass(frozen=True)
class _Token:
    jwt: str = field(repr=False)
    renew_at: float | None

    @classmethod
    def issued(cls, jwt: str, now: float) -> _Token:
        exp = jwt_expiry(jwt)
        if exp is None:
            return cls(jwt, None)  # opaque token: renewed on 401 only
        margin = min(RENEW_AHEAD_SECONDS, max(1.0, (exp - now) * 0.1))
        return cls(jwt, exp - margin)

    def fresh(self, now: float) -> bool:
        return self.renew_at is None or now < self.renew_at


class TokenCache:
    """Process-wide JWTs and customer names keyed by :data:`TokenKey`, with the login locks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, _Token] = {}
        self._login_locks: dict[TokenKey, threading.Lock] = {}
        self._async_locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[TokenKey, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        self._customers: dict[TokenKey, str] = {}

    def fresh_token(self, key: TokenKey) -> str | None:
        """The cached JWT unless it is due for renewal."""
        with self._lock:
            token = self._tokens.get(key)
        if token is not None and token.fresh(time.time()):
            return token.jwt
        return None

    def peek_fresh_token(self, key: TokenKey) -> str | None:
        """:meth:`fresh_token` without taking the cache's lock (one dict read, atomic in CPython): for
        code that may run while the interrupted code of its own thread holds that lock (``on_kill``)."""
        token = self._tokens.get(key)
        if token is not None and token.fresh(time.time()):
            return token.jwt
        return None

    def current(self, key: TokenKey) -> str | None:
        """The cached JWT, fresh or not."""
        with self._lock:
            token = self._tokens.get(key)
        return token.jwt if token is not None else None

    def put(self, key: TokenKey, jwt: str, *, blocking: bool = True) -> None:
        """Cache ``jwt``; with ``blocking=False`` skip caching when the lock is taken (harmless: a later
        caller logs in again) rather than wait for it."""
        token = _Token.issued(jwt, time.time())
        if not self._lock.acquire(blocking=blocking):
            return
        try:
            self._tokens[key] = token
        finally:
            self._lock.release()

    def discard(self, key: TokenKey, jwt: str) -> None:
        """Forget ``jwt`` unless another caller already replaced it."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.jwt == jwt:
                del self._tokens[key]

    def login_lock(self, key: TokenKey) -> threading.Lock:
        with self._lock:
            return self._login_locks.setdefault(key, threading.Lock())

    def login_lock_nowait(self, key: TokenKey) -> threading.Lock:
        """:meth:`login_lock` without taking the cache's lock (``dict.setdefault`` with a tuple-of-str key
        is atomic in CPython)."""
        return self._login_locks.setdefault(key, threading.Lock())

    def async_login_lock(self, key: TokenKey) -> asyncio.Lock:
        """The running loop's login lock for ``key`` (locks of closed loops are dropped)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for closed in [lp for lp in self._async_locks if lp.is_closed()]:
                del self._async_locks[closed]
            return self._async_locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())

    def customer(self, key: TokenKey) -> str | None:
        with self._lock:
            return self._customers.get(key)

    def set_customer(self, key: TokenKey, customer: str) -> None:
        with self._lock:
            self._customers[key] = customer

    def clear(self) -> None:
        """Forget every token and cached customer (tests; what a new process starts with)."""
        with self._lock:
            self._tokens.clear()
            self._customers.clear()


#: The process's token cache.
TOKENS = TokenCache()


# --------------------------------------------------------------------------------------------------
# Login
# --------------------------------------------------------------------------------------------------


def _login_url(conn: SessionFacts) -> str:
    return f"{conn.base_url}/v2/login"


def _credentials(conn: SessionFacts) -> dict[str, str]:
    return {"username": conn.username, "password": conn.password}


def _logged_in(conn: SessionFacts, token: str, log: logging.Logger | Any) -> str:
    """Cache a new (already masked) token."""
    TOKENS.put(conn.key, token)
    log.info("Logged in to DataKitchen at %s as %r", conn.base_url, conn.username)
    return token


def get_token(conn: SessionFacts, session: requests.Session, log: logging.Logger | Any) -> str:
    """A fresh JWT for ``conn``: the cached one, or one from a login (one thread logs in, others wait).

    :raises RetryableError: the login failed transiently.
    :raises PermanentOrdersError: the credentials were refused, or the connection is misconfigured.
    """
    token = TOKENS.fresh_token(conn.key)
    if token:
        return token
    with TOKENS.login_lock(conn.key):
        token = TOKENS.fresh_token(conn.key)
        if token:
            return token
        import requests

        try:
            response = session.post(_login_url(conn), data=_credentials(conn), timeout=conn.settings.timeout)
        except requests.RequestException as exc:
            raise login_failure(conn, exc) from exc
        token = login_answer(conn, response.status_code, response.headers, response.text)
        mask(token)
        return _logged_in(conn, token, log)


async def aget_token(conn: SessionFacts, client: httpx.AsyncClient, log: logging.Logger | Any) -> str:
    """Async :func:`get_token`: one task of the loop logs in (holding the loop's request gate)."""
    token = TOKENS.fresh_token(conn.key)
    if token:
        return token
    async with TOKENS.async_login_lock(conn.key):
        token = TOKENS.fresh_token(conn.key)
        if token:
            return token
        return await _alogin(conn, client, log, conn.settings.timeout)


async def _alogin(
    conn: SessionFacts, client: httpx.AsyncClient, log: logging.Logger | Any, timeout: float
) -> str:
    """One async login through the host's request gate (waiting for it at most ``timeout``)."""
    import httpx

    try:
        async with _gate(conn, timeout):
            response = await client.post(
                _login_url(conn), data=_credentials(conn), timeout=async_timeout(timeout)
            )
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise login_failure(conn, exc) from exc
    token = login_answer(conn, response.status_code, response.headers, response.text)
    await amask(token)
    return _logged_in(conn, token, log)


def _gate(conn: SessionFacts, wait: float | None) -> Any:
    """A slot of the running loop's request gate of ``conn``'s host."""
    return async_request_gate(SERVICE, url_host(conn.base_url), wait=wait)


# --------------------------------------------------------------------------------------------------
# Sending with the token
# --------------------------------------------------------------------------------------------------


def _send(
    conn: SessionFacts,
    call: RequestFacts,
    session: requests.Session,
    token: str,
    timeout: float | tuple[float, float] | None = None,
) -> requests.Response:
    import requests

    try:
        return session.request(
            call.method,
            conn.base_url + call.path,
            json=call.json,
            headers={"Authorization": f"Bearer {token}"},
            timeout=conn.settings.timeout if timeout is None else timeout,
        )
    except requests.RequestException as exc:
        raise client_failure(conn, call, exc) from exc


def send(
    conn: SessionFacts, call: RequestFacts, session: requests.Session, log: logging.Logger | Any
) -> requests.Response:
    """One attempt of ``call`` with a fresh token; after a 401 (expired or revoked: the server did not act)
    log in again once and send it again. A token the answer hands over (``refreshed_token``) replaces the
    cached one. The answer is returned whatever its status.

    :raises RetryableError | PermanentOrdersError: the login failed, or sending did (see
        :func:`~airflow_provider_orders.hooks._datakitchen_errors.client_failure`).
    """
    token = get_token(conn, session, log)
    response = _send(conn, call, session, token)
    if response.status_code == 401:
        TOKENS.discard(conn.key, token)
        log.info("DataKitchen answered 401 to the request to %s; logging in again", call.action)
        response = _send(conn, call, session, get_token(conn, session, log))
    refreshed = _refreshed_token(conn.key, response.headers)
    if refreshed:
        mask(refreshed)
        TOKENS.put(conn.key, refreshed)
    return response


async def _asend(
    conn: SessionFacts,
    call: RequestFacts,
    client: httpx.AsyncClient,
    token: str,
    timeout: float | None = None,
) -> httpx.Response:
    """One request through the host's request gate; ``timeout`` (default: the connection's) bounds the
    wait for a slot and each phase of the request."""
    import httpx

    timeout = conn.settings.timeout if timeout is None else timeout
    try:
        async with _gate(conn, timeout):
            return await client.request(
                call.method,
                conn.base_url + call.path,
                json=call.json,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                    "User-Agent": f"airflow-provider-orders/{__version__}",
                },
                timeout=async_timeout(timeout),
            )
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise client_failure(conn, call, exc) from exc


async def asend(
    conn: SessionFacts, call: RequestFacts, client: httpx.AsyncClient, log: logging.Logger | Any
) -> httpx.Response:
    """Async :func:`send` through the loop's shared ``client``, holding the request gate of the host while
    sending (async masking: no deadlock inside a trigger)."""
    token = await aget_token(conn, client, log)
    response = await _asend(conn, call, client, token)
    if response.status_code == 401:
        TOKENS.discard(conn.key, token)
        log.info("DataKitchen answered 401 to the request to %s; logging in again", call.action)
        response = await _asend(conn, call, client, await aget_token(conn, client, log))
    refreshed = _refreshed_token(conn.key, response.headers)
    if refreshed:
        await amask(refreshed)
        TOKENS.put(conn.key, refreshed)
    return response


# --------------------------------------------------------------------------------------------------
# On kill: one attempt that waits on no lock and ends by a deadline
# --------------------------------------------------------------------------------------------------

#: Below this many seconds left, an on-kill attempt does not start another request.
MIN_REQUEST_SECONDS = 0.05


def time_left(deadline: float, what: str) -> float:
    """Seconds until ``deadline`` (``time.monotonic()``); RetryableError when too few are left for ``what``."""
    left = deadline - time.monotonic()
    if left < MIN_REQUEST_SECONDS:
        raise RetryableError(f"no time was left in the on-kill budget to {what}")
    return left


def _kill_timeout(conn: SessionFacts, deadline: float, what: str) -> tuple[float, float]:
    """(connect, read) timeouts of one sync request that together end by ``deadline``."""
    half = min(conn.settings.timeout, time_left(deadline, what)) / 2
    return (half, half)


def get_token_nowait(
    conn: SessionFacts,
    session: requests.Session,
    log: logging.Logger | Any,
    *,
    deadline: float,
    stale: str | None = None,
) -> str:
    """:func:`get_token` for ``on_kill``, which Airflow runs in a signal handler of the thread it
    interrupted: that code may hold the login lock (or the cache's lock) for good. So: the cached token
    when fresh (and not ``stale``), else a login, under the login lock only if it is free right now — a
    second, concurrent login is harmless. The login ends by ``deadline``; the token is masked in this
    process only (telling the supervisor could wait on the channel the interrupted code holds).
    """
    token = TOKENS.peek_fresh_token(conn.key)
    if token and token != stale:
        return token
    lock = TOKENS.login_lock_nowait(conn.key)
    held = lock.acquire(blocking=False)
    try:
        if not held:
            log.info(
                "A login to DataKitchen at %s is in progress (perhaps the interrupted one): logging in "
                "separately",
                conn.base_url,
            )
        else:
            token = TOKENS.peek_fresh_token(conn.key)
            if token and token != stale:
                return token
        import requests

        timeout = _kill_timeout(conn, deadline, "log in")
        try:
            response = session.post(_login_url(conn), data=_credentials(conn), timeout=timeout)
        except requests.RequestException as exc:
            raise login_failure(conn, exc) from exc
        token = login_answer(conn, response.status_code, response.headers, response.text)
        mask_nowait(token)
        TOKENS.put(conn.key, token, blocking=False)
        log.info("Logged in to DataKitchen at %s as %r", conn.base_url, conn.username)
        return token
    finally:
        if held:
            lock.release()


def send_nowait(
    conn: SessionFacts,
    call: RequestFacts,
    session: requests.Session,
    log: logging.Logger | Any,
    *,
    deadline: float,
) -> requests.Response:
    """:func:`send` for ``on_kill``: :func:`get_token_nowait`, every request's timeouts cut so that the
    attempt ends by ``deadline``, one re-login after a 401 if time is left; no lock is waited on."""
    token = get_token_nowait(conn, session, log, deadline=deadline)
    response = _send(conn, call, session, token, _kill_timeout(conn, deadline, call.action))
    if response.status_code == 401:
        log.info("DataKitchen answered 401 to the request to %s; logging in again", call.action)
        token = get_token_nowait(conn, session, log, deadline=deadline, stale=token)
        response = _send(conn, call, session, token, _kill_timeout(conn, deadline, call.action))
    refreshed = _refreshed_token(conn.key, response.headers)
    if refreshed:
        mask_nowait(refreshed)
        TOKENS.put(conn.key, refreshed, blocking=False)
    return response


async def asend_nowait(
    conn: SessionFacts,
    call: RequestFacts,
    client: httpx.AsyncClient,
    log: logging.Logger | Any,
    *,
    deadline: float,
) -> httpx.Response:
    """Async :func:`send_nowait` (a trigger's ``on_kill``): the loop's login lock is used only when it is
    free (another trigger's login may be stuck on a hung server); the wait for the host's request gate and
    each request end by ``deadline``."""

    async def token_for(stale: str | None) -> str:
        token = TOKENS.peek_fresh_token(conn.key)
        if token and token != stale:
            return token
        lock = TOKENS.async_login_lock(conn.key)
        if lock.locked():
            log.info("A login to DataKitchen at %s is in progress: logging in separately", conn.base_url)
            return await _alogin(conn, client, log, _async_kill_timeout(conn, deadline, "log in"))
        async with lock:
            token = TOKENS.peek_fresh_token(conn.key)
            if token and token != stale:
                return token
            return await _alogin(conn, client, log, _async_kill_timeout(conn, deadline, "log in"))

    token = await token_for(None)
    response = await _asend(conn, call, client, token, _async_kill_timeout(conn, deadline, call.action))
    if response.status_code == 401:
        log.info("DataKitchen answered 401 to the request to %s; logging in again", call.action)
        token = await token_for(token)
        response = await _asend(conn, call, client, token, _async_kill_timeout(conn, deadline, call.action))
    refreshed = _refreshed_token(conn.key, response.headers)
    if refreshed:
        await amask(refreshed)
        TOKENS.put(conn.key, refreshed)
    return response


def _async_kill_timeout(conn: SessionFacts, deadline: float, what: str) -> float:
    """The timeout of one async on-kill request (the gate wait, and each phase of the request, get it):
    a third of the time left, so that waiting for the gate, connecting and reading end by ``deadline``."""
    return min(conn.settings.timeout, time_left(deadline, what)) / 3


def _refreshed_token(key: TokenKey, headers: Mapping[str, str]) -> str | None:
    """A new JWT from an answer's ``refreshed_token`` header (not yet masked nor cached), if it has one."""
    token = (headers.get("refreshed_token") or headers.get("refreshed-token") or "").strip().strip('"')
    if token and token != TOKENS.current(key):
        return token
    return None


__all__ = [
    "MIN_REQUEST_SECONDS",
    "RENEW_AHEAD_SECONDS",
    "SERVICE",
    "TOKENS",
    "RequestFacts",
    "SessionFacts",
    "TokenCache",
    "TokenKey",
    "aget_token",
    "asend",
    "asend_nowait",
    "get_token",
    "get_token_nowait",
    "jwt_expiry",
    "send",
    "send_nowait",
    "time_left",
    "token_key",
]
