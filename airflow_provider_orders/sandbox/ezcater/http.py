"""ezCater sandbox: ``POST /graphql`` executed with graphql-core against ``schema.graphql``.

* ``Authorization: <token>`` (the raw token, no ``Bearer``). A missing or wrong token gets HTTP 401 with
  a GraphQL-style body ``{"errors": [{"message": ..., "extensions": {"code": "UNAUTHENTICATED"}}]}``:
  ezCater does not document this answer; the sandbox's choice is a plausible gateway reply.
* Every operation must be named: an anonymous one is refused (HTTP 400, ``GRAPHQL_VALIDATION_FAILED``),
  as are unparsable or invalid documents (Apollo-style 400 answers; not documented by ezCater either).
* Errors from ``order`` / ``acceptOrder`` / ``rejectOrder`` are the seed page's, field for field:
  ``Couldn't find Order`` (``statusCode: 404``), ``You are not authorized to access this data``
  (``statusCode: 403``), both ``type: request``, code ``DOWNSTREAM_SERVICE_ERROR`` and an ``exception``
  block; ``Feature not enabled for the caterer associated with this order`` (``type: summary``,
  ``FEATURE_NOT_ENABLED``, top-level ``locations``); ``Sorry, we were unable to accept this order.``
  (``type: summary``, ``INVALID_STATE_TRANSITION``, ``exception`` block). ``data.<field>`` is null.
  The HTTP status is 200 (GraphQL style) unless ``http_error_status=True``, which sends the error's
  ``statusCode`` (404 / 403) as the HTTP status. ``error_code_style="seed"`` sends codes as the seed's
  flattened copy spells them (``downstream service error``, ``feature not enabled``,
  ``invalid state transition``) instead of the upper-case identifiers.

Route names for the request log and faults: ``"graphql"`` (every request) and the operation's root
field names (``"order"``, ``"acceptOrder"``, ``"rejectOrder"``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)

from airflow_provider_orders.sandbox._server import (
    AdminError,
    Request,
    Response,
    Route,
    SandboxServer,
    admin_object,
)
from airflow_provider_orders.sandbox.ezcater.models import (
    DEMO_ORDERS,
    EzCaterModel,
    EzOrder,
    FeatureNotEnabledError,
    InvalidStateTransitionError,
    NotAuthorizedError,
    OrderNotFoundError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from graphql import DocumentNode, GraphQLResolveInfo

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
SERVICE_NAME = "orders-public"
ROUTE_NAMES = frozenset({"graphql", "order", "acceptOrder", "rejectOrder"})
NOT_FOUND_MESSAGE = "Couldn't find Order"
NOT_AUTHORIZED_MESSAGE = "You are not authorized to access this data"
FEATURE_NOT_ENABLED_MESSAGE = "Feature not enabled for the caterer associated with this order"
ERROR_CODE_STYLES = ("upper", "seed")


# ------------------------------------------------------------------------------------------ schema
def _resolve_order(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:
    model: EzCaterModel = info.context
    return model.get(id).to_graphql()


def _resolve_accept(
    _root: Any, info: GraphQLResolveInfo, orderId: str, acceptModification: bool | None = False
) -> dict[str, Any]:
    model: EzCaterModel = info.context
    return {"order": model.accept(orderId, bool(acceptModification)).to_graphql()}


def _resolve_reject(
    _root: Any, info: GraphQLResolveInfo, orderId: str, rejectOrderInput: dict[str, Any]
) -> dict[str, Any]:
    model: EzCaterModel = info.context
    order = model.reject(orderId, rejectOrderInput["reason"], rejectOrderInput.get("explanation"))
    return {"order": order.to_graphql()}


@functools.lru_cache(maxsize=1)
def schema() -> GraphQLSchema:
    """The executable schema (built once per process from ``schema.graphql``)."""
    built = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert built.query_type is not None
    assert built.mutation_type is not None
    built.query_type.fields["order"].resolve = _resolve_order
    built.mutation_type.fields["acceptOrder"].resolve = _resolve_accept
    built.mutation_type.fields["rejectOrder"].resolve = _resolve_reject
    return built


# ------------------------------------------------------------------------------------------ requests
@dataclass
class _Prepared:
    """A /graphql request parsed far enough to name its routes (or the 400 answer it gets)."""

    error: Response | None = None
    document: DocumentNode | None = None
    operation_name: str | None = None
    variables: dict[str, Any] | None = None
    root_fields: list[str] = field(default_factory=list)


def _request_error(message: str, code: str, locations: Iterable[Any] = ()) -> Response:
    error: dict[str, Any] = {"message": message}
    locs = [{"line": loc.line, "column": loc.column} for loc in locations]
    if locs:
        error["locations"] = locs
    error["extensions"] = {"code": code}
    return Response.json(400, {"errors": [error]})


def _prepare(request: Request) -> _Prepared:
    try:
        payload = request.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return _Prepared(
            _request_error(
                'POST a JSON body {"query": ..., "variables": {...}, "operationName": ...}', "BAD_REQUEST"
            )
        )
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return _Prepared(_request_error('"variables" must be a JSON object', "BAD_REQUEST"))
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return _Prepared(_request_error('"operationName" must be a string', "BAD_REQUEST"))
    try:
        document = parse(payload["query"])
    except GraphQLError as exc:
        return _Prepared(_request_error(exc.message, "GRAPHQL_PARSE_FAILED", exc.locations or ()))
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        message = (
            f'Unknown operation named "{operation_name}".'
            if operation_name
            else "Must provide operation name if query contains multiple operations."
        )
        return _Prepared(_request_error(message, "BAD_REQUEST"), document, operation_name)
    prepared = _Prepared(
        None,
        document,
        operation.name.value if operation.name else operation_name,
        variables,
        _root_fields(operation),
    )
    if operation.name is None:
        kind = operation.operation.value
        example = (
            "mutation AcceptOrder($orderId: ID!) { ... }"
            if kind == "mutation"
            else ("query Order($orderId: ID!) { ... }")
        )
        loc = (
            document.loc.source.get_location(operation.loc.start) if operation.loc and document.loc else None
        )
        prepared.error = _request_error(
            f"Anonymous operations are not accepted: name every {kind}, e.g. {example}",
            "GRAPHQL_VALIDATION_FAILED",
            [loc] if loc else (),
        )
    return prepared


def _root_fields(operation: OperationDefinitionNode) -> list[str]:
    return [s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)]


class EzCaterSandbox(SandboxServer):
    """A local ezCater public API (GraphQL); see the module docstring for the answers it gives.

    :param port: TCP port on 127.0.0.1; 0 picks a free one.
    :param token: the API token clients must send (raw) in ``Authorization``.
    :param error_code_style: ``"upper"`` (``FEATURE_NOT_ENABLED``...) or ``"seed"``
        (``feature not enabled``...: the seed page's spelling).
    :param http_error_status: send 404 / 403 as the HTTP status of not-found / not-authorized errors
        (default: 200, GraphQL style).
    :param demo_orders: seed :data:`~airflow_provider_orders.sandbox.ezcater.models.DEMO_ORDERS`
        (again after each reset).
    :param clock: epoch-seconds clock for timed transitions.
    :param verbose: print an access log line per request to stderr.
    """

    service = "ezcater"
    route_names = ROUTE_NAMES
    api_path = "/graphql"

    def __init__(
        self,
        port: int = 0,
        token: str = "sandbox-token",
        *,
        error_code_style: str = "upper",
        http_error_status: bool = False,
        demo_orders: bool = False,
        clock: Callable[[], float] | None = None,
        verbose: bool = False,
    ) -> None:
        if error_code_style not in ERROR_CODE_STYLES:
            raise ValueError(f"error_code_style must be 'upper' or 'seed', got {error_code_style!r}")
        super().__init__(port, verbose=verbose)
        self.token = token
        self.error_code_style = error_code_style
        self.http_error_status = http_error_status
        self.demo_orders = demo_orders
        self.model = EzCaterModel(clock)
        if demo_orders:
            self.seed_demo_orders()

    def __enter__(self) -> EzCaterSandbox:
        self.start()
        return self

    # ---------------------------------------------------------------- Python API
    @property
    def graphql_url(self) -> str:
        """``http://127.0.0.1:<port>/graphql``: the endpoint clients are configured with."""
        return self.url + self.api_path

    def add_order(
        self,
        uuid: str | None = None,
        state: str = "submitted",
        caterer_uuid: str | None = None,
        feature_enabled: bool = True,
        authorized: bool = True,
        pending_modification: bool = False,
        transitions: Iterable[tuple[str, float]] | None = None,
    ) -> str:
        """Seed an order and return its uuid.

        ``transitions=[("submitted", 2.0)]``: state changes that happen by themselves, each the given
        seconds after the previous one; the target ``"modified"`` flags a pending modification.
        """
        return self.model.add_order(
            uuid, state, caterer_uuid, feature_enabled, authorized, pending_modification, transitions
        )

    def order_state(self, uuid: str) -> str:
        """The order's ``lifecycle.orderIsCurrently`` now (KeyError for an unknown uuid)."""
        return self.model.order_state(uuid)

    def update_order(
        self,
        uuid: str,
        *,
        state: str | None = None,
        pending_modification: bool | None = None,
        feature_enabled: bool | None = None,
        authorized: bool | None = None,
    ) -> None:
        """Change a seeded order from outside (the customer cancels, a modification arrives...)."""
        try:
            self.model.update_order(
                uuid,
                state=state,
                pending_modification=pending_modification,
                feature_enabled=feature_enabled,
                authorized=authorized,
            )
        except OrderNotFoundError:
            raise KeyError(uuid) from None

    @property
    def orders(self) -> dict[str, EzOrder]:
        """uuid -> :class:`EzOrder` (a snapshot of the dict; the orders themselves are live)."""
        with self.model.lock:
            return dict(self.model.orders)

    def seed_demo_orders(self) -> dict[str, str]:
        """Seed the demo orders (name -> uuid); an order already present is left as it is."""
        seeded = {}
        for name, spec in DEMO_ORDERS.items():
            if spec["uuid"] not in self.model.orders:
                self.add_order(**spec)
            seeded[name] = spec["uuid"]
        return seeded

    def connection_json(self, conn_extra: dict[str, Any] | None = None) -> str:
        """``AIRFLOW_CONN_EZCATER_DEFAULT`` value for this sandbox; ``conn_extra`` becomes the extras."""
        return json.dumps(
            {
                "conn_type": "ezcater",
                "host": self.graphql_url,
                "password": self.token,
                "extra": dict(conn_extra or {}),
            }
        )

    # ---------------------------------------------------------------- SandboxServer hooks
    def _reset_state(self) -> None:
        self.model.reset()
        if self.demo_orders:
            self.seed_demo_orders()

    def _admin_orders(self) -> Any:
        return self.model.snapshot()

    def _admin(self, request: Request, name: str) -> Response | None:
        if name == "orders" and request.method == "POST":
            spec = admin_object(request)
            try:
                if "transitions" in spec:
                    spec["transitions"] = [(str(s), float(t)) for s, t in spec["transitions"] or []]
                uuid = self.add_order(**spec)
            except (TypeError, ValueError) as exc:
                raise AdminError(
                    f"cannot seed the order: {exc}; fields: uuid, state, caterer_uuid, feature_enabled, "
                    "authorized, pending_modification, transitions ([[state, seconds], ...])"
                ) from exc
            return Response.json(201, {"uuid": uuid, "state": self.order_state(uuid)})
        if name.startswith("orders/"):
            uuid = name[len("orders/") :]
            if uuid not in self.model.orders:
                return Response.json(404, {"error": f"no order {uuid}"})
            if request.method == "POST":
                changes = admin_object(request)
                try:
                    self.update_order(uuid, **changes)
                except (TypeError, ValueError) as exc:
                    raise AdminError(
                        f"cannot update the order: {exc}; fields: state, pending_modification, "
                        "feature_enabled, authorized"
                    ) from exc
            if request.method in ("GET", "POST"):
                return Response.json(200, self.model.orders[uuid].to_admin())
        return None

    def _route(self, request: Request) -> Route:
        if request.path.rstrip("/") != self.api_path:
            return Route(
                None,
                (),
                lambda: Response.json(
                    404, {"errors": [{"message": f"no route {request.path}; use POST /graphql"}]}
                ),
            )
        if request.method != "POST":
            return Route(
                "graphql",
                ("graphql",),
                lambda: Response.json(405, {"errors": [{"message": "use POST /graphql with a JSON body"}]}),
            )
        prepared = _prepare(request)
        roots = prepared.root_fields
        return Route(
            roots[0] if len(roots) == 1 else "graphql",
            ("graphql", *roots),
            lambda: self._execute(request, prepared),
            operation_name=prepared.operation_name,
            root_field=roots[0] if roots else None,
        )

    # ---------------------------------------------------------------- execution
    def _execute(self, request: Request, prepared: _Prepared) -> Response:
        sent = (request.header("authorization") or "").strip()
        if sent != self.token:
            if sent.lower().startswith("bearer ") and sent[7:].strip() == self.token:
                hint = "send the raw API token in the Authorization header, without the 'Bearer ' prefix"
            elif not sent:
                hint = "the Authorization header with your API token is missing"
            else:
                hint = "the API token in the Authorization header is not valid"
            return Response.json(
                401,
                {"errors": [{"message": f"Unauthorized: {hint}", "extensions": {"code": "UNAUTHENTICATED"}}]},
            )
        if prepared.error is not None:
            return prepared.error
        assert prepared.document is not None
        problems = validate(schema(), prepared.document)
        if problems:
            return Response.json(
                400,
                {
                    "errors": [
                        {**e.formatted, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for e in problems
                    ]
                },
            )
        result = execute_sync(
            schema(),
            prepared.document,
            variable_values=prepared.variables,
            operation_name=prepared.operation_name,
            context_value=self.model,
        )
        if result.data is None and result.errors:  # variables could not be coerced: nothing ran
            return Response.json(
                400,
                {
                    "errors": [
                        {**e.formatted, "extensions": {"code": "BAD_USER_INPUT"}} for e in result.errors
                    ]
                },
            )
        errors = [self._format_error(e) for e in result.errors or []]
        body: dict[str, Any]
        if errors and errors[0].get("extensions", {}).get("type") == "summary" and "locations" in errors[0]:
            body = {"data": result.data, "errors": errors}  # the seed's order for feature-not-enabled
        elif errors:
            body = {"errors": errors, "data": result.data}
        else:
            body = {"data": result.data}
        status = 200
        if self.http_error_status and errors:
            status = int(errors[0].get("extensions", {}).get("statusCode", 200))
        return Response.json(status, body)

    def _code(self, code: str) -> str:
        return code.lower().replace("_", " ") if self.error_code_style == "seed" else code

    def _format_error(self, error: GraphQLError) -> dict[str, Any]:
        original = error.original_error
        path = list(error.path or [])
        locations = [{"line": loc.line, "column": loc.column} for loc in error.locations or []]
        if isinstance(original, (OrderNotFoundError, NotAuthorizedError)):
            found = isinstance(original, OrderNotFoundError)
            message = NOT_FOUND_MESSAGE if found else NOT_AUTHORIZED_MESSAGE
            return {
                "message": message,
                "path": path,
                "extensions": {
                    "type": "request",
                    "statusCode": 404 if found else 403,
                    "serviceName": SERVICE_NAME,
                    "code": self._code("DOWNSTREAM_SERVICE_ERROR"),
                    "exception": {"message": message, "locations": locations, "path": path},
                },
            }
        if isinstance(original, FeatureNotEnabledError):
            return {
                "message": FEATURE_NOT_ENABLED_MESSAGE,
                "locations": locations,
                "path": path,
                "extensions": {"type": "summary", "code": self._code("FEATURE_NOT_ENABLED")},
            }
        if isinstance(original, InvalidStateTransitionError):
            message = f"Sorry, we were unable to {original.action} this order."
            return {
                "message": message,
                "path": path,
                "extensions": {
                    "type": "summary",
                    "code": self._code("INVALID_STATE_TRANSITION"),
                    "serviceName": SERVICE_NAME,
                    "exception": {"message": message, "locations": locations, "path": path},
                },
            }
        return dict(error.formatted)


__all__ = ["ROUTE_NAMES", "SCHEMA_PATH", "EzCaterSandbox", "schema"]
