"""Hook for the DataKitchen Automation API (REST).

Connection (type ``datakitchen``): host = API base URL (empty → ``https://cloud.datakitchen.io``, no
scheme → https), login = username, password = password. Extras: ``timeout``, ``verify_ssl``,
``max_retries``, ``retry_delay`` (shared with ezCater) and, for the order-run link, ``web_app_url``,
``customer`` and ``link_style`` (``hash`` | ``dk``).

Authentication: ``POST /v2/login`` once, then ``Authorization: Bearer <jwt>`` on every call. The JWT is
shared by every hook of the process that uses the same host and user (a triggerer running a thousand
triggers logs in once), renewed shortly before its ``exp`` and once more on a 401, and replaced when an
answer carries a ``refreshed_token`` header. It is registered with Airflow's secrets masker the moment it
arrives. There is no ``validatetoken`` round trip before calls.

Retries: reads and stops are retried on every transient failure. Order creation is not idempotent: it is
retried only when the server certainly did not act (connection never established, 429, 503, 408, or an
expired token); any other failure after sending raises :class:`OrderOutcomeUnknownError` saying how to
look for the order that may exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import json
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_orders import __version__
from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    NotAuthorizedError,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrdersProviderError,
    PermanentOrdersError,
    RequestRejectedError,
)
from airflow_provider_orders.hooks._connection import (
    ConfiguredHook,
    ConnectionSettings,
    amask,
    get_extra_str,
    mask,
    normalize_url,
    parse_settings,
)
from airflow_provider_orders.hooks._http import (
    async_request_gate,
    async_timeout,
    configuration_failure,
    describe_client_error,
    never_sent,
    quote_segment,
    shared_async_client,
)
from airflow_provider_orders.hooks._retry import RetryableError, parse_retry_after

if TYPE_CHECKING:
    import httpx
    import requests
    from airflow.sdk import Connection

DEFAULT_HOST = "https://cloud.datakitchen.io"
#: The servings endpoint returns 10 runs unless told otherwise; runs come newest first.
DEFAULT_SERVINGS_COUNT = 100
LINK_STYLES = ("hash", "dk")
#: Renew a token this long before its ``exp`` at most (less for short-lived tokens: 10 % of the lifetime).
RENEW_AHEAD_SECONDS = 300.0
#: DataKitchen statuses after which the server certainly did not act on the request.
_NOT_ACTED_STATUSES = frozenset({408, 429, 503})


# --------------------------------------------------------------------------------------------------
# Tokens: one per (API base URL, user) in the whole process
# --------------------------------------------------------------------------------------------------


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


_Key = tuple[str, str, str]


class _TokenCache:
    """Process-wide JWTs keyed by (base URL, username, password fingerprint), with login locks.

    The password fingerprint keeps a connection with a wrong password from riding on a token another
    connection obtained; it is a SHA-256 digest kept in memory only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[_Key, _Token] = {}
        self._login_locks: dict[_Key, threading.Lock] = {}
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, asyncio.Lock]]
        self._async_locks = weakref.WeakKeyDictionary()
        self._customers: dict[_Key, str] = {}

    def fresh_token(self, key: _Key) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
        if token is not None and token.fresh(time.time()):
            return token.jwt
        return None

    def current(self, key: _Key) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
        return token.jwt if token is not None else None

    def put(self, key: _Key, jwt: str) -> None:
        token = _Token.issued(jwt, time.time())
        with self._lock:
            self._tokens[key] = token

    def discard(self, key: _Key, jwt: str) -> None:
        """Forget ``jwt`` unless another caller already replaced it."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.jwt == jwt:
                del self._tokens[key]

    def login_lock(self, key: _Key) -> threading.Lock:
        with self._lock:
            return self._login_locks.setdefault(key, threading.Lock())

    def async_login_lock(self, key: _Key) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._lock:
            for closed in [lp for lp in self._async_locks if lp.is_closed()]:
                del self._async_locks[closed]
            return self._async_locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())

    def customer(self, key: _Key) -> str | None:
        with self._lock:
            return self._customers.get(key)

    def set_customer(self, key: _Key, customer: str) -> None:
        with self._lock:
            self._customers[key] = customer

    def clear(self) -> None:
        """Forget every token and cached customer (tests)."""
        with self._lock:
            self._tokens.clear()
            self._customers.clear()


_TOKENS = _TokenCache()


# --------------------------------------------------------------------------------------------------
# Connection → configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    conn_id: str
    base_url: str
    username: str
    password: str = field(repr=False)
    settings: ConnectionSettings
    web_app_url: str
    customer: str | None
    link_style: str

    @functools.cached_property
    def key(self) -> _Key:
        """The token-cache key (computed once per configuration: it is read on every request)."""
        digest = hashlib.sha256(self.password.encode("utf-8")).hexdigest()
        return (self.base_url, self.username, digest)

    @property
    def secret(self) -> str:
        return self.password

    @classmethod
    def from_connection(cls, conn: Connection, extra: Mapping[str, Any], conn_id: str) -> _Config:
        ctype = DataKitchenHook.conn_type
        base_url = normalize_url(conn.host, default=DEFAULT_HOST, port=conn.port, conn_id=conn_id)
        username = (conn.login or "").strip()
        password = conn.password or ""
        if not username or not password:
            missing = "login (username)" if not username else "password"
            raise AuthenticationFailedError(
                f"Connection '{conn_id}' has no {missing}: set the DataKitchen username and password."
            )
        link_style = (get_extra_str(extra, "link_style", ctype) or "hash").lower()
        if link_style not in LINK_STYLES:
            raise PermanentOrdersError(
                f"Connection '{conn_id}': extra 'link_style' must be 'hash' or 'dk', got {link_style!r}."
            )
        web = get_extra_str(extra, "web_app_url", ctype)
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            username=username,
            password=password,
            settings=parse_settings(extra, conn_id=conn_id, conn_type=ctype),
            web_app_url=normalize_url(web, default=base_url, conn_id=conn_id),
            customer=get_extra_str(extra, "customer", ctype),
            link_style=link_style,
        )


@dataclass(frozen=True)
class _Call:
    """One API call: what to send, and how to describe it to a DAG author."""

    method: str
    path: str
    what: str
    json: Any = None
    creates_order: bool = False
    kitchen: str = ""
    subject: str = ""


def _path(*segments: Any) -> str:
    for segment in segments:
        if str(segment) in ("", ".", ".."):
            # Percent-encoding leaves these alone, and HTTP clients and servers resolve them as
            # "this" / "parent" directory: the request would silently go to another route.
            raise RequestRejectedError(
                f"{str(segment)!r} is not a usable DataKitchen kitchen, recipe, variation or id: an "
                "empty, '.' or '..' name would change the request's URL."
            )
    return "/v2/" + "/".join(quote_segment(s) for s in segments)


def _check_parameters(parameters: Any, subject: str) -> dict[str, Any]:
    """The variable overrides as a JSON-ready dict, or a RequestRejectedError naming what is wrong.

    Checked before anything is sent, so a bad value is a clear permanent error, never an order whose
    outcome looks unknown.
    """
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise RequestRejectedError(
            f"The parameters for {subject} must be a dict of variable overrides "
            f"(name → value), got {type(parameters).__name__}."
        )
    for name, value in parameters.items():
        if not isinstance(name, str):
            raise RequestRejectedError(
                f"Variable override names in the parameters for {subject} must be strings, got {name!r}."
            )
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RequestRejectedError(
                f"Variable override {name!r} in the parameters for {subject} cannot be sent as JSON: {exc}."
            ) from None
    return dict(parameters)


def _krv(kitchen: str, recipe: str, variation: str) -> str:
    return f"kitchen '{kitchen}', recipe '{recipe}', variation '{variation}'"


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _format_detail(detail: Any) -> str:
    """DataKitchen ``detail``: a string, or a list of ``{severity, file, description}`` issues."""
    if detail is None or detail == "":
        return ""
    if isinstance(detail, list):
        items = []
        for issue in detail:
            if isinstance(issue, dict):
                where = " ".join(str(issue[k]) for k in ("severity", "file") if issue.get(k))
                desc = str(issue.get("description") or issue.get("message") or "")
                items.append(f"{where}: {desc}" if where else desc)
            else:
                items.append(str(issue))
        return "; ".join(i for i in items if i)
    if isinstance(detail, dict):
        return json.dumps(detail, sort_keys=True)
    return str(detail)


def _api_error(body: Any, text: str) -> tuple[str | None, Any, str | None]:
    """(message, detail, code) from any of DataKitchen's error shapes, or the raw text."""
    message: str | None = None
    detail: Any = None
    code: str | None = None
    if isinstance(body, dict):
        code = str(body["code"]) if body.get("code") else None
        outer = body.get("message")
        err = body.get("error")
        if isinstance(outer, dict):
            err = outer.get("error", err)
            if err is None and outer.get("message"):
                message = str(outer["message"])
        elif isinstance(outer, str) and outer:
            message = outer
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("description") or message or "") or None
            detail = err.get("detail")
        elif isinstance(err, str) and err:
            message = err if message is None else f"{message}: {err}"
        if message is None and body.get("description"):
            message = str(body["description"])
    elif text and text.strip():
        message = text.strip()[:500]
    return message, detail, code


