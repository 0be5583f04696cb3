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

* Subscriptions (``subscribers``, ``caterers``, ``createSubscriber``, ``updateSubscriber``,
  ``createSubscription``): one subscriber per API token; a second ``createSubscriber`` gets
  ``Subscriber already exists for this API user`` (``type: summary``, ``SUBSCRIBER_ALREADY_EXISTS``);
  an unknown ``subscriberId`` in ``updateSubscriber`` gets ``Couldn't find Subscriber`` (shaped like
  ``Couldn't find Order``, ``statusCode: 404``); a refused parameter gets ``Invalid <field>: ...``
  (``type: summary``, ``BAD_USER_INPUT``, ``extensions.field`` = the parameter's name).
  ``webhookSecret`` is only ever answered by ``createSubscriber``.
* Whenever an order enters a state, its subscribers get a signed delivery (``notifications.py``).

Route names for the request log and faults: ``"graphql"`` (every request) and the operation's root
field names (``"order"``, ``"acceptOrder"``, ``"rejectOrder"``, ``"subscribers"``, ``"caterers"``,
``"createSubscriber"``, ``"updateSubscriber"``, ``"createSubscription"``).
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import traceback
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
    EVENT_ENTITY,
    PARENT_ENTITY,
    SUBSCRIBER_EXISTS_MESSAGE,
    EzCaterModel,
    EzOrder,
    FeatureNotEnabledError,
    InvalidInputError,
    InvalidStateTransitionError,
    NotAuthorizedError,
    OrderEvent,
    OrderNotFoundError,
    SubscriberExistsError,
    SubscriberNotFoundError,
)
from airflow_provider_orders.sandbox.ezcater.notifications import DeliveryEngine, DeliveryFault

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from graphql import DocumentNode, GraphQLResolveInfo

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
SERVICE_NAME = "orders-public"
ROUTE_NAMES = frozenset(
    {
        "graphql",
        "order",
        "acceptOrder",
        "rejectOrder",
        "subscribers",
        "caterers",
        "createSubscriber",
        "updateSubscriber",
        "createSubscription",
    }
)
NOT_FOUND_MESSAGE = "Couldn't find Order"
SUBSCRIBER_NOT_FOUND_MESSAGE = "Couldn't find Subscriber"
NOT_AUTHORIZED_MESSAGE = "You are not authorized to access this data"
FEATURE_NOT_ENABLED_MESSAGE = "Feature not enabled for the caterer associated with this order"
ERROR_CODE_STYLES = ("upper", "seed")
#: Seconds between two runs of the ticker that applies due timed transitions (and so sends their
#: notifications) when nobody reads the orders.
TICK_SECONDS = 0.2


# ------------------------------------------------------------------------------------------ schema
@dataclass
class _Context:
    """What resolvers see as ``info.context``: the model and the calling API user's token."""

    model: EzCaterModel
    token: str


