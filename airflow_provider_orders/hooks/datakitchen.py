"""Hook for the DataKitchen Automation API (REST): the public methods and the request each one sends.

Connection (type ``datakitchen``): host = API base URL (empty → ``https://cloud.datakitchen.io``, no
scheme → https), login = username, password = password. Extras: ``timeout``, ``verify_ssl``,
``max_retries``, ``retry_delay`` (shared with ezCater) and, for the order-run link, ``web_app_url``,
``customer`` and ``link_style`` (``hash`` | ``dk``).

Authentication: ``POST /v2/login`` once, then ``Authorization: Bearer <jwt>`` on every call. The JWT is
shared by every hook of the process that uses the same host and user (a triggerer running a thousand
triggers logs in once), renewed shortly before its ``exp`` and once more on a 401, and replaced when an
answer carries a ``refreshed_token`` header. It is registered with Airflow's secrets masker the moment it
arrives. There is no ``validatetoken`` round trip before calls. (Tokens, login and sending with the
token: :mod:`~airflow_provider_orders.hooks._datakitchen_session`.)

Retries: reads and stops are retried on every transient failure. Order creation is not idempotent: it is
retried only when the server certainly did not act (connection never established, 429, 503, 408, or an
expired token); any other failure after sending raises :class:`OrderOutcomeUnknownError` saying how to
look for the order that may exist. (What each answer means:
:mod:`~airflow_provider_orders.hooks._datakitchen_errors`.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow_provider_orders import __version__
from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    OrderNotFoundError,
    OrdersProviderError,
    PermanentOrdersError,
    RequestRejectedError,
    TransientOrdersError,
)
from airflow_provider_orders.hooks._connection import (
    ConfiguredHook,
    ConnectionSettings,
    get_extra_str,
    normalize_url,
    parse_settings,
)
from airflow_provider_orders.hooks._datakitchen_errors import created_order, interpret_answer
from airflow_provider_orders.hooks._datakitchen_session import (
    SERVICE,
    TOKENS,
    TokenKey,
    asend,
    asend_nowait,
    jwt_expiry,
    send,
    send_nowait,
    token_key,
)
from airflow_provider_orders.hooks._http import quote_segment, shared_async_client, url_host
from airflow_provider_orders.hooks._retry import RetryableError
from airflow_provider_orders.models.datakitchen import recipe_target

if TYPE_CHECKING:
    import requests
    from airflow.providers.common.compat.sdk import Connection

DEFAULT_HOST = "https://cloud.datakitchen.io"
#: The servings endpoint returns 10 runs unless told otherwise; runs come newest first.
DEFAULT_SERVINGS_COUNT = 100
LINK_STYLES = ("hash", "dk")
#: Attempts of a stop on kill (:meth:`DataKitchenHook.stop_on_kill`): a couple, within its time budget.
KILL_ATTEMPTS = 2
#: Longest pause between two attempts of a stop on kill (seconds; ``retry_delay`` when shorter).
KILL_PAUSE_MAX = 0.5


@dataclass(frozen=True)
class _Config:
    """A ``datakitchen`` connection, parsed once per hook."""

    conn_id: str
    base_url: str
    username: str
    password: str = field(repr=False)
    settings: ConnectionSettings
    web_app_url: str
    customer: str | None
    link_style: str

    @functools.cached_property
    def key(self) -> TokenKey:
        """The token-cache key (computed once per configuration: it is read on every request)."""
        return token_key(self.base_url, self.username, self.password)

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
    """One API call, the same for the sync and async paths: what to send, and how messages name it.

    :param action: what the call does, read after "to" in messages: ``read order run 'x' in kitchen 'k'``.
    :param creates_order: the call creates an order (not idempotent: retried only when not acted on).
    :param kitchen: the kitchen the call acts in, for the "where to look" of an unknown outcome.
    :param target: for a create, what the order asks to run (``kitchen 'k', recipe 'r', variation 'v'``).
    """

    method: str
    path: str
    action: str
    json: Any = None
    creates_order: bool = False
    kitchen: str = ""
    target: str = ""


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


def _check_parameters(parameters: Any, target: str) -> dict[str, Any]:
    """The variable overrides as a JSON-ready dict, or a RequestRejectedError naming what is wrong.

    Checked before anything is sent, so a bad value is a clear permanent error, never an order whose
    outcome looks unknown.
    """
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise RequestRejectedError(
            f"The parameters for {target} must be a dict of variable overrides "
            f"(name → value), got {type(parameters).__name__}."
        )
    for name, value in parameters.items():
        if not isinstance(name, str):
            raise RequestRejectedError(
                f"Variable override names in the parameters for {target} must be strings, got {name!r}."
            )
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RequestRejectedError(
                f"Variable override {name!r} in the parameters for {target} cannot be sent as JSON: {exc}."
            ) from None
    return dict(parameters)


def _create_call(kitchen: str, recipe: str, variation: str, parameters: Any) -> _Call:
    target = recipe_target(kitchen, recipe, variation)
    return _Call(
        "PUT",
        _path("order", "create", kitchen, recipe, variation),
        action=f"create an order for {target}",
        json={"parameters": _check_parameters(parameters, target), "schedule": "now"},
        creates_order=True,
        kitchen=kitchen,
        target=target,
    )


def _runs_call(kitchen: str, order_id: str, count: int) -> _Call:
    return _Call(
        "GET",
        _path("order", "servings", kitchen, order_id),
        action=f"read the runs of order '{order_id}' in kitchen '{kitchen}'",
        json={"count": count},
        kitchen=kitchen,
    )


def _run_call(kitchen: str, order_run_id: str, *, logs: bool = False, tests: bool = False) -> _Call:
    """``POST /v2/order/details``: one run, with its log and test report when asked for."""
    what = " and ".join(w for w, wanted in (("log", logs), ("tests", tests)) if wanted)
    return _Call(
        "POST",
        _path("order", "details", kitchen),
        action=f"read {'the ' + what + ' of ' if what else ''}order run '{order_run_id}' in kitchen '{kitchen}'",
        json={
            "serving_hid": order_run_id,
            "logs": logs,
            "testresults": tests,
            **dict.fromkeys(("servingjson", "summary", "timingresults"), False),
        },
        kitchen=kitchen,
    )


def _stop_run_call(kitchen: str, order_run_id: str) -> _Call:
    return _Call(
        "PUT",
        _path("serving", "stop", order_run_id),
        action=f"stop order run '{order_run_id}' in kitchen '{kitchen}'",
        json={"serving_hid": order_run_id, "kitchen_name": kitchen},
        kitchen=kitchen,
    )


def _stop_order_call(kitchen: str, order_id: str) -> _Call:
    return _Call(
        "PUT",
        _path("order", "stop", order_id),
        action=f"stop order '{order_id}' in kitchen '{kitchen}'",
        json={"serving_book_hid": order_id, "kitchen_name": kitchen},
        kitchen=kitchen,
    )


def _resume_call(kitchen: str, order_run_id: str) -> _Call:
    # DKUtils sends {"kitchen_name"}; DKCloudCommand adds "serving_hid": both are sent.
    return _Call(
        "PUT",
        _path("order", "resume", order_run_id),
        action=f"resume order run '{order_run_id}' in kitchen '{kitchen}'",
        json={"serving_hid": order_run_id, "kitchen_name": kitchen},
        # Not idempotent either: a resume that may have arrived is never sent again blindly.
        creates_order=True,
        kitchen=kitchen,
        target=f"order run '{order_run_id}' in kitchen '{kitchen}'",
    )


def _list_call(
    kitchen: str,
    *,
    recipe: str | None,
    variation: str | None,
    time_period_minutes: int | None,
    servings_count: int | None,
    count: int | None,
) -> _Call:
    query = {
        "recipe": recipe,
        "variation": variation,
        "timePeriod": time_period_minutes,
        "servingsCount": servings_count,
        "count": count,
    }
    pairs = {k: str(v) for k, v in query.items() if v is not None}
    path = _path("order", "status", kitchen) + (f"?{urlencode(pairs)}" if pairs else "")
    what = " ".join(f"{k} '{v}'" for k, v in (("recipe", recipe), ("variation", variation)) if v)
    return _Call(
        "GET",
        path,
        action=f"list the orders of kitchen '{kitchen}'" + (f" for {what}" if what else ""),
        kitchen=kitchen,
    )


def _run_or_order_stop(kitchen: str, order_id: str | None, order_run_id: str | None) -> tuple[_Call, str]:
    """The stop call of :meth:`DataKitchenHook.stop_run_or_order` and what it stops, in words."""
    if order_run_id:
        return _stop_run_call(kitchen, order_run_id), f"order run '{order_run_id}' was stopped"
    if order_id:
        return _stop_order_call(kitchen, order_id), f"no run had started, so order '{order_id}' was stopped"
    raise RequestRejectedError(
        f"Nothing to stop in DataKitchen kitchen '{kitchen}': neither an order id nor an order run id "
        "is known."
    )


def _runs(body: Any) -> list[dict[str, Any]]:
    servings = body.get("servings") if isinstance(body, dict) else None
    return [s for s in servings if isinstance(s, dict)] if isinstance(servings, list) else []


def _run(kitchen: str, order_run_id: str, body: Any) -> dict[str, Any]:
    servings = body.get("servings") if isinstance(body, dict) else None
    if not isinstance(servings, list) or not servings or not isinstance(servings[0], dict):
        raise OrderNotFoundError(f"DataKitchen has no order run '{order_run_id}' in kitchen '{kitchen}'.")
    return servings[0]


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
    def username(self) -> str:
        """The DataKitchen user the connection logs in as (an order list's ``created_by``)."""
        return self._get_config().username

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
        call = _create_call(kitchen, recipe, variation, parameters)
        body = self._request(call)
        order_id = created_order(self._get_config(), call, body)
        result = dict(body)
        result["order_id"] = order_id
        result.setdefault("variable_overrides", {})
        self.log.info("Created DataKitchen order %s for %s", order_id, call.target)
        return result

    def get_order_runs(
        self, kitchen: str, order_id: str, *, count: int = DEFAULT_SERVINGS_COUNT
    ) -> list[dict[str, Any]]:
        """The runs of an order, newest first; ``[]`` until the first run starts."""
        return _runs(self._request(_runs_call(kitchen, order_id, count)))

    def get_order_run(self, kitchen: str, order_run_id: str) -> dict[str, Any]:
        """One order run (``servings[0]`` of ``POST /v2/order/details/{kitchen}``): hid, status, ..."""
        return _run(kitchen, order_run_id, self._request(_run_call(kitchen, order_run_id)))

    def get_order_run_details(
        self, kitchen: str, order_run_id: str, *, logs: bool = True, tests: bool = True
    ) -> dict[str, Any]:
        """One order run with its log (``log.lines``) and data-test report (``testresults``), as
        ``POST /v2/order/details/{kitchen}`` gives them (``servings[0]``); read it with
        :class:`~airflow_provider_orders.models.datakitchen.OrderRunReport`."""
        call = _run_call(kitchen, order_run_id, logs=logs, tests=tests)
        return _run(kitchen, order_run_id, self._request(call))

    def resume_order_run(self, kitchen: str, order_run_id: str) -> dict[str, Any]:
        """Resume a failed or stopped run (``PUT /v2/order/resume/{order_run_id}``): DataKitchen runs its
        failed nodes again in a new run of the same order, and the old run becomes SERVING_RERAN.

        :return: the answer: ``order_id``, and the new run's id under ``serving_hid`` when DataKitchen
            sends it (its public clients read only ``order_id``).
        :raises RequestRejectedError: DataKitchen refused (e.g. the run completed), quoting its message.
        :raises OrderOutcomeUnknownError: the request may have arrived but its answer was lost; it is not
            sent again (read the order's runs to see whether the resume happened).
        """
        body = self._request(_resume_call(kitchen, order_run_id))
        return dict(body) if isinstance(body, dict) else {}

    def list_orders(
        self,
        kitchen: str,
        *,
        recipe: str | None = None,
        variation: str | None = None,
        time_period_minutes: int | None = None,
        servings_count: int | None = None,
        count: int | None = None,
    ) -> Any:
        """A kitchen's orders and their runs (``GET /v2/order/status/{kitchen}`` with DataKitchen's
        filters), as sent: read it with ``listed_orders`` / ``listed_runs``. The answer's shape is not
        documented and a server may ignore a filter: callers filter again."""
        return self._request(
            _list_call(
                kitchen,
                recipe=recipe,
                variation=variation,
                time_period_minutes=time_period_minutes,
                servings_count=servings_count,
                count=count,
            )
        )

    def stop_order_run(self, kitchen: str, order_run_id: str) -> dict[str, Any]:
        """Stop an order run (``PUT /v2/serving/stop/{order_run_id}``)."""
        body = self._request(_stop_run_call(kitchen, order_run_id))
        self.log.info("Asked DataKitchen to stop order run %s in kitchen %r", order_run_id, kitchen)
        return body if isinstance(body, dict) else {}

    def stop_order(self, kitchen: str, order_id: str) -> dict[str, Any]:
        """Stop an order and its schedule (``PUT /v2/order/stop/{order_id}``)."""
        body = self._request(_stop_order_call(kitchen, order_id))
        self.log.info("Asked DataKitchen to stop order %s in kitchen %r", order_id, kitchen)
        return body if isinstance(body, dict) else {}

    def stop_run_or_order(self, kitchen: str, order_id: str | None, order_run_id: str | None) -> str:
        """Stop the run when its id is known, else the order (no run started yet); return what was
        stopped in words, e.g. "order run 'x' was stopped" / "no run had started, so order 'y' was stopped".

        Uses the connection's full retry budget: for ``on_kill``, use :meth:`stop_on_kill`.

        :raises OrdersProviderError: like :meth:`stop_order_run` / :meth:`stop_order`; a
            :class:`RequestRejectedError` when neither id is known (there is nothing to stop).
        """
        _, stopped = _run_or_order_stop(kitchen, order_id, order_run_id)
        if order_run_id:
            self.stop_order_run(kitchen, order_run_id)
        elif order_id:
            self.stop_order(kitchen, order_id)
        return stopped

    def stop_on_kill(
        self, kitchen: str, order_id: str | None, order_run_id: str | None, *, budget: float = 20.0
    ) -> str:
        """:meth:`stop_run_or_order` for ``on_kill``, which Airflow runs in the SIGTERM handler of the very
        thread it interrupted: same result text, but it never waits on a lock that code may hold (the
        cached token if fresh, else a login under the login lock only if that is free right now; its own
        HTTP session) and ends within ``budget`` seconds: at most :data:`KILL_ATTEMPTS` attempts, each
        request's timeouts cut to the time left, a short pause between attempts (no backoff).

        :raises OrdersProviderError: a permanent error at once; ``TransientOrdersError`` when the attempts
            or the budget ran out; ``RequestRejectedError`` when neither id is known.
        """
        call, stopped = _run_or_order_stop(kitchen, order_id, order_run_id)
        deadline = time.monotonic() + budget
        config = self._get_config()
        import requests

        session = requests.Session()  # not the interrupted code's: its pool may be mid-operation
        session.verify = config.settings.verify_ssl
        session.headers["Accept"] = "application/json"
        session.headers["User-Agent"] = f"airflow-provider-orders/{__version__}"

        def attempt(attempt_deadline: float) -> None:
            response = send_nowait(config, call, session, self.log, deadline=attempt_deadline)
            interpret_answer(config, call, response.status_code, response.headers, response.text)

        try:
            for number in range(1, KILL_ATTEMPTS + 1):
                try:
                    attempt(_attempt_deadline(deadline, number))
                    break
                except RetryableError as error:
                    pause = self._kill_pause(config, call, error, number, deadline, budget)
                    time.sleep(pause)
        finally:
            session.close()
        self.log.info("Asked DataKitchen to %s", call.action)
        return stopped

    async def astop_on_kill(
        self, kitchen: str, order_id: str | None, order_run_id: str | None, *, budget: float = 20.0
    ) -> str:
        """Async :meth:`stop_on_kill` for a trigger's ``on_kill``: the loop's shared client and the host's
        request gate, the loop's login lock only when free, the same attempts, all within ``budget``
        seconds (also enforced as a whole with ``asyncio.wait_for``).

        :raises OrdersProviderError: as :meth:`stop_on_kill`.
        """
        call, stopped = _run_or_order_stop(kitchen, order_id, order_run_id)
        deadline = time.monotonic() + budget

        async def stop() -> None:
            config = await self._aget_config()
            client = shared_async_client(config.settings.verify_ssl, SERVICE, url_host(config.base_url))
            for number in range(1, KILL_ATTEMPTS + 1):
                try:
                    response = await asend_nowait(
                        config, call, client, self.log, deadline=_attempt_deadline(deadline, number)
                    )
                    interpret_answer(config, call, response.status_code, response.headers, response.text)
                    return
                except RetryableError as error:
                    await asyncio.sleep(self._kill_pause(config, call, error, number, deadline, budget))

        try:
            await asyncio.wait_for(stop(), budget)
        except asyncio.TimeoutError:
            raise TransientOrdersError(
                f"DataKitchen request to {call.action} (on kill) did not finish within its {budget:g} s "
                "budget"
            ) from None
        self.log.info("Asked DataKitchen to %s", call.action)
        return stopped

    def _kill_pause(
        self, config: _Config, call: _Call, error: RetryableError, number: int, deadline: float, budget: float
    ) -> float:
        """After failed attempt ``number`` of a stop on kill: the pause before the next one, or the
        ``TransientOrdersError`` to raise when no attempt (or too little time) is left."""
        left = deadline - time.monotonic()
        if number >= KILL_ATTEMPTS or left < 2 * KILL_PAUSE_MAX:
            raise TransientOrdersError(
                f"DataKitchen request to {call.action} (on kill) failed after {number} attempt(s) within its "
                f"{budget:g} s budget: {error.reason}",
                http_status=error.http_status,
                api_message=error.api_message,
            ) from error
        self.log.warning(
            "DataKitchen request to %s (on kill): %s; trying once more", call.action, error.reason
        )
        return min(config.settings.retry_delay, KILL_PAUSE_MAX)

    def get_user_info(self) -> dict[str, Any]:
        """``GET /v2/userinfo``: who the connection's user is (``customer_git_name``, ...)."""
        body = self._request(_Call("GET", _path("userinfo"), action="read the user's info"))
        return body if isinstance(body, dict) else {}

    def order_run_url(self, kitchen: str, order_run_id: str | None) -> str | None:
        """The web-app URL of an order run, or None when it cannot be built (never raises for the API).

        Uses extras ``web_app_url`` (default: API base URL), ``customer`` (default: looked up once through
        ``/v2/userinfo``) and ``link_style``.
        """
        if not order_run_id:
            return None
        config = self._get_config()
        customer = config.customer or TOKENS.customer(config.key)
        if not customer:
            try:
                customer = str(self.get_user_info().get("customer_git_name") or "") or None
            except OrdersProviderError as exc:
                self.log.warning("No DataKitchen order run link: could not look up the customer: %s", exc)
                return None
            if not customer:
                self.log.warning("No DataKitchen order run link: /v2/userinfo names no customer_git_name")
                return None
            TOKENS.set_customer(config.key, customer)
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
        return _runs(await self._arequest(_runs_call(kitchen, order_id, count)))

    async def aget_order_run(self, kitchen: str, order_run_id: str) -> dict[str, Any]:
        """Async :meth:`get_order_run` for triggers."""
        return _run(kitchen, order_run_id, await self._arequest(_run_call(kitchen, order_run_id)))

    async def alist_orders(
        self,
        kitchen: str,
        *,
        recipe: str | None = None,
        variation: str | None = None,
        time_period_minutes: int | None = None,
        servings_count: int | None = None,
        count: int | None = None,
    ) -> Any:
        """Async :meth:`list_orders` for triggers."""
        return await self._arequest(
            _list_call(
                kitchen,
                recipe=recipe,
                variation=variation,
                time_period_minutes=time_period_minutes,
                servings_count=servings_count,
                count=count,
            )
        )

    # ---------------------------------------------------------------- sending

    def _request(self, call: _Call) -> Any:
        """Send ``call`` (logging in when needed) with the connection's retry policy; the parsed answer."""
        config = self._get_config()

        def attempt() -> Any:
            response = send(config, call, self.get_conn(), self.log)
            return interpret_answer(config, call, response.status_code, response.headers, response.text)

        return config.settings.retry_policy.call(
            attempt, what=f"DataKitchen request to {call.action}", log=self.log
        )

    async def _arequest(self, call: _Call) -> Any:
        """Async :meth:`_request`: the loop's shared client and request gate, non-blocking retries."""
        config = await self._aget_config()
        client = shared_async_client(config.settings.verify_ssl, SERVICE, url_host(config.base_url))

        async def attempt() -> Any:
            response = await asend(config, call, client, self.log)
            return interpret_answer(config, call, response.status_code, response.headers, response.text)

        return await config.settings.retry_policy.acall(
            attempt, what=f"DataKitchen request to {call.action}", log=self.log
        )


def _attempt_deadline(deadline: float, number: int) -> float:
    """When attempt ``number`` of a stop on kill must end: an equal share of the time left, so that a
    hung first attempt leaves time for the next."""
    now = time.monotonic()
    return now + (deadline - now) / (KILL_ATTEMPTS - number + 1)


__all__ = ["DEFAULT_HOST", "KILL_ATTEMPTS", "DataKitchenHook", "jwt_expiry"]