class DataKitchenHook(ConfiguredHook[_Config]):
    """Talk to the DataKitchen Automation API: submit orders, read and stop order runs.

    :param datakitchen_conn_id: Airflow connection of type ``datakitchen``.
    """

    conn_name_attr = "datakitchen_conn_id"
    default_conn_name = "datakitchen_default"
    conn_type = "datakitchen"
    hook_name = "DataKitchen"

    def __init__(
        self, datakitchen_conn_id: str = default_conn_name, *, logger_name: str | None = None
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.datakitchen_conn_id = datakitchen_conn_id
        self._config: _Config | None = None
        self._session: requests.Session | None = None

    # ---------------------------------------------------------------- connection and session

    def _parse_config(self, conn: Connection, extra: Mapping[str, Any], conn_id: str) -> _Config:
        return _Config.from_connection(conn, extra, conn_id)

    @property
    def base_url(self) -> str:
        """The API base URL this hook talks to (from the connection)."""
        return self._get_config().base_url

    def get_conn(self) -> requests.Session:
        """The hook's ``requests.Session`` (one per hook; the JWT is added per request)."""
        if self._session is None:
            import requests

            config = self._get_config()
            session = requests.Session()
            session.verify = config.settings.verify_ssl
            session.headers["Accept"] = "application/json"
            session.headers["User-Agent"] = f"airflow-provider-orders/{__version__}"
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the HTTP session (the shared JWT stays cached for other hooks)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # ---------------------------------------------------------------- public API

    def create_order(
        self, kitchen: str, recipe: str, variation: str, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Submit an order for a recipe variation (``PUT /v2/order/create/{kitchen}/{recipe}/{variation}``).

        :return: the API's answer with ``order_id`` always set (from ``order_id`` or ``serving_hid``) and
            ``variable_overrides``.
        :raises RequestRejectedError: 400/412/417 (e.g. unknown variation), quoting the API's message.
        :raises OrderOutcomeUnknownError: the request may have reached the server but its answer was lost.
        """
        call = _Call(
            "PUT",
            _path("order", "create", kitchen, recipe, variation),
            what=f"create an order for {_krv(kitchen, recipe, variation)}",
            json={
                "parameters": _check_parameters(parameters, _krv(kitchen, recipe, variation)),
                "schedule": "now",
            },
            creates_order=True,
            kitchen=kitchen,
            subject=_krv(kitchen, recipe, variation),
        )
        body = self._request(call)
        config = self._get_config()
        if not isinstance(body, dict):
            raise OrderOutcomeUnknownError(
                self._unknown_outcome(config, call, "DataKitchen's answer was not a JSON object")
            )
        status = body.get("status")
        if body.get("error") or (status is not None and str(status).lower() != "success"):
            message, detail, code = _api_error(body, "")
            raise RequestRejectedError(
                f"DataKitchen did not create the order for {_krv(kitchen, recipe, variation)} "
                f"(status {status!r}){self._quote(config, message, detail)}",
                api_message=message,
                api_detail=detail,
                http_status=200,
                code=code,
            )
        order_id = body.get("order_id") or body.get("serving_hid")
        if not order_id:
            raise OrderOutcomeUnknownError(
                self._unknown_outcome(config, call, "DataKitchen answered success without an order id")
            )
        result = dict(body)
        result["order_id"] = str(order_id)
        result.setdefault("variable_overrides", {})
        self.log.info(
            "Created DataKitchen order %s for %s", result["order_id"], _krv(kitchen, recipe, variation)
        )
        return result

    def get_order_runs(
        self, kitchen: str, order_id: str, *, count: int = DEFAULT_SERVINGS_COUNT
    ) -> list[dict[str, Any]]:
        """The runs of an order, newest first; ``[]`` until the first run starts."""
        return self._runs(self._request(self._runs_call(kitchen, order_id, count)))

    def get_order_run(self, kitchen: str, order_run_id: str) -> dict[str, Any]:
        """One order run (``servings[0]`` of ``POST /v2/order/details/{kitchen}``): hid, status, ..."""
        return self._run(kitchen, order_run_id, self._request(self._run_call(kitchen, order_run_id)))

    def stop_order_run(self, kitchen: str, order_run_id: str) -> dict[str, Any]:
        """Stop an order run (``PUT /v2/serving/stop/{order_run_id}``)."""
        call = _Call(
            "PUT",
            _path("serving", "stop", order_run_id),
            what=f"stop order run '{order_run_id}' in kitchen '{kitchen}'",
            json={"serving_hid": order_run_id, "kitchen_name": kitchen},
            kitchen=kitchen,
        )
        body = self._request(call)
        self.log.info("Asked DataKitchen to stop order run %s in kitchen %r", order_run_id, kitchen)
        return body if isinstance(body, dict) else {}

    def stop_order(self, kitchen: str, order_id: str) -> dict[str, Any]:
        """Stop an order and its schedule (``PUT /v2/order/stop/{order_id}``)."""
        call = _Call(
            "PUT",
            _path("order", "stop", order_id),
            what=f"stop order '{order_id}' in kitchen '{kitchen}'",
            json={"serving_book_hid": order_id, "kitchen_name": kitchen},
            kitchen=kitchen,
        )
        body = self._request(call)
        self.log.info("Asked DataKitchen to stop order %s in kitchen %r", order_id, kitchen)
        return body if isinstance(body, dict) else {}

    def get_user_info(self) -> dict[str, Any]:
        """``GET /v2/userinfo``: who the connection's user is (``customer_git_name``, ...)."""
        body = self._request(_Call("GET", _path("userinfo"), what="read the user's info"))
        return body if isinstance(body, dict) else {}

    def order_run_url(self, kitchen: str, order_run_id: str | None) -> str | None:
        """The web-app URL of an order run, or None when it cannot be built (never raises for the API).

        Uses extras ``web_app_url`` (default: API base URL), ``customer`` (default: looked up once through
        ``/v2/userinfo``) and ``link_style``.
        """
        if not order_run_id:
            return None
        config = self._get_config()
        customer = config.customer or _TOKENS.customer(config.key)
        if not customer:
            try:
                customer = str(self.get_user_info().get("customer_git_name") or "") or None
            except OrdersProviderError as exc:
                self.log.warning("No DataKitchen order run link: could not look up the customer: %s", exc)
                return None
            if not customer:
                self.log.warning("No DataKitchen order run link: /v2/userinfo names no customer_git_name")
                return None
            _TOKENS.set_customer(config.key, customer)
        tail = "/".join(quote_segment(s) for s in (customer, kitchen, "runs", order_run_id))
        prefix = "#/orders" if config.link_style == "hash" else "dk/orders"
        return f"{config.web_app_url}/{prefix}/{tail}"

    def test_connection(self) -> tuple[bool, str]:
        """Log in and read ``/v2/userinfo``; the message never contains a secret."""
        try:
            info = self.get_user_info()
            config = self._get_config()
        except Exception as exc:
            return False, str(exc)
        customer = info.get("customer_git_name")
        suffix = f" (customer '{customer}')" if customer else ""
        return True, f"Logged in to DataKitchen at {config.base_url} as '{config.username}'{suffix}."

    async def aget_order_runs(
        self, kitchen: str, order_id: str, *, count: int = DEFAULT_SERVINGS_COUNT
    ) -> list[dict[str, Any]]:
        """Async :meth:`get_order_runs` (httpx, async connection lookup) for triggers."""
        return self._runs(await self._arequest(self._runs_call(kitchen, order_id, count)))

    async def aget_order_run(self, kitchen: str, order_run_id: str) -> dict[str, Any]:
        """Async :meth:`get_order_run` for triggers."""
        return self._run(kitchen, order_run_id, await self._arequest(self._run_call(kitchen, order_run_id)))

    # ---------------------------------------------------------------- calls and their answers

    @staticmethod
    def _runs_call(kitchen: str, order_id: str, count: int) -> _Call:
        return _Call(
            "GET",
            _path("order", "servings", kitchen, order_id),
            what=f"read the runs of order '{order_id}' in kitchen '{kitchen}'",
            json={"count": count},
            kitchen=kitchen,
        )

    @staticmethod
    def _run_call(kitchen: str, order_run_id: str) -> _Call:
        return _Call(
            "POST",
            _path("order", "details", kitchen),
            what=f"read order run '{order_run_id}' in kitchen '{kitchen}'",
            json={
                "serving_hid": order_run_id,
                "logs": False,
                "servingjson": False,
                "summary": False,
                "testresults": False,
                "timingresults": False,
            },
            kitchen=kitchen,
        )

    @staticmethod
    def _runs(body: Any) -> list[dict[str, Any]]:
        servings = body.get("servings") if isinstance(body, dict) else None
        return [s for s in servings if isinstance(s, dict)] if isinstance(servings, list) else []

    @staticmethod
    def _run(kitchen: str, order_run_id: str, body: Any) -> dict[str, Any]:
        servings = body.get("servings") if isinstance(body, dict) else None
        if not isinstance(servings, list) or not servings or not isinstance(servings[0], dict):
            raise OrderNotFoundError(f"DataKitchen has no order run '{order_run_id}' in kitchen '{kitchen}'.")
        return servings[0]

    def _quote(self, config: _Config, message: str | None, detail: Any) -> str:
        """``: <API message> — <detail>``, with the password scrubbed should the API ever echo it."""
        parts = [p for p in (message, _format_detail(detail)) if p]
        if not parts:
            return ""
        text = ": " + " — ".join(parts)
        return text.replace(config.password, "***") if config.password else text

    def _unknown_outcome(self, config: _Config, call: _Call, what_happened: str) -> str:
        kitchen = quote_segment(call.kitchen)
        return (
            f"The order for {call.subject} may have been created: {what_happened}. It was not retried, "
            "because a "
            "second attempt could create a second order. Before re-running, look for it on the "
            f"DataKitchen UI's Orders page of kitchen '{call.kitchen}' or with "
            f"GET {config.base_url}/v2/order/status/{kitchen}."
        )

    def _client_failure(self, config: _Config, call: _Call, exc: BaseException) -> Exception:
        """What a requests/httpx exception means for this call."""
        permanent = configuration_failure(exc, f"DataKitchen at {config.base_url}", config.conn_id)
        if permanent is not None:
            return permanent
        described = describe_client_error(exc)
        if never_sent(exc):
            return RetryableError(f"could not connect to DataKitchen at {config.base_url} ({described})")
        if call.creates_order:
            return OrderOutcomeUnknownError(
                self._unknown_outcome(
                    config, call, f"the request was sent but no answer came back ({described})"
                )
            )
        return RetryableError(f"the connection to DataKitchen at {config.base_url} failed ({described})")

    def _interpret(
        self, config: _Config, call: _Call, status: int, headers: Mapping[str, str], text: str
    ) -> Any:
        """Map one HTTP answer to a result, a permanent error, or a RetryableError."""
        body = _json_or_none(text)
        if 200 <= status < 300:
            if body is not None:
                return body
            reason = f"DataKitchen answered HTTP {status} with a body that is not JSON"
            if call.creates_order:
                raise OrderOutcomeUnknownError(
                    self._unknown_outcome(config, call, reason), http_status=status
                )
            raise RetryableError(reason, http_status=status)
        message, detail, code = _api_error(body, text)
        quoted = self._quote(config, message, detail)
        if status in _NOT_ACTED_STATUSES or (status >= 500 and not call.creates_order):
            raise RetryableError(
                f"DataKitchen answered HTTP {status}{quoted}",
                retry_after=parse_retry_after(headers.get("Retry-After")),
                http_status=status,
                api_message=message,
            )
        errors = {"api_message": message, "api_detail": detail, "http_status": status, "code": code}
        if status >= 500:
            raise OrderOutcomeUnknownError(
                self._unknown_outcome(config, call, f"DataKitchen answered HTTP {status}{quoted}"), **errors
            )
        if status == 401:
            raise AuthenticationFailedError(
                f"DataKitchen at {config.base_url} refused the token of user '{config.username}' to "
                f"{call.what}, even right after a fresh login (HTTP 401){quoted}",
                **errors,
            )
        if status == 403:
            raise NotAuthorizedError(
                f"DataKitchen user '{config.username}' is not authorized to {call.what} (HTTP 403){quoted}",
                **errors,
            )
        if status == 404:
            raise OrderNotFoundError(f"DataKitchen found nothing to {call.what} (HTTP 404){quoted}", **errors)
        raise RequestRejectedError(
            f"DataKitchen rejected the request to {call.what} (HTTP {status}){quoted}", **errors
        )

    # ---------------------------------------------------------------- login

    def _login_answer(self, config: _Config, status: int, headers: Mapping[str, str], text: str) -> str:
        """The JWT from a login answer, or the error it means. Does not register the JWT."""
        if 200 <= status < 300:
            token = text.strip().strip('"').strip()
            if not token:
                raise AuthenticationFailedError(
                    f"DataKitchen at {config.base_url} answered the login of user '{config.username}' "
                    f"with HTTP {status} but no token.",
                    http_status=status,
                )
            return token
        message, detail, code = _api_error(_json_or_none(text), text)
        quoted = self._quote(config, message, detail)
        if status in _NOT_ACTED_STATUSES or status >= 500:
            raise RetryableError(
                f"DataKitchen login answered HTTP {status}{quoted}",
                retry_after=parse_retry_after(headers.get("Retry-After")),
                http_status=status,
                api_message=message,
            )
        errors = {"api_message": message, "api_detail": detail, "http_status": status, "code": code}
        if status in (400, 401, 403):
            raise AuthenticationFailedError(
                f"DataKitchen at {config.base_url} refused the credentials of user '{config.username}' "
                f"(HTTP {status}){quoted}. Check the login and password of connection '{config.conn_id}'.",
                **errors,
            )
        raise RequestRejectedError(
            f"DataKitchen login at {config.base_url}/v2/login answered HTTP {status}{quoted}; is the "
            f"host of connection '{config.conn_id}' the DataKitchen API base URL?",
            **errors,
        )

    def _login_failure(self, config: _Config, exc: BaseException) -> Exception:
        permanent = configuration_failure(exc, f"DataKitchen at {config.base_url}", config.conn_id)
        if permanent is not None:
            return permanent
        described = describe_client_error(exc)
        if never_sent(exc):
            return RetryableError(
                f"could not connect to DataKitchen at {config.base_url} to log in ({described})"
            )
        return RetryableError(f"DataKitchen login at {config.base_url} failed ({described})")

    def _token(self, config: _Config) -> str:
        token = _TOKENS.fresh_token(config.key)
        if token:
            return token
        with _TOKENS.login_lock(config.key):
            token = _TOKENS.fresh_token(config.key)
            if token:
                return token
            import requests

            try:
                response = self.get_conn().post(
                    f"{config.base_url}/v2/login",
                    data={"username": config.username, "password": config.password},
                    timeout=config.settings.timeout,
                )
            except requests.RequestException as exc:
                raise self._login_failure(config, exc) from exc
            token = self._login_answer(config, response.status_code, response.headers, response.text)
            mask(token)
            _TOKENS.put(config.key, token)
            self.log.info("Logged in to DataKitchen at %s as %r", config.base_url, config.username)
            return token

    async def _atoken(self, config: _Config, client: httpx.AsyncClient) -> str:
        token = _TOKENS.fresh_token(config.key)
        if token:
            return token
        async with _TOKENS.async_login_lock(config.key):
            token = _TOKENS.fresh_token(config.key)
            if token:
                return token
            import httpx

            try:
                async with async_request_gate():
                    response = await client.post(
                        f"{config.base_url}/v2/login",
                        data={"username": config.username, "password": config.password},
                        timeout=async_timeout(config.settings.timeout),
                    )
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                raise self._login_failure(config, exc) from exc
            token = self._login_answer(config, response.status_code, response.headers, response.text)
            await amask(token)
            _TOKENS.put(config.key, token)
            self.log.info("Logged in to DataKitchen at %s as %r", config.base_url, config.username)
            return token

    def _refreshed(self, config: _Config, headers: Mapping[str, str]) -> str | None:
        """A new JWT from a ``refreshed_token`` header (not yet registered), if the answer carried one."""
        token = (headers.get("refreshed_token") or headers.get("refreshed-token") or "").strip().strip('"')
        if token and token != _TOKENS.current(config.key):
            return token
        return None

    # ---------------------------------------------------------------- sending (sync)

    def _send(self, config: _Config, call: _Call, token: str) -> requests.Response:
        import requests

        try:
            return self.get_conn().request(
                call.method,
                config.base_url + call.path,
                json=call.json,
                headers={"Authorization": f"Bearer {token}"},
                timeout=config.settings.timeout,
            )
        except requests.RequestException as exc:
            raise self._client_failure(config, call, exc) from exc

    def _request(self, call: _Call) -> Any:
        config = self._get_config()

        def attempt() -> Any:
            token = self._token(config)
            response = self._send(config, call, token)
            if response.status_code == 401:
                # Expired or revoked: the server did not act. Log in again once and repeat.
                _TOKENS.discard(config.key, token)
                self.log.info("DataKitchen answered 401 to the request to %s; logging in again", call.what)
                response = self._send(config, call, self._token(config))
            refreshed = self._refreshed(config, response.headers)
            if refreshed:
                mask(refreshed)
                _TOKENS.put(config.key, refreshed)
            return self._interpret(config, call, response.status_code, response.headers, response.text)

        return config.settings.retry_policy.call(
            attempt, what=f"DataKitchen request to {call.what}", log=self.log
        )

    # ---------------------------------------------------------------- sending (async)

    async def _asend(
        self, config: _Config, call: _Call, token: str, client: httpx.AsyncClient
    ) -> httpx.Response:
        import httpx

        try:
            async with async_request_gate():
                return await client.request(
                    call.method,
                    config.base_url + call.path,
                    json=call.json,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Accept": "application/json",
                        "User-Agent": f"airflow-provider-orders/{__version__}",
                    },
                    timeout=async_timeout(config.settings.timeout),
                )
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise self._client_failure(config, call, exc) from exc

    async def _arequest(self, call: _Call) -> Any:
        config = await self._aget_config()
        client = shared_async_client(config.settings.verify_ssl)

        async def attempt() -> Any:
            token = await self._atoken(config, client)
            response = await self._asend(config, call, token, client)
            if response.status_code == 401:
                _TOKENS.discard(config.key, token)
                self.log.info("DataKitchen answered 401 to the request to %s; logging in again", call.what)
                response = await self._asend(config, call, await self._atoken(config, client), client)
            refreshed = self._refreshed(config, response.headers)
            if refreshed:
                await amask(refreshed)
                _TOKENS.put(config.key, refreshed)
            return self._interpret(config, call, response.status_code, response.headers, response.text)

        return await config.settings.retry_policy.acall(
            attempt, what=f"DataKitchen request to {call.what}", log=self.log
        )


__all__ = ["DEFAULT_HOST", "DataKitchenHook", "jwt_expiry"]
