"""Hook for the ezCater Orders API (GraphQL).

Connection (type ``ezcater``): host = GraphQL endpoint URL (empty → ``https://api.ezcater.com/graphql``,
no scheme → https, no path → ``/graphql``), password = API token (sent raw in ``Authorization``).
Extras: ``timeout``, ``verify_ssl``, ``max_retries``, ``retry_delay`` (shared with DataKitchen),
``client_name`` / ``client_version`` (the ``apollographql-client-*`` headers).

This module holds the connection's settings and the hook's calls: retries, and what to do with an
answer. The operations and both gql transports (requests on the sync path, httpx on the loop's shared
client for triggers) live in :mod:`._ezcater_graphql`; what an answer means, the same for both paths, in
:mod:`._ezcater_errors`. ``gql`` / ``graphql-core`` are imported inside the functions that use them,
never at module import.

``accept_order`` is retried on transient failures. When the API answers INVALID_STATE_TRANSITION the
hook reads the order once: if an earlier attempt of this same call sent the mutation and lost the answer
and the order is now ``accepted``, that attempt succeeded and the order is returned; otherwise
:class:`InvalidStateTransitionError` carries the order's current state.
"""

from __future__ import annotations

import functools
import json
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
from airflow_provider_orders.hooks._ezcater_errors import (
    CallState,
    client_failure,
    describe_call,
    interpret,
)
from airflow_provider_orders.hooks._ezcater_graphql import (
    ACCEPT_ORDER_MUTATION,
    ORDER_QUERY,
    REJECT_ORDER_MUTATION,
    Operation,
    SendFailed,
    aload,
    graphql_request,
    requests_transport,
    send_async,
    send_sync,
)
from airflow_provider_orders.hooks._http import async_timeout
from airflow_provider_orders.models.ezcater import OrderLifecycleState, lifecycle_state_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Connection
    from gql import Client, GraphQLRequest
    from gql.client import SyncClientSession
    from gql.transport.requests import RequestsHTTPTransport

DEFAULT_ENDPOINT = "https://api.ezcater.com/graphql"
DEFAULT_CLIENT_NAME = "airflow-provider-orders"
#: Order id used by test_connection: no order has it, so "Couldn't find Order" proves the token works.
PROBE_ORDER_ID = "00000000-0000-0000-0000-000000000000"


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

    @functools.cached_property
    def async_headers(self) -> dict[str, str]:
        """The headers of the async path (as before the move to gql: an explicit JSON ``Accept``)."""
        return {**self.headers, "Accept": "application/json"}


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

            config = self._get_config()
            transport = requests_transport(
                config.url,
                config.headers,
                timeout=config.settings.timeout,
                verify_ssl=config.settings.verify_ssl,
            )
            self._client = Client(transport=transport, fetch_schema_from_transport=False)
        return self._client

    def _sync_transport(self) -> RequestsHTTPTransport:
        """The connected transport of :meth:`get_conn`'s client."""
        if self._session is None:
            self._session = self.get_conn().connect_sync()
        transport: RequestsHTTPTransport = self._session.transport
        return transport

    def close(self) -> None:
        """Close the gql client and its HTTP session."""
        if self._client is not None and self._session is not None:
            self._client.close_sync()
        self._session = None
        self._client = None

    # ---------------------------------------------------------------- public API

    def get_order(self, order_id: str) -> dict[str, Any]:
        """The order (uuid, orderNumber, lifecycle.orderIsCurrently, caterer, event, totals, ...)."""
        data = self._call(ORDER_QUERY, {"orderId": order_id}, order_id, CallState())
        return self._order(order_id, data.get("order"))

    def accept_order(self, order_id: str, accept_modification: bool = False) -> dict[str, Any]:
        """Accept an order (or, with ``accept_modification=True``, its modification).

        :return: the ``order`` object of the answer: ``uuid`` and ``lifecycle.orderIsCurrently``.
        """
        variables = {"orderId": order_id, "acceptModification": bool(accept_modification)}
        state = CallState()
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
        self.log.info("Accepted ezCater order %s (now %s)", order_id, lifecycle_state_of(order))
        return order

    def reject_order(self, order_id: str, reason: str, explanation: str | None = None) -> dict[str, Any]:
        """Reject an order with a reason (e.g. ``AT_DAILY_CAPACITY``) and an optional explanation.

        :return: the ``order`` object of the answer: ``uuid`` and ``lifecycle.orderIsCurrently``.
        """
        reject_input: dict[str, Any] = {"reason": reason}
        if explanation is not None:
            reject_input["explanation"] = explanation
        variables = {"orderId": order_id, "rejectOrderInput": reject_input}
        state = CallState()
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
        self.log.info("Rejected ezCater order %s (%s; now %s)", order_id, reason, lifecycle_state_of(order))
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
        """Async :meth:`get_order` for triggers: gql's httpx transport on the event loop's shared client,
        the async connection lookup."""
        config = await self._aget_config()
        await aload()
        state = CallState()
        request = graphql_request(ORDER_QUERY, {"orderId": order_id})
        timeout = async_timeout(config.settings.timeout)

        async def attempt() -> dict[str, Any]:
            with state:
                try:
                    answer = await send_async(
                        config.url,
                        request,
                        headers=config.async_headers,
                        timeout=timeout,
                        verify_ssl=config.settings.verify_ssl,
                    )
                except SendFailed as failed:
                    raise client_failure(config, ORDER_QUERY, failed.error) from failed.error
                return interpret(answer, ORDER_QUERY, order_id, config)

        data = await config.settings.retry_policy.acall(
            attempt, what=describe_call(ORDER_QUERY, order_id), log=self.log
        )
        return self._order(order_id, data.get("order"))

    # ---------------------------------------------------------------- execution and results

    def _call(
        self, operation: Operation, variables: dict[str, Any], order_id: str, state: CallState
    ) -> dict[str, Any]:
        """One sync call: attempts under the connection's retry policy; ``state`` notes lost answers.

        A failure says whether any attempt may have reached ezCater (``reached_api``): a mutation that
        certainly never arrived proves nothing about the order's state.
        """
        try:
            config = self._get_config()
            request = graphql_request(operation, variables)
            return config.settings.retry_policy.call(
                lambda: self._attempt_sync(config, operation, request, order_id, state),
                what=describe_call(operation, order_id),
                log=self.log,
            )
        except OrdersProviderError as exc:
            exc.reached_api = state.reached
            raise

    def _attempt_sync(
        self, config: _Config, operation: Operation, request: GraphQLRequest, order_id: str, state: CallState
    ) -> dict[str, Any]:
        with state:
            try:
                answer = send_sync(self._sync_transport(), request)
            except SendFailed as failed:
                raise client_failure(config, operation, failed.error) from failed.error
            return interpret(answer, operation, order_id, config)

    @staticmethod
    def _order(order_id: str, order: Any) -> dict[str, Any]:
        if not isinstance(order, dict):
            raise OrderNotFoundError(f"ezCater has no order '{order_id}' (its answer carried no order).")
        return order

    @staticmethod
    def _payload_order(operation: Operation, order_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
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
        operation: Operation,
        order_id: str,
        error: InvalidStateTransitionError,
        state: CallState,
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
        current = lifecycle_state_of(order)
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


__all__ = [
    "ACCEPT_ORDER_MUTATION",
    "DEFAULT_ENDPOINT",
    "ORDER_QUERY",
    "REJECT_ORDER_MUTATION",
    "EzCaterHook",
]
