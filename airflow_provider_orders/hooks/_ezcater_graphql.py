"""ezCater over GraphQL: the operations, the gql request of one call, both gql transports, and how an
answer is captured.

* :data:`ORDER_QUERY`, :data:`ACCEPT_ORDER_MUTATION`, :data:`REJECT_ORDER_MUTATION`: named operations
  that take their input as variables. Each document is parsed once per process and printed back to text
  once (:func:`graphql_request`), whichever path sends it.
* Sync path: :func:`requests_transport` (gql's ``RequestsHTTPTransport``) and :func:`send_sync`.
* Async path (triggers): :func:`send_async` over gql's ``HTTPXAsyncTransport``, whose ``connect()``
  borrows the running loop's shared ``httpx.AsyncClient`` (:func:`.shared_async_client`) and whose
  ``close()`` leaves it open for the loop's other triggers; the loop's request gate of that host is held
  around the request only. :func:`aload` imports gql off the event loop, once per process.
* Both transports return every answer as an :class:`Answer` (HTTP status, headers, parsed body, text),
  carried by the result or by the error of that very call: no state shared between calls. What an answer
  means is :func:`._ezcater_errors.interpret`'s business. gql, graphql-core and the HTTP clients are
  imported inside the functions that use them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_orders.hooks._http import async_request_gate, shared_async_client, url_host

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx
    from gql import GraphQLRequest
    from gql.transport.httpx import HTTPXAsyncTransport
    from gql.transport.requests import RequestsHTTPTransport
    from graphql import ExecutionResult

#: The service name of ezCater's request gates and shared clients (:mod:`._http`).
SERVICE = "ezcater"

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
class Operation:
    """One named GraphQL operation: its ``name`` (``operationName``), the ``root_field`` of ``data``
    that holds the answer, the ``verb`` messages use, its ``text``, and whether it is a ``mutation`` (whose
    lost answer may hide a change the server made)."""

    name: str
    root_field: str
    verb: str
    text: str
    mutation: bool = False


ORDER_QUERY = Operation(
    "Order",
    "order",
    "read",
    "query Order($orderId: ID!) {\n  order(id: $orderId) {" + _ORDER_FIELDS + "  }\n}\n",
)
ACCEPT_ORDER_MUTATION = Operation(
    "AcceptOrder",
    "acceptOrder",
    "accept",
    """mutation AcceptOrder($orderId: ID!, $acceptModification: Boolean) {
  acceptOrder(orderId: $orderId, acceptModification: $acceptModification) {
    order { uuid lifecycle { orderIsCurrently } }
  }
}
""",
    mutation=True,
)
REJECT_ORDER_MUTATION = Operation(
    "RejectOrder",
    "rejectOrder",
    "reject",
    """mutation RejectOrder($orderId: ID!, $rejectOrderInput: RejectOrderInput!) {
  rejectOrder(orderId: $orderId, rejectOrderInput: $rejectOrderInput) {
    order { uuid lifecycle { orderIsCurrently } }
  }
}
""",
    mutation=True,
)


_SUBSCRIPTION_FIELDS = "eventEntity eventKey parentEntity parentId subscriberId"
_SUBSCRIBER_FIELDS = "id name webhookUrl subscriptions { " + _SUBSCRIPTION_FIELDS + " }"

SUBSCRIBERS_QUERY = Operation(
    "Subscribers",
    "subscribers",
    "read",
    "query Subscribers {\n  subscribers { " + _SUBSCRIBER_FIELDS + " }\n}\n",
)
CATERERS_QUERY = Operation(
    "Caterers",
    "caterers",
    "read",
    """query Caterers($ids: [ID!], $uuids: [ID!]) {
  caterers(ids: $ids, uuids: $uuids) { id uuid name storeNumber }
}
""",
)
#: The only answer that carries ``webhookSecret``: never re-sent once it may have reached ezCater.
CREATE_SUBSCRIBER_MUTATION = Operation(
    "CreateSubscriber",
    "createSubscriber",
    "create",
    """mutation CreateSubscriber($subscriberParams: CreateSubscriberParams!) {
  createSubscriber(subscriberParams: $subscriberParams) {
    subscriber { id name webhookUrl webhookSecret subscriptions { """
    + _SUBSCRIPTION_FIELDS
    + """ } }
  }
}
""",
    mutation=True,
)
UPDATE_SUBSCRIBER_MUTATION = Operation(
    "UpdateSubscriber",
    "updateSubscriber",
    "update",
    """mutation UpdateSubscriber($subscriberId: ID!, $subscriberParams: UpdateSubscriberParams!) {
  updateSubscriber(subscriberId: $subscriberId, subscriberParams: $subscriberParams) {
    subscriber { """
    + _SUBSCRIBER_FIELDS
    + """ }
  }
}
""",
    mutation=True,
)
CREATE_SUBSCRIPTION_MUTATION = Operation(
    "CreateSubscription",
    "createSubscription",
    "create",
    """mutation CreateSubscription($subscriptionParams: CreateSubscriptionParams!) {
  createSubscription(subscriptionParams: $subscriptionParams) {
    subscription { """
    + _SUBSCRIPTION_FIELDS
    + """ }
  }
}
""",
    mutation=True,
)


# ---------- The request of one call


_PREPARED: dict[str, tuple[GraphQLRequest, str]] = {}


def _prepared(operation: Operation) -> tuple[GraphQLRequest, str]:
    """The operation's gql document and its printed text, both made once per process."""
    prepared = _PREPARED.get(operation.name)
    if prepared is None:
        from gql import gql
        from graphql import print_ast

        document = gql(operation.text)
        prepared = _PREPARED[operation.name] = (document, print_ast(document.document))
    return prepared


