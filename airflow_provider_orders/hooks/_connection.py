"""Connection → settings: what both hooks read from an Airflow connection, and the hook base that reads
it once (sync or async) and masks its secret.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_orders.exceptions import PermanentOrdersError
from airflow_provider_orders.hooks._http import CONNECTION_LOOKUPS, async_request_gate
from airflow_provider_orders.hooks._retry import RetryPolicy
from airflow_provider_orders.version_compat import AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.providers.common.compat.sdk import Connection


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

        A thousand triggers starting together each read their connection once; the loop's gate of
        connection lookups (not either API's) lets only a few run at a time, so the loop keeps ticking.
        """
        if self._config is None:
            # common-compat picks the async lookup where it is safe (3.3.2+) and the sync one in a worker
            # thread before (the async one deadlocked there, and 3.0 has none).
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            async with async_request_gate(*CONNECTION_LOOKUPS, wait=None):
                if self._config is None:
                    conn = await get_async_connection(self._conn_id, hook=self)
                    extra = await get_async_extra_dejson(conn)
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


def mask(secret: str | None) -> None:
    """Register a secret with Airflow's secrets masker (task process and, if any, the supervisor)."""
    if secret:
        from airflow.providers.common.compat.sdk import mask_secret

        mask_secret(secret)


def mask_nowait(secret: str | None) -> None:
    """Register a secret with this process's secrets masker only, without telling the supervisor: for
    ``on_kill``, which runs in a signal handler of the thread it interrupted, where that thread may hold
    the supervisor channel's lock (e.g. in the middle of :func:`mask`). The secret is never logged; this
    keeps it out of this process's log lines should anything echo it."""
    if not secret:
        return
    if AIRFLOW_V_3_1_PLUS:
        from airflow.sdk._shared.secrets_masker import mask_secret

        mask_secret(secret)
    else:  # 3.0: the process's own masker (its public mask_secret also tells the supervisor)
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker

        _secrets_masker().add_mask(secret)


async def amask(secret: str | None) -> None:
    """Async :func:`mask`: uses the supervisor channel's async send (no deadlock inside a trigger)."""
    if not secret:
        return
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # before 3.3.2: the sync call, in a worker thread where blocking is safe
        from asgiref.sync import sync_to_async

        await sync_to_async(mask)(secret)
        return
    await amask_secret(secret)


__all__ = [
    "ConfiguredHook",
    "ConnectionSettings",
    "amask",
    "get_extra",
    "get_extra_str",
    "mask",
    "mask_nowait",
    "normalize_url",
    "parse_settings",
]