def _resolve_order(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:
    context: _Context = info.context
    return context.model.get(id).to_graphql()


def _resolve_accept(
    _root: Any, info: GraphQLResolveInfo, orderId: str, acceptModification: bool | None = False
) -> dict[str, Any]:
    context: _Context = info.context
    return {"order": context.model.accept(orderId, bool(acceptModification)).to_graphql()}


def _resolve_reject(
    _root: Any, info: GraphQLResolveInfo, orderId: str, rejectOrderInput: dict[str, Any]
) -> dict[str, Any]:
    context: _Context = info.context
    order = context.model.reject(orderId, rejectOrderInput["reason"], rejectOrderInput.get("explanation"))
    return {"order": order.to_graphql()}


def _resolve_subscribers(_root: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    context: _Context = info.context
    subscriber = context.model.subscriber_of(context.token)
    return [] if subscriber is None else [subscriber.to_graphql()]


def _resolve_caterers(
    _root: Any, info: GraphQLResolveInfo, ids: list[str] | None = None, uuids: list[str] | None = None
) -> list[dict[str, Any]]:
    context: _Context = info.context
    return [c.to_graphql() for c in context.model.list_caterers(ids, uuids)]


def _resolve_create_subscriber(
    _root: Any, info: GraphQLResolveInfo, subscriberParams: dict[str, Any]
) -> dict[str, Any]:
    context: _Context = info.context
    subscriber = context.model.create_subscriber(
        context.token, subscriberParams["name"], subscriberParams["webhookUrl"]
    )
    return {"subscriber": subscriber.to_graphql(with_secret=True)}


def _resolve_update_subscriber(
    _root: Any, info: GraphQLResolveInfo, subscriberId: str, subscriberParams: dict[str, Any]
) -> dict[str, Any]:
    context: _Context = info.context
    subscriber = context.model.update_subscriber(
        context.token, subscriberId, subscriberParams.get("name"), subscriberParams.get("webhookUrl")
    )
    return {"subscriber": subscriber.to_graphql()}


def _resolve_create_subscription(
    _root: Any, info: GraphQLResolveInfo, subscriptionParams: dict[str, Any]
) -> dict[str, Any]:
    context: _Context = info.context
    p = subscriptionParams
    subscription = context.model.create_subscription(
        context.token, p["eventEntity"], p["eventKey"], p["parentEntity"], p["parentId"], p["subscriberId"]
    )
    return {"subscription": subscription.to_graphql()}


@functools.lru_cache(maxsize=1)
def schema() -> GraphQLSchema:
    """The executable schema (built once per process from ``schema.graphql``)."""
    built = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert built.query_type is not None
    assert built.mutation_type is not None
    built.query_type.fields["order"].resolve = _resolve_order
    built.mutation_type.fields["acceptOrder"].resolve = _resolve_accept
    built.mutation_type.fields["rejectOrder"].resolve = _resolve_reject
    built.query_type.fields["subscribers"].resolve = _resolve_subscribers
    built.query_type.fields["caterers"].resolve = _resolve_caterers
    built.mutation_type.fields["createSubscriber"].resolve = _resolve_create_subscriber
    built.mutation_type.fields["updateSubscriber"].resolve = _resolve_update_subscriber
    built.mutation_type.fields["createSubscription"].resolve = _resolve_create_subscription
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
    :param clock: epoch-seconds clock for timed transitions (and the notifications' times).
    :param verbose: print an access log line per request to stderr.
    :param delivery_retry_base: seconds before a failed notification delivery is retried; each further
        retry waits twice as long.
    :param delivery_retry_max_delay: the longest wait between two delivery attempts.
    :param delivery_max_attempts: attempts per delivery (the first included) before it is ``failed``.
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
        delivery_retry_base: float = 1.0,
        delivery_retry_max_delay: float = 60.0,
        delivery_max_attempts: int = 8,
    ) -> None:
        if error_code_style not in ERROR_CODE_STYLES:
            raise ValueError(f"error_code_style must be 'upper' or 'seed', got {error_code_style!r}")
        super().__init__(port, verbose=verbose)
        self.token = token
        self.error_code_style = error_code_style
        self.http_error_status = http_error_status
        self.demo_orders = demo_orders
        self.notifications = DeliveryEngine(
            delivery_retry_base, delivery_retry_max_delay, delivery_max_attempts, clock=clock
        )
        self.model = EzCaterModel(clock, on_event=self._on_order_event)
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()
        if demo_orders:
            self.seed_demo_orders()

    def __enter__(self) -> EzCaterSandbox:
        self.start()
        return self

    def start(self) -> EzCaterSandbox:
        """Serve, send notification deliveries and apply timed transitions as they fall due."""
        super().start()
        self.notifications.start()
        self._ticker_stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="ezcater-sandbox-ticker", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        """Stop serving, the ticker and the delivery threads (idempotent; pending deliveries stay)."""
        super().stop()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            self._ticker_stop.set()
            ticker.join(timeout=5)
        self.notifications.stop()

    def _tick(self) -> None:
        while not self._ticker_stop.wait(TICK_SECONDS):
            try:
                self.model.tick()
            except Exception as exc:  # keep ticking; a broken order must not stop notifications
                traceback.print_exception(exc, file=sys.stderr)

    def _on_order_event(self, event: OrderEvent) -> None:
        for target in event.targets:
            self.notifications.submit(
                order_id=event.order_uuid,
                caterer_uuid=event.caterer_uuid,
                key=event.key,
                occurred_at=event.occurred_at,
                subscriber_id=target.subscriber_id,
                url=target.webhook_url,
                secret=target.secret,
            )

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
        headcount: int | None = None,
    ) -> str:
        """Seed an order and return its uuid.

        ``transitions=[("submitted", 2.0)]``: state changes that happen by themselves, each the given
        seconds after the previous one; the target ``"modified"`` flags a pending modification.
        ``headcount`` None picks one at random. An order seeded in (or moving to) a non-draft state
        notifies that state's subscribers.
        """
        return self.model.add_order(
            uuid,
            state,
            caterer_uuid,
            feature_enabled,
            authorized,
            pending_modification,
            transitions,
            headcount,
        )

    def place_order(
        self, caterer_uuid: str | None = None, headcount: int | None = 25, uuid: str | None = None
    ) -> str:
        """A new ``submitted`` order as a customer places it (default: the demo caterer, 25 people).

        Subscribers to ``submitted`` for that caterer get a delivery. Returns the order's uuid.
        """
        return self.model.place_order(caterer_uuid, headcount, uuid)

    def cancel_order(self, uuid: str) -> None:
        """The customer cancels: the order becomes ``cancelled`` (pending transitions dropped) and
        ``cancelled`` subscribers get a delivery. KeyError for an unknown order, ValueError for one that
        is already rejected or cancelled."""
        try:
            self.model.cancel_order(uuid)
        except OrderNotFoundError:
            raise KeyError(uuid) from None
        except InvalidStateTransitionError as exc:
            raise ValueError(str(exc)) from None

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

    # ---------------------------------------------------------------- subscriptions & notifications
    def create_subscriber(self, name: str, webhook_url: str, secret: str | None = None) -> dict[str, Any]:
        """The API user's subscriber, as createSubscriber makes it: ``{"id", "name", "webhookUrl", "secret"}``.

        ``secret`` None draws one (``secrets.token_urlsafe(32)``). ValueError if the token already has a
        subscriber or a parameter is refused.
        """
        subscriber = self.model.create_subscriber(self.token, name, webhook_url, secret)
        return {
            "id": subscriber.id,
            "name": subscriber.name,
            "webhookUrl": subscriber.webhook_url,
            "secret": subscriber.secret,
        }

    def update_subscriber(
        self, subscriber_id: str, name: str | None = None, webhook_url: str | None = None
    ) -> dict[str, Any]:
        """updateSubscriber; the admin view of the subscriber (KeyError for an unknown id)."""
        try:
            return self.model.update_subscriber(self.token, subscriber_id, name, webhook_url).to_admin()
        except SubscriberNotFoundError:
            raise KeyError(subscriber_id) from None

    def subscribers(self) -> list[dict[str, Any]]:
        """Every subscriber with its subscriptions: ``{"id", "name", "webhookUrl", "subscriptions"}``
        (never the secret)."""
        return self.model.subscribers_snapshot()

    def subscribe(
        self, subscriber_id: str, caterer_uuid: str, keys: str | Iterable[str]
    ) -> list[dict[str, Any]]:
        """createSubscription for each order event key in ``keys`` (one key or several) of the caterer;
        the subscriptions as the schema answers them. ValueError for a refused parameter."""
        return [
            self.model.create_subscription(
                self.token, EVENT_ENTITY, key, PARENT_ENTITY, caterer_uuid, subscriber_id
            ).to_graphql()
            for key in ([keys] if isinstance(keys, str) else list(keys))
        ]

    def caterers(self) -> list[dict[str, Any]]:
        """Every caterer: ``{"id", "uuid", "name", "storeNumber"}``."""
        return [c.to_graphql() for c in self.model.list_caterers()]

    def deliveries(self, order_id: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        """Notification deliveries (duplicate copies included), oldest first: ``{"id", "order_id",
        "caterer_uuid", "key", "subscriber_id", "url", "state", "attempts": [{"at", "signed_at",
        "status", "error", "elapsed_ms", "fault"?}], "duplicate_of", "faults", "body", "created"}``."""
        return self.notifications.deliveries(order_id, key)

    def inject_delivery_fault(self, kind: str, count: int = 1, seconds: float = 0.0) -> DeliveryFault:
        """Arm a delivery fault for the next ``count`` deliveries: ``duplicate``, ``delay`` (``seconds``
        before the first attempt), ``bad_signature`` (first attempt only), ``stale_timestamp`` (first
        attempt signed ``seconds`` in the past). Faults queue first in, first out; a delivery takes at
        most one."""
        return self.notifications.inject_fault(kind, count, seconds)

    @property
    def delivery_faults(self) -> list[DeliveryFault]:
        """Delivery faults still armed."""
        return self.notifications.faults

    def clear_delivery_faults(self) -> int:
        return self.notifications.clear_faults()

    def wait_for_deliveries(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until no delivery is pending; every delivery then. TimeoutError names the pending ones."""
        return self.notifications.wait(timeout)

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
        self.notifications.reset()
        if self.demo_orders:
            self.seed_demo_orders()

    def _admin_orders(self) -> Any:
        return self.model.snapshot()

    def _admin(self, request: Request, name: str) -> Response | None:
        answer = self._admin_notifications(request, name)
        if answer is not None:
            return answer
        if name == "orders" and request.method == "POST":
            spec = admin_object(request)
            try:
                if "transitions" in spec:
                    spec["transitions"] = [(str(s), float(t)) for s, t in spec["transitions"] or []]
                uuid = self.add_order(**spec)
            except (TypeError, ValueError) as exc:
                raise AdminError(
                    f"cannot seed the order: {exc}; fields: uuid, state, caterer_uuid, feature_enabled, "
                    "authorized, pending_modification, transitions ([[state, seconds], ...]), headcount"
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

    def _admin_notifications(self, request: Request, name: str) -> Response | None:
        """Admin routes of subscriptions and deliveries (see docs/sandbox.md)."""
        method = request.method
        if name == "place-order" and method == "POST":
            spec = admin_object(request)
            try:
                uuid = self.place_order(**spec)
            except (TypeError, ValueError) as exc:
                raise AdminError(
                    f"cannot place the order: {exc}; fields: caterer_uuid, headcount, uuid"
                ) from exc
            return Response.json(201, {"uuid": uuid, "state": self.order_state(uuid)})
        if name.startswith("orders/") and name.endswith("/cancel") and method == "POST":
            uuid = name[len("orders/") : -len("/cancel")]
            try:
                self.cancel_order(uuid)
            except KeyError:
                return Response.json(404, {"error": f"no order {uuid}"})
            except ValueError as exc:
                return Response.json(409, {"error": str(exc)})
            return Response.json(200, self.model.orders[uuid].to_admin())
        if name == "deliveries" and method == "GET":
            found = self.deliveries(request.param("order"), request.param("key"))
            return Response.json(200, {"count": len(found), "deliveries": found})
        if name == "subscribers" and method == "GET":
            return Response.json(200, {"subscribers": self.subscribers()})
        if name == "subscribers" and method == "POST":
            spec = admin_object(request)
            unknown = set(spec) - {"name", "webhookUrl", "webhookSecret"}
            if unknown or not {"name", "webhookUrl"} <= set(spec):
                raise AdminError("fields: name, webhookUrl (both required), webhookSecret (optional)")
            try:
                created = self.create_subscriber(spec["name"], spec["webhookUrl"], spec.get("webhookSecret"))
            except SubscriberExistsError as exc:
                return Response.json(409, {"error": str(exc)})
            except ValueError as exc:
                raise AdminError(str(exc)) from exc
            created["webhookSecret"] = created.pop("secret")
            return Response.json(201, created)
        if name == "subscriptions" and method == "POST":
            spec = admin_object(request)
            try:
                made = self.subscribe(spec["subscriber_id"], spec["caterer_uuid"], spec["keys"])
            except (KeyError, TypeError, ValueError) as exc:
                raise AdminError(
                    f"cannot subscribe: {exc}; fields: subscriber_id, caterer_uuid, keys (a key or a list)"
                ) from exc
            return Response.json(201, {"subscriptions": made})
        if name == "caterers" and method == "GET":
            return Response.json(200, {"caterers": self.caterers()})
        if name == "delivery-faults" and method == "POST":
            spec = admin_object(request)
            unknown = set(spec) - {"kind", "count", "seconds"}
            try:
                if unknown:
                    raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
                fault = self.inject_delivery_fault(
                    str(spec.get("kind")), int(spec.get("count", 1)), float(spec.get("seconds") or 0.0)
                )
            except (TypeError, ValueError) as exc:
                raise AdminError(
                    f"cannot arm the delivery fault: {exc}; fields: kind, count, seconds"
                ) from exc
            return Response.json(201, {"fault": fault.to_dict()})
        if name == "delivery-faults" and method == "GET":
            return Response.json(200, {"faults": [f.to_dict() for f in self.delivery_faults]})
        if name == "delivery-faults" and method == "DELETE":
            return Response.json(200, {"cleared": self.clear_delivery_faults()})
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
            context_value=_Context(self.model, self.token),
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
        if isinstance(original, SubscriberNotFoundError):
            return {
                "message": SUBSCRIBER_NOT_FOUND_MESSAGE,
                "path": path,
                "extensions": {
                    "type": "request",
                    "statusCode": 404,
                    "serviceName": SERVICE_NAME,
                    "code": self._code("DOWNSTREAM_SERVICE_ERROR"),
                    "exception": {
                        "message": SUBSCRIBER_NOT_FOUND_MESSAGE,
                        "locations": locations,
                        "path": path,
                    },
                },
            }
        if isinstance(original, SubscriberExistsError):
            return {
                "message": SUBSCRIBER_EXISTS_MESSAGE,
                "locations": locations,
                "path": path,
                "extensions": {"type": "summary", "code": self._code("SUBSCRIBER_ALREADY_EXISTS")},
            }
        if isinstance(original, InvalidInputError):
            return {
                "message": str(original),
                "locations": locations,
                "path": path,
                "extensions": {
                    "type": "summary",
                    "code": self._code("BAD_USER_INPUT"),
                    "field": original.field,
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
