"""Hook for the ezCater Orders API (GraphQL).

Connection (type ``ezcater``): host = GraphQL endpoint URL (empty → ``https://api.ezcater.com/graphql``,
no scheme → https, no path → ``/graphql``), password = API token (sent raw in ``Authorization``).
Extras: ``timeout``, ``verify_ssl``, ``max_retries``, ``retry_delay`` (shared with DataKitchen),
``client_name`` / ``client_version`` (the ``apollographql-client-*`` headers).

Every operation is named and takes its input as GraphQL variables. ``gql`` / ``graphql-core`` are
imported inside the methods that use them, never at module import. GraphQL error bodies are read
whatever the HTTP status; error codes are matched without regard to case, spaces or underscores.

``accept_order`` is retried on transient failures. When the API answers INVALID_STATE_TRANSITION the
hook reads the order once: if an earlier attempt of this same call sent the mutation and lost the answer
and the order is now ``accepted``, that attempt succeeded and the order is returned; otherwise
:class:`InvalidStateTransitionError` carries the order's current state.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_orders import __version__
from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    FeatureNotEnabledError,
    InvalidStateTransitionError,
    NotAuthorizedError,
    OrderNotFoundError,
    OrdersProviderError,
    RequestRejectedError,
)
from airflow_provider_orders.hooks._connection import (
    ConfiguredHook,
    ConnectionSettings,
    get_extra_str,
    normalize_url,
    parse_settings,
)
from airflow_provider_orders.hooks._http import (
    async_request_gate,
    async_timeout,
    configuration_failure,
    describe_client_error,
    never_sent,
    shared_async_client,
)
from airflow_provider_orders.hooks._retry import RetryableError, parse_retry_after
from airflow_provider_orders.status import OrderLifecycleState, normalize_lifecycle_state

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow.sdk import Connection
    from gql import Client, GraphQLRequest
    from gql.client import SyncClientSession

DEFAULT_ENDPOINT = "https://api.ezcater.com/graphql"
DEFAULT_CLIENT_NAME = "airflow-provider-orders"
#: Order id used by test_connection: no order has it, so "Couldn't find Order" proves the token works.
PROBE_ORDER_ID = "00000000-0000-0000-0000-000000000000"

_ORDER_FIELDS = """
    uuid
    orderNumber
    orderSourceType
    lifecycle { orderIsCurrently }
    caterer { uuid name storeNumber }
    event { timestamp catererHandoffFoodTime timeZoneIdentifier headcount orderType }
    totals { customerTotalDue { currency subunits } }
    catererCart { orderItems { uuid name quantity } }
"""


@dataclass(frozen=True)
class _Operation:
    name: str
    root_field: str
    verb: str
    text: str


ORDER_QUERY = _Operation(
    "Order",
    "order",
    "read",
    "query Order($orderId: ID!) {\n  order(id: $orderId) {" + _ORDER_FIELDS + "  }\n}\n",
)
ACCEPT_ORDER_MUTATION = _Operation(
    "AcceptOrder",
    "acceptOrder",
    "accept",
    """mutation AcceptOrder($orderId: ID!, $acceptModification: Boolean) {
  acceptOrder(orderId: $orderId, acceptModification: $acceptModification) {
    order { uuid lifecycle { orderIsCurrently } }
  }
}
""",
)
REJECT_ORDER_MUTATION = _Operation(
    "RejectOrder",
    "rejectOrder",
    "reject",
    """mutation RejectOrder($orderId: ID!, $rejectOrderInput: RejectOrderInput!) {
  rejectOrder(orderId: $orderId, rejectOrderInput: $rejectOrderInput) {
    order { uuid lifecycle { orderIsCurrently } }
  }
}
""",
)

_PARSED: dict[str, Any] = {}


def _document(operation: _Operation) -> Any:
    """The parsed gql request of an operation (parsed once per process)."""
    request = _PARSED.get(operation.name)
    if request is None:
        from gql import gql

        request = _PARSED[operation.name] = gql(operation.text)
    return request


_PRINTED: dict[str, str] = {}


@functools.cache
def _prepared_request_class() -> type[GraphQLRequest]:
    """A ``GraphQLRequest`` whose query text is printed once per operation and process.

    gql 4 prints the parsed document back to text (``graphql.print_ast``) on every call to build the
    request body; that was a tenth of a millisecond per call. The text sent is the same.
    """
    from gql import GraphQLRequest

    class PreparedRequest(GraphQLRequest):
        query_text = ""

        @property
        def payload(self) -> dict[str, Any]:
            payload: dict[str, Any] = {"query": self.query_text}
            if self.operation_name:
                payload["operationName"] = self.operation_name
            if self.variable_values:
                payload["variables"] = self.variable_values
            if self.extensions:
                payload["extensions"] = self.extensions
            return payload

    return PreparedRequest


def _graphql_request(operation: _Operation, variables: dict[str, Any]) -> GraphQLRequest:
    """The gql request of one call: the operation's document (parsed once) and these variables."""
    document = _document(operation)
    text = _PRINTED.get(operation.name)
    if text is None:
        from graphql import print_ast

        text = _PRINTED[operation.name] = print_ast(document.document)
    request: Any = _prepared_request_class()(
        document, variable_values=variables, operation_name=operation.name
    )
    request.query_text = text
    return request