@functools.cache
def _prepared_request_class() -> type[GraphQLRequest]:
    """A ``GraphQLRequest`` whose query text is printed once per operation and process: gql 4 prints the
    document back to text (``graphql.print_ast``) for every request body, a tenth of a millisecond."""
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


def graphql_request(operation: Operation, variables: dict[str, Any]) -> GraphQLRequest:
    """The gql request of one call: the operation's document (parsed once) and these variables."""
    document, text = _prepared(operation)
    request: Any = _prepared_request_class()(
        document, variable_values=variables, operation_name=operation.name
    )
    request.query_text = text
    return request


# ---------- Answers


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as the error mapping reads it: ``status``, ``headers`` (case-insensitive), the
    parsed JSON ``body`` (None when the body is not JSON) and the body as ``text``."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str

    @classmethod
    def of(cls, response: Any) -> Answer:
        """From a ``requests.Response`` or an ``httpx.Response`` (both fully read)."""
        text = response.text
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return cls(response.status_code, response.headers, body, text)

    @property
    def is_graphql(self) -> bool:
        """True when the body is a GraphQL result (an object with ``data`` or ``errors``)."""
        return isinstance(self.body, dict) and ("data" in self.body or "errors" in self.body)


class AnswerCarrier(Exception):
    """Mixin of the errors a transport raises for an answer that is not a GraphQL result: the answer."""

    answer: Answer