def normalize_code(code: Any) -> str:
    """``feature not enabled`` / ``FEATURE_NOT_ENABLED`` / ``Feature-Not-Enabled`` → ``FEATURENOTENABLED``."""
    return re.sub(r"[\s_\-]+", "", str(code or "")).upper()


_INVALID_STATE = normalize_code("INVALID_STATE_TRANSITION")
_FEATURE_NOT_ENABLED = normalize_code("FEATURE_NOT_ENABLED")
_UNAUTHENTICATED = {normalize_code("UNAUTHENTICATED"), normalize_code("INVALID_TOKEN")}
_FORBIDDEN = {normalize_code("FORBIDDEN")}
_NOT_FOUND = {normalize_code("NOT_FOUND")}
#: Statuses after which the server certainly did not act.
_NOT_ACTED = frozenset({408, 429, 503})


def _as_status(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _is_transient(status: int) -> bool:
    return status in _NOT_ACTED or status >= 500


@dataclass(frozen=True)
class _GraphQLError:
    """One entry of a GraphQL ``errors`` list, read leniently."""

    message: str
    code: str | None = None
    statuscode: int | None = None

    @property
    def normalized(self) -> str:
        return normalize_code(self.code)

    @property
    def quoted(self) -> str:
        """``"<message>" (code X, statuscode N)``: the API's own words."""
        extras = [f"code {self.code}"] if self.code else []
        if self.statuscode:
            extras.append(f"statuscode {self.statuscode}")
        return f'"{self.message}"' + (f" ({', '.join(extras)})" if extras else "")

    @classmethod
    def parse(cls, error: Any, token: str) -> _GraphQLError:
        if not isinstance(error, dict):
            error = {"message": str(error)}
        raw = error.get("extensions")
        ext: dict[str, Any] = raw if isinstance(raw, dict) else {}
        message = str(error.get("message") or "").strip()
        if token:
            message = message.replace(token, "***")
        code = ext.get("code")
        return cls(
            message=message,
            code=str(code) if code else None,
            statuscode=_as_status(ext.get("statuscode", ext.get("statusCode"))),
        )


@dataclass
class _CallState:
    """What happened across the attempts of one hook call."""

    answer_lost: bool = False  # a mutation was sent and its answer lost (5xx / dropped connection)


@dataclass(frozen=True)
class _Config:
    conn_id: str
    url: str
    token: str = field(repr=False)
    settings: ConnectionSettings
    client_name: str
    client_version: str

    @property
    def secret(self) -> str:
        return self.token

    @classmethod
    def from_connection(cls, conn: Connection, extra: Mapping[str, Any], conn_id: str) -> _Config:
        ctype = EzCaterHook.conn_type
        token = (conn.password or "").strip()
        if not token:
            raise AuthenticationFailedError(
                f"Connection '{conn_id}' has no API token: put the ezCater API token in its password."
            )
        return cls(
            conn_id=conn_id,
            url=normalize_url(
                conn.host, default=DEFAULT_ENDPOINT, port=conn.port, default_path="/graphql", conn_id=conn_id
            ),
            token=token,
            settings=parse_settings(extra, conn_id=conn_id, conn_type=ctype),
            client_name=get_extra_str(extra, "client_name", ctype) or DEFAULT_CLIENT_NAME,
            client_version=get_extra_str(extra, "client_version", ctype) or __version__,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": self.token,
            "apollographql-client-name": self.client_name,
            "apollographql-client-version": self.client_version,
        }


class EzCaterHook(ConfiguredHook[_Config]):
    """Read, accept and reject ezCater catering orders through the GraphQL Orders API.

    :param ezcater_conn_id: Airflow connection of type ``ezcater``.
    """

    conn_name_attr = "ezcater_conn_id"
    default_conn_name = "ezcater_default"
    conn_type = "ezcater"
    hook_name = "ezCater"

    def __init__(self, ezcater_conn_id: str = default_conn_name, *, logger_name: str | None = None) -> None:
        super().__init__(logger_name=logger_name)
        self.ezcater_conn_id = ezcater_conn_id
        self._config: _Config | None = None
        self._client: Client | None = None
        self._session: SyncClientSession | None = None

    # ---------------------------------------------------------------- connection and client

    def _parse_config(self, conn: Connection, extra: Mapping[str, Any], conn_id: str) -> _Config:
        return _Config.from_connection(conn, extra, conn_id)

    @property
    def url(self) -> str:
        """The GraphQL endpoint this hook talks to (from the connection)."""
        return self._get_config().url

    def get_conn(self) -> Client:
        """The hook's gql ``Client`` over a ``RequestsHTTPTransport`` (no schema fetch, no gql retries)."""
        if self._client is None:
            from gql import Client
            from gql.transport.requests import RequestsHTTPTransport

            config = self._get_config()
            options: dict[str, Any] = {
                "timeout": config.settings.timeout,
                "verify": config.settings.verify_ssl,
                "retries": 0,
            }
            transport = RequestsHTTPTransport(url=config.url, headers=config.headers, **options)
            self._client = Client(transport=transport, fetch_schema_from_transport=False)
        return self._client

    def _sync_session(self) -> SyncClientSession:
        if self._session is None:
            self._session = self.get_conn().connect_sync()
        return self._session

    def close(self) -> None:
        """Close the gql client and its HTTP session."""
        if self._client is not None and self._session is not None:
            self._client.close_sync()
        self._session = None
        self._client = None

    # ---------------------------------------------------------------- public API

    def get_order(self, order_id: str) -> dict[str, Any]:
        """The order (uuid, orderNumber, lifecycle.orderIsCurrently, caterer, event, totals, ...)."""
        data = self._call(ORDER_QUERY, {"orderId": order_id}, order_id, _CallState())
        return self._order(ORDER_QUERY, order_id, data.get("order"))

    def accept_order(self, order_id: str, accept_modification: bool = False) -> dict[str, Any]:
        """Accept an order (or, with ``accept_modification=True``, its modification).

        :return: the ``order`` object of the answer: ``uuid`` and ``lifecycle.orderIsCurrently``.
        """
        variables = {"orderId": order_id, "acceptModification": bool(accept_modification)}
        state = _CallState()
        try:
            data = self._call(ACCEPT_ORDER_MUTATION, variables, order_id, state)
        except InvalidStateTransitionError as exc:
            return self._resolve_invalid_transition(
                ACCEPT_ORDER_MUTATION,
                order_id,
                exc,
                state,
                {OrderLifecycleState.ACCEPTED.value},
                accept_modification=accept_modification,
            )
        order = self._payload_order(ACCEPT_ORDER_MUTATION, order_id, data)
        self.log.info("Accepted ezCater order %s (now %s)", order_id, self._state_of(order))
        return order

    def reject_order(self, order_id: str, reason: str, explanation: str | None = None) -> dict[str, Any]:
        """Reject an order with a reason (e.g. ``AT_DAILY_CAPACITY``) and an optional explanation.

        :return: the ``order`` object of the answer: ``uuid`` and ``lifecycle.orderIsCurrently``.
        """
        reject_input: dict[str, Any] = {"reason": reason}
        if explanation is not None:
            reject_input["explanation"] = explanation
        variables = {"orderId": order_id, "rejectOrderInput": reject_input}
        state = _CallState()
        try:
            data = self._call(REJECT_ORDER_MUTATION, variables, order_id, state)
        except InvalidStateTransitionError as exc:
            return self._resolve_invalid_transition(
                REJECT_ORDER_MUTATION,
                order_id,
                exc,
                state,
                {OrderLifecycleState.REJECTED.value, OrderLifecycleState.CANCELLED.value},
            )
        order = self._payload_order(REJECT_ORDER_MUTATION, order_id, data)
        self.log.info("Rejected ezCater order %s (%s; now %s)", order_id, reason, self._state_of(order))
        return order

    def test_connection(self) -> tuple[bool, str]:
        """Run the named ``Order`` query on a nil uuid: "Couldn't find Order" means the token works."""
        try:
            config = self._get_config()
            self.get_order(PROBE_ORDER_ID)
        except (OrderNotFoundError, NotAuthorizedError, FeatureNotEnabledError) as exc:
            return True, (
                f"Connected to ezCater at {self._get_config().url}: the API token was accepted "
                f"(probe order lookup answered: {exc.api_message or exc.message})."
            )
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to ezCater at {config.url}: the API token was accepted."

    async def aget_order(self, order_id: str) -> dict[str, Any]:
        """Async :meth:`get_order` (httpx, async connection lookup) for triggers."""
        config = await self._aget_config()
        state = _CallState()

        async def attempt() -> dict[str, Any]:
            return await self._execute_async(config, ORDER_QUERY, {"orderId": order_id}, order_id, state)

        data = await config.settings.retry_policy.acall(
            attempt, what=self._what(ORDER_QUERY, order_id), log=self.log
        )
        return self._order(ORDER_QUERY, order_id, data.get("order"))

    # ---------------------------------------------------------------- results

    @staticmethod
    def _state_of(order: Mapping[str, Any]) -> str | None:
        lifecycle = order.get("lifecycle")
        return normalize_lifecycle_state(
            lifecycle.get("orderIsCurrently") if isinstance(lifecycle, dict) else None
        )

    @staticmethod
    def _order(operation: _Operation, order_id: str, order: Any) -> dict[str, Any]:
        if not isinstance(order, dict):
            raise OrderNotFoundError(f"ezCater has no order '{order_id}' (its answer carried no order).")
        return order

    def _payload_order(self, operation: _Operation, order_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        payload = data.get(operation.root_field)
        order = payload.get("order") if isinstance(payload, dict) else None
        if not isinstance(order, dict):
            raise RequestRejectedError(
                f"ezCater answered the request to {operation.verb} order '{order_id}' without the order "
                f"({operation.root_field} was {json.dumps(payload)})."
            )
        return order

    def _resolve_invalid_transition(
        self,
        operation: _Operation,
        order_id: str,
        error: InvalidStateTransitionError,
        state: _CallState,
        done_states: set[str],
        *,
        accept_modification: bool = False,
    ) -> dict[str, Any]:
        """Read the order once to tell "our lost answer already did it" from a real refusal."""
        try:
            order = self.get_order(order_id)
        except OrdersProviderError as lookup:
            raise InvalidStateTransitionError(
                f"{error.message} The order's current state could not be read: {lookup}",
                order_state=None,
                api_message=error.api_message,
                http_status=error.http_status,
                code=error.code,
            ) from error
        current = self._state_of(order)
        if state.answer_lost and current in done_states:
            self.log.info(
                "ezCater order %s is %s: an earlier attempt of this call sent the %s mutation and lost "
                "the answer; counting it as done",
                order_id,
                current,
                operation.name,
            )
            return order
        message = f"{error.message} The order is currently '{current}'."
        if (
            operation is ACCEPT_ORDER_MUTATION
            and current == OrderLifecycleState.ACCEPTED.value
            and not accept_modification
        ):
            message += (
                " If the customer modified it after it was accepted, the pending modification needs "
                "accept_modification=True."
            )
        raise InvalidStateTransitionError(
            message,
            order_state=current,
            api_message=error.api_message,
            http_status=error.http_status,
            code=error.code,
        ) from error

    # ---------------------------------------------------------------- error mapping

    @staticmethod
    def _what(operation: _Operation, order_id: str) -> str:
        return f"ezCater {operation.name} ({operation.verb} order '{order_id}')"

    @staticmethod
    def _scrub(config: _Config, text: str) -> str:
        return text.replace(config.token, "***") if config.token else text

    def _graphql_errors(
        self,
        config: _Config,
        operation: _Operation,
        order_id: str,
        status: int | None,
        headers: Mapping[str, str],
        errors: list[Any],
        state: _CallState,
    ) -> Exception:
        """The error a GraphQL ``errors`` list means (whatever the HTTP status)."""
        parsed = [_GraphQLError.parse(err, config.token) for err in errors] or [_GraphQLError("(no message)")]
        subject = f"order '{order_id}'"

        def pick(
            predicate: Callable[[_GraphQLError], bool], http_fallback: int | None = None
        ) -> _GraphQLError | None:
            found = next((e for e in parsed if predicate(e)), None)
            if found is None and http_fallback is not None and status == http_fallback:
                found = parsed[0]
            return found

        def kwargs(e: _GraphQLError) -> dict[str, Any]:
            return {
                "api_message": e.message,
                "http_status": e.statuscode or status,
                "code": e.code,
                "api_detail": errors,
            }

        if e := pick(lambda e: e.normalized == _INVALID_STATE):
            return InvalidStateTransitionError(
                f"ezCater refused to {operation.verb} {subject}: {e.quoted}.", order_state=None, **kwargs(e)
            )
        if e := pick(lambda e: e.normalized == _FEATURE_NOT_ENABLED):
            return FeatureNotEnabledError(
                f"ezCater cannot {operation.verb} {subject}: {e.quoted}. The accept/reject API is not "
                "enabled for the caterer's brand; ask ezCater to enable it.",
                **kwargs(e),
            )
        if e := pick(lambda e: e.statuscode == 401 or e.normalized in _UNAUTHENTICATED, http_fallback=401):
            return self._auth_error(config, e.quoted, **kwargs(e))
        if e := pick(
            lambda e: (
                e.statuscode == 404
                or e.normalized in _NOT_FOUND
                or e.message.lower().startswith("couldn't find")
            )
        ):
            return OrderNotFoundError(
                f"ezCater could not find {subject} (to {operation.verb} it): {e.quoted}.", **kwargs(e)
            )
        if e := pick(lambda e: e.statuscode == 403 or e.normalized in _FORBIDDEN, http_fallback=403):
            return NotAuthorizedError(
                f"The ezCater API user of connection '{config.conn_id}' may not {operation.verb} "
                f"{subject}: {e.quoted}. Ask ezCater for access to the order's caterer.",
                **kwargs(e),
            )
        first = parsed[0]
        transient = first.statuscode if first.statuscode and _is_transient(first.statuscode) else None
        if transient is None and status is not None and _is_transient(status):
            transient = status
        if transient is not None:
            return self._transient(operation, transient, headers, first.quoted, state)
        return RequestRejectedError(
            f"ezCater rejected the request to {operation.verb} {subject}: {first.quoted}.", **kwargs(first)
        )

    def _auth_error(self, config: _Config, quoted: str, **kwargs: Any) -> AuthenticationFailedError:
        return AuthenticationFailedError(
            f"ezCater at {config.url} refused the API token of connection '{config.conn_id}': {quoted}. "
            "Check the token (ezManage shows it only once; generate a new one if lost).",
            **kwargs,
        )

    def _transient(
        self,
        operation: _Operation,
        status: int,
        headers: Mapping[str, str],
        detail: str | None,
        state: _CallState,
    ) -> RetryableError:
        """A retryable failure; for a mutation, a status after which the server may have acted marks the
        call's answer as lost (the INVALID_STATE_TRANSITION resolution then counts an accepted order as
        this call's own)."""
        if status not in _NOT_ACTED and operation is not ORDER_QUERY:
            state.answer_lost = True
        return RetryableError(
            f"ezCater answered HTTP {status}" + (f": {detail}" if detail else ""),
            retry_after=parse_retry_after(headers.get("Retry-After")),
            http_status=status,
        )

    def _interpret(
        self,
        config: _Config,
        operation: _Operation,
        order_id: str,
        status: int | None,
        headers: Mapping[str, str],
        body: Any,
        text: str,
        state: _CallState,
    ) -> dict[str, Any]:
        """Map one answer (HTTP status + parsed body) to ``data``, a permanent error or a RetryableError."""
        if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
            raise self._graphql_errors(config, operation, order_id, status, headers, body["errors"], state)
        if status is not None and status >= 400:
            snippet = self._scrub(config, text.strip()[:300]) if text else ""
            quoted = f": {snippet}" if snippet else ""
            kwargs: dict[str, Any] = {"http_status": status, "api_message": snippet or None}
            if status == 401:
                raise self._auth_error(config, f"HTTP 401{quoted}", **kwargs)
            if status == 403:
                raise NotAuthorizedError(
                    f"ezCater at {config.url} refused the request to {operation.verb} order '{order_id}' "
                    f"(HTTP 403){quoted}.",
                    **kwargs,
                )
            if _is_transient(status):
                raise self._transient(operation, status, headers, snippet or None, state)
            raise RequestRejectedError(
                f"ezCater at {config.url} rejected the request to {operation.verb} order '{order_id}' "
                f"(HTTP {status}){quoted}. Is the connection host the GraphQL endpoint URL?",
                **kwargs,
            )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise self._transient(operation, status or 200, headers, "not a GraphQL result", state)
        return data

    def _client_failure(
        self, config: _Config, operation: _Operation, exc: BaseException, state: _CallState
    ) -> Exception:
        permanent = configuration_failure(exc, f"ezCater at {config.url}", config.conn_id)
        if permanent is not None:
            return permanent
        described = self._scrub(config, describe_client_error(exc))
        if never_sent(exc):
            return RetryableError(f"could not connect to ezCater at {config.url} ({described})")
        if operation is not ORDER_QUERY:
            state.answer_lost = True
        return RetryableError(f"the connection to ezCater at {config.url} failed ({described})")

    # ---------------------------------------------------------------- execution

    def _call(
        self, operation: _Operation, variables: dict[str, Any], order_id: str, state: _CallState
    ) -> dict[str, Any]:
        config = self._get_config()
        return config.settings.retry_policy.call(
            lambda: self._execute_sync(config, operation, variables, order_id, state),
            what=self._what(operation, order_id),
            log=self.log,
        )

    def _execute_sync(
        self,
        config: _Config,
        operation: _Operation,
        variables: dict[str, Any],
        order_id: str,
        state: _CallState,
    ) -> dict[str, Any]:
        from gql.transport.exceptions import (
            TransportConnectionFailed,
            TransportProtocolError,
            TransportQueryError,
            TransportServerError,
        )

        seen: dict[str, Any] = {}

        def remember(response: Any, *args: Any, **kwargs: Any) -> None:
            seen["status"] = response.status_code
            seen["headers"] = response.headers
            seen["text"] = response.text

        request = _graphql_request(operation, variables)
        body: Any
        try:
            result = self._sync_session().execute(
                request, get_execution_result=True, extra_args={"hooks": {"response": [remember]}}
            )
            body = {"data": result.data}
        except TransportQueryError as exc:
            body = {"errors": exc.errors or [{"message": str(exc)}], "data": exc.data}
        except TransportServerError as exc:
            body = None
            seen.setdefault("status", exc.code)
        except TransportProtocolError:
            body = None
        except TransportConnectionFailed as exc:
            raise self._client_failure(config, operation, exc, state) from exc
        return self._interpret(
            config,
            operation,
            order_id,
            seen.get("status"),
            seen.get("headers") or {},
            body,
            seen.get("text") or "",
            state,
        )

    async def _execute_async(
        self,
        config: _Config,
        operation: _Operation,
        variables: dict[str, Any],
        order_id: str,
        state: _CallState,
    ) -> dict[str, Any]:
        import httpx

        client = shared_async_client(config.settings.verify_ssl)
        try:
            async with async_request_gate():
                response = await client.post(
                    config.url,
                    json={"query": operation.text, "variables": variables, "operationName": operation.name},
                    headers={**config.headers, "Accept": "application/json"},
                    timeout=async_timeout(config.settings.timeout),
                )
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise self._client_failure(config, operation, exc, state) from exc
        try:
            body = json.loads(response.text)
        except ValueError:
            body = None
        return self._interpret(
            config, operation, order_id, response.status_code, response.headers, body, response.text, state
        )


__all__ = [
    "ACCEPT_ORDER_MUTATION",
    "DEFAULT_ENDPOINT",
    "ORDER_QUERY",
    "REJECT_ORDER_MUTATION",
    "EzCaterHook",
    "normalize_code",
]