class SendFailed(Exception):
    """The request got no answer (refused, reset, timed out, bad URL): ``error`` is the HTTP client's."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@functools.cache
def _captured_types() -> tuple[type[ExecutionResult], type[AnswerCarrier], type[AnswerCarrier]]:
    """An ``ExecutionResult`` that carries its :class:`Answer`, and the two gql transport errors for an
    answer that is not a GraphQL result (server error from 400 on, protocol error below), carrying it."""
    from gql.transport.exceptions import TransportProtocolError, TransportServerError
    from graphql import ExecutionResult

    class CapturedResult(ExecutionResult):
        __slots__ = ("answer",)
        answer: Answer

    class NotGraphQLServerError(AnswerCarrier, TransportServerError):
        pass

    class NotGraphQLProtocolError(AnswerCarrier, TransportProtocolError):
        pass

    return CapturedResult, NotGraphQLServerError, NotGraphQLProtocolError


def _result_of(response: Any) -> ExecutionResult:
    """The ``_prepare_result`` of both transports: gql's result, which also carries the :class:`Answer`.

    An answer that is not a GraphQL result raises what gql raises for it (``TransportServerError`` from
    HTTP 400 on, else ``TransportProtocolError``), so the gql ``Client`` of :meth:`.EzCaterHook.get_conn`
    behaves as gql documents; the error carries the answer too.
    """
    answer = Answer.of(response)
    result_type, server_error, protocol_error = _captured_types()
    if not answer.is_graphql:
        reason = "Not a JSON answer" if answer.body is None else 'No "data" or "errors" keys in answer'
        message = f"Server did not return a GraphQL result (HTTP {answer.status}): {reason}"
        error = server_error(message, answer.status) if answer.status >= 400 else protocol_error(message)
        error.answer = answer
        raise error
    body = answer.body
    result: Any = result_type(
        data=body.get("data"), errors=body.get("errors"), extensions=body.get("extensions")
    )
    result.answer = answer
    return result


def _answer_of(result: ExecutionResult) -> Answer:
    answer = getattr(result, "answer", None)
    if not isinstance(answer, Answer):  # pragma: no cover - a gql without _prepare_result
        raise TypeError("the gql transport did not capture the answer (gql >= 4 is required)")
    return answer


# ---------- Sync path: gql's RequestsHTTPTransport


@functools.cache
def _requests_transport_class() -> type[RequestsHTTPTransport]:
    from gql.transport.requests import RequestsHTTPTransport

    class CapturingRequestsTransport(RequestsHTTPTransport):
        """gql's requests transport whose results (and non-GraphQL errors) carry the answer."""

        def _prepare_result(self, response: Any) -> ExecutionResult:
            self.response_headers = response.headers  # as gql's own does
            return _result_of(response)

    return CapturingRequestsTransport


def requests_transport(
    url: str, headers: Mapping[str, str], *, timeout: float, verify_ssl: bool
) -> RequestsHTTPTransport:
    """The sync transport of one hook (no gql retries: the hook retries)."""
    options: dict[str, Any] = {"timeout": timeout, "verify": verify_ssl, "retries": 0}  # float timeout
    return _requests_transport_class()(url=url, headers=dict(headers), **options)


def send_sync(transport: RequestsHTTPTransport, request: GraphQLRequest) -> Answer:
    """POST one request on a connected transport; the answer whatever it says.

    :raises SendFailed: no answer came (``error`` is the requests exception).
    """
    from gql.transport.exceptions import TransportConnectionFailed

    try:
        return _answer_of(transport.execute(request))
    except AnswerCarrier as exc:
        return exc.answer
    except TransportConnectionFailed as exc:
        raise SendFailed(exc.__cause__ or exc) from exc


# ---------- Async path: gql's HTTPXAsyncTransport on the loop's shared httpx.AsyncClient


@functools.cache
def _httpx_transport_class() -> type[HTTPXAsyncTransport]:
    from gql.transport.httpx import HTTPXAsyncTransport

    class SharedClientTransport(HTTPXAsyncTransport):
        """gql's httpx transport on the running loop's shared client; results carry the answer."""

        def __init__(self, url: str, *, verify_ssl: bool) -> None:
            super().__init__(url=url)
            self.verify_ssl = verify_ssl

        async def connect(self) -> None:
            # Any: gql types the client as httpx2.AsyncClient when httpx2 is installed (openlineage brings
            # it); the shared client is httpx.AsyncClient, whose API gql uses alike.
            self.client = cast(Any, shared_async_client(self.verify_ssl, SERVICE, url_host(self.url)))

        async def close(self) -> None:
            self.client = None  # the loop's other triggers keep using it

        def _prepare_result(self, response: Any) -> ExecutionResult:
            self.response_headers = response.headers  # as gql's own does
            return _result_of(response)

    return SharedClientTransport


def _load() -> None:
    """Import gql and graphql-core and prepare what the async path uses (the work of :func:`aload`)."""
    import gql.transport.exceptions
    import gql.transport.httpx  # noqa: F401

    try:  # what httpx's first async request imports (its anyio backend): not on the loop either
        import anyio._backends._asyncio  # noqa: F401
        import httpcore._backends.anyio  # noqa: F401
    except ImportError:  # pragma: no cover - other versions: they import it themselves
        pass
    for operation in (ORDER_QUERY, ACCEPT_ORDER_MUTATION, REJECT_ORDER_MUTATION):
        _prepared(operation)
    _prepared_request_class()
    _captured_types()
    _httpx_transport_class()


_LOADED = False
_LOADING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[None]] = (
    weakref.WeakKeyDictionary()
)


async def aload() -> None:
    """Make the async path ready: gql and graphql-core imported, the operations parsed.

    Importing gql and graphql-core takes about 0.2 s, once per process. Done on a triggerer's event loop
    it would stall every trigger of the loop that long; here it runs in a worker thread, once, and every
    caller awaits that one import inside the loop's request gate (it is the first step of a request), so
    that a thousand triggers waiting for it resume a few at a time, not all in one loop iteration.
    """
    global _LOADED
    if _LOADED:
        return
    # the waiters resume a few at a time, not a thousand at once (a gate of its own: no API is involved)
    async with async_request_gate(SERVICE, "gql import", wait=None):
        if _LOADED:
            return
        loop = asyncio.get_running_loop()
        loading = _LOADING.get(loop)
        if loading is None:
            loading = _LOADING[loop] = asyncio.ensure_future(asyncio.to_thread(_load))
        try:
            await asyncio.shield(loading)  # a cancelled trigger does not cancel the others' wait
        finally:
            if loading.done():
                _LOADING.pop(loop, None)  # the future refers to its loop: keep no loop alive
        _LOADED = True


def _is_httpx_failure(error: BaseException) -> bool:
    """An httpx failure to get an answer: transport errors and unusable URLs (not bugs, not decoding)."""
    import httpx

    return isinstance(error, (httpx.TransportError, httpx.InvalidURL))


async def send_async(
    url: str,
    request: GraphQLRequest,
    *,
    headers: Mapping[str, str],
    timeout: httpx.Timeout,
    verify_ssl: bool,
) -> Answer:
    """POST one request through gql's httpx transport on the running loop's shared client of the
    endpoint's host, holding the loop's request gate of that host for the request only (waiting for it at
    most the read timeout); the answer whatever it says.

    Call :func:`aload` first (once): it keeps gql's import off the event loop.

    :raises SendFailed: no answer came (``error`` is the httpx exception).
    :raises RequestGateTimeout: no slot of the gate freed in time (retryable; nothing was sent).
    """
    from gql.transport.exceptions import TransportConnectionFailed

    transport: Any = _httpx_transport_class()(url, verify_ssl=verify_ssl)
    await transport.connect()
    try:
        async with async_request_gate(SERVICE, url_host(url), wait=timeout.read):
            result = await transport.execute(request, extra_args={"headers": headers, "timeout": timeout})
        return _answer_of(result)
    except AnswerCarrier as exc:
        return exc.answer
    except TransportConnectionFailed as exc:
        cause = exc.__cause__
        if cause is None or not _is_httpx_failure(cause):
            raise  # not a failure to get an answer (a bug, an undecodable body): not retried
        raise SendFailed(cause) from cause
    finally:
        await transport.close()


__all__ = [
    "ACCEPT_ORDER_MUTATION",
    "CATERERS_QUERY",
    "CREATE_SUBSCRIBER_MUTATION",
    "CREATE_SUBSCRIPTION_MUTATION",
    "ORDER_QUERY",
    "REJECT_ORDER_MUTATION",
    "SUBSCRIBERS_QUERY",
    "UPDATE_SUBSCRIBER_MUTATION",
    "Answer",
    "AnswerCarrier",
    "Operation",
    "SendFailed",
    "aload",
    "graphql_request",
    "requests_transport",
    "send_async",
    "send_sync",
]
