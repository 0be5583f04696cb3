"""DataKitchen sandbox: the Automation API's routes over :class:`DataKitchenModel`.

Routes (route names in brackets are what the request log and :meth:`inject_fault` use):

* ``POST /v2/login`` [login]: form ``username``, ``password`` -> the JWT as ``text/plain``;
  bad credentials -> 401 ``Credentials are invalid``.
* ``GET /v2/validatetoken`` [validatetoken] -> ``{"token": <jwt>}``;
  ``GET /v2/userinfo`` [userinfo] -> ``{"customer_git_name": ...}``.
* ``PUT /v2/order/create/{kitchen}/{recipe}/{variation}`` [create_order]: body ``{"parameters": {...}}``
  (optional, may be empty) -> 200 ``{"status": "success", "order_id", "variable_overrides"}`` (the id key
  is ``serving_hid`` with ``id_key="serving_hid"``, as on the seed page); unknown kitchen / recipe /
  variation -> 417; a body that is not a JSON object (or whose ``parameters`` is not one) -> 400.
* ``GET /v2/order/servings/{kitchen}/{order_id}`` [servings] (a JSON body ``{"count": N}`` is
  tolerated) -> ``{"servings": [...]}`` newest first, empty until the run starts.
* ``POST /v2/order/details/{kitchen}`` [details]: ``{"serving_hid"}`` (or ``{"serving_book_hid"}``)
  -> ``{"kitchenname", "orders": [{"hid", "order-status"}], "servings": [...]}``; unknown run -> 404.
  With ``"logs": true`` ``servings[0]["log"] = {"lines": [{"datetime", "node", "message", "level"}]}``
  (oldest first; the failing node's last line is level ERROR with the failure text); with
  ``"testresults": true`` ``servings[0]["testresults"]`` is the text report (see
  :meth:`~airflow_provider_orders.sandbox.datakitchen.models.OrderRun.test_report`).
* ``GET /v2/order/logs/{kitchen}/{run_id}`` [logs] -> ``{"log": {"lines": [...]}}`` (the same lines).
* ``GET /v2/order/status/{kitchen}`` [order_status]: query ``recipe`` (alias ``r``), ``variation``,
  ``orderStatus``, ``orderRunStatus`` (comma-separated values allowed), ``timePeriod`` (minutes back
  from now), ``search`` (substring of order id, recipe, variation or the overrides' JSON),
  ``servingsCount`` (runs per order), ``count`` (orders) -> ``{"kitchenname", "orders": [{"hid",
  "order-status", "recipe_name", "variation_name", "variable_overrides", "created_time",
  "created_by", "schedule"}], "servings": [...]}``, orders newest first, the listed orders' started
  runs newest start first. An order is listed ``listing_delay_seconds`` after its create.
* ``PUT /v2/serving/stop/{run_id}`` [stop_run], ``PUT /v2/order/stop/{order_id}`` [stop_order].
* ``PUT /v2/order/resume/{run_id}`` [resume_run]: body ``{"kitchen_name"}`` or ``{"serving_hid",
  "kitchen_name", "skip-failed-nodes", "parameters"}`` -> 200 ``{"status": "success", "order_id",
  "serving_hid": <new run>}`` (no ``serving_hid`` with ``resume_answer_has_run_id=False``); the run
  becomes SERVING_RERAN and a new run of the order starts at the failed node. A run that is not
  SERVING_ERROR / STOPPED_SERVING -> 400; unknown run -> 404.

Admin routes besides the shared ones: ``POST /_sandbox/expire-tokens``, ``GET|POST /_sandbox/catalogue``,
``POST /_sandbox/runs/{run_id}/finish``, ``POST /_sandbox/scheduled-orders`` (``{kitchen, recipe,
variation, parameters?}`` -> 201 ``{"order_id"}``), ``POST|GET|DELETE /_sandbox/schedules`` and
``DELETE /_sandbox/schedules/{id}`` (``{kitchen, recipe, variation, every_seconds, parameters?}`` ->
201 ``{"schedule_id", "every_seconds"}``).

Every route but login needs ``Authorization: Bearer <jwt>``. An expired, revoked, unknown or garbled
token gets 401 ``{"code": "token_expired", "description": "token is expired"}`` (DataKitchen's
documented body; the sandbox does not tell "expired" from "unknown", so a client re-logs in for
both). A missing header gets 401 ``{"code": "authorization_required", ...}``.

Errors use DataKitchen's shape ``{"message": {"status": "failed", "error": {"message", "detail"}}}``:
417 for an unknown kitchen / recipe / variation (the seed page's texts), 404 for an unknown order or
order run, 400 for an unusable body.

``GET /`` and ``GET /dk/orders/...`` serve a tiny read-only web page, so that order-run links built
with ``web_app_url`` pointing at the sandbox open something.
"""

from __future__ import annotations

import html
import itertools
import json
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from airflow_provider_orders.sandbox._server import (
    AdminError,
    Request,
    Response,
    Route,
    SandboxServer,
    admin_object,
)
from airflow_provider_orders.sandbox.datakitchen.models import (
    COMPLETED,
    DEFAULT_CUSTOMER,
    DEFAULT_NODES,
    CatalogueLookupError,
    DataKitchenError,
    DataKitchenModel,
    InvalidCredentialsError,
    InvalidRequestError,
    NotFoundError,
    Order,
    TokenInfo,
    TokenRejectedError,
    Variation,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

TOKEN_EXPIRED_BODY = {"code": "token_expired", "description": "token is expired"}
MISSING_TOKEN_BODY = {
    "code": "authorization_required",
    "description": "missing 'Authorization: Bearer <token>' header; get a token from POST /v2/login",
}
INVALID_CREDENTIALS_TEXT = "Credentials are invalid"

#: (method, path pattern, route name); ``{name}`` segments are parameters (percent-decoded).
_ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("POST", ("v2", "login"), "login"),
    ("GET", ("v2", "validatetoken"), "validatetoken"),
    ("GET", ("v2", "userinfo"), "userinfo"),
    ("PUT", ("v2", "order", "create", "{kitchen}", "{recipe}", "{variation}"), "create_order"),
    ("GET", ("v2", "order", "servings", "{kitchen}", "{order_id}"), "servings"),
    ("POST", ("v2", "order", "details", "{kitchen}"), "details"),
    ("GET", ("v2", "order", "logs", "{kitchen}", "{run_id}"), "logs"),
    ("GET", ("v2", "order", "status", "{kitchen}"), "order_status"),
    ("PUT", ("v2", "serving", "stop", "{run_id}"), "stop_run"),
    ("PUT", ("v2", "order", "stop", "{order_id}"), "stop_order"),
    ("PUT", ("v2", "order", "resume", "{run_id}"), "resume_run"),
)
ROUTE_NAMES = frozenset(name for _, _, name in _ROUTES)

_STATUS_BY_ERROR: dict[type[DataKitchenError], int] = {
    CatalogueLookupError: 417,
    NotFoundError: 404,
    InvalidRequestError: 400,
}


def error_body(message: str, detail: Any) -> dict[str, Any]:
    """DataKitchen's error shape (seed page)."""
    return {"message": {"status": "failed", "error": {"message": message, "detail": detail}}}


def _match(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for part, segment in zip(pattern, segments, strict=True):
        if part.startswith("{"):
            params[part[1:-1]] = segment
        elif part != segment:
            return None
    return params


def _json_object(request: Request, label: str, example: str) -> dict[str, Any]:
    """The body as a JSON object ({} when empty); InvalidRequestError otherwise."""
    if not request.body.strip():
        return {}
    try:
        payload = request.json()
    except ValueError as exc:
        raise InvalidRequestError(
            label, f"the request body is not valid JSON ({exc}); send {example}"
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            label, f"the request body must be a JSON object such as {example}, got {type(payload).__name__}"
        )
    return payload


class DataKitchenSandbox(SandboxServer):
    """A local DataKitchen Automation API (see the module docstring for routes and bodies).

    :param port: TCP port on 127.0.0.1; 0 picks a free one.
    :param username: / :param password: the one user that may log in.
    :param token_ttl: lifetime of issued JWTs in seconds (``exp`` claim).
    :param customer: ``customer_git_name`` answered by ``/v2/userinfo``.
    :param id_key: key of the order id in the create answer: ``"order_id"`` (DataKitchen's clients)
        or ``"serving_hid"`` (the seed page's example).
    :param refresh_within: when set, an answer to a token with fewer seconds left carries a
        ``refreshed_token`` header with a fresh JWT, as DataKitchen may do.
    :param demo_catalogue: start with kitchen ``demo-kitchen``, recipe ``demo-recipe``, variations
        ``success`` / ``fails`` / ``stopped`` / ``slow`` (False: empty catalogue).
    :param clock: epoch-seconds clock (tests can pass a fake one to walk runs deterministically).
    :param resume_answer_has_run_id: the resume answer carries the new run's id as ``serving_hid``
        (False: only ``order_id``, all DataKitchen documents).
    :param listing_delay_seconds: an order shows in the order list (``GET /v2/order/status``) only this
        long after it was created (its runs and details are there at once).
    :param verbose: print an access log line per request to stderr.
    """

    service = "datakitchen"
    route_names = ROUTE_NAMES

    def __init__(
        self,
        port: int = 0,
        username: str = "demo@example.com",
        password: str = "demo-password",
        token_ttl: float = 4 * 3600,
        *,
        customer: str = DEFAULT_CUSTOMER,
        id_key: str = "order_id",
        refresh_within: float | None = None,
        demo_catalogue: bool = True,
        clock: Callable[[], float] | None = None,
        resume_answer_has_run_id: bool = True,
        listing_delay_seconds: float = 0.0,
        verbose: bool = False,
    ) -> None:
        if id_key not in ("order_id", "serving_hid"):
            raise ValueError(f"id_key must be 'order_id' or 'serving_hid', got {id_key!r}")
        super().__init__(port, verbose=verbose)
        self.model = DataKitchenModel(
            username=username,
            password=password,
            token_ttl=token_ttl,
            customer=customer,
            clock=clock,
            demo=demo_catalogue,
        )
        self.id_key = id_key
        self.refresh_within = refresh_within
        self.resume_answer_has_run_id = resume_answer_has_run_id
        if listing_delay_seconds < 0:
            raise ValueError(f"listing_delay_seconds must not be negative, got {listing_delay_seconds}")
        self.listing_delay_seconds = float(listing_delay_seconds)
        self._schedules: dict[str, _Ticker] = {}
        self._schedule_ids = itertools.count(1)
        self._schedules_lock = threading.Lock()

    def __enter__(self) -> DataKitchenSandbox:
        self.start()
        return self

    def stop(self) -> None:
        """Stop the schedule tickers, then the server (idempotent)."""
        self.clear_schedules()
        super().stop()

    # ---------------------------------------------------------------- Python API
    @property
    def username(self) -> str:
        return self.model.username

    @property
    def password(self) -> str:
        return self.model.password

    @property
    def customer(self) -> str:
        return self.model.customer

    def add_variation(
        self,
        kitchen: str,
        recipe: str,
        variation: str,
        outcome: str = COMPLETED,
        queue_seconds: float = 0.0,
        planned_seconds: float = 0.2,
        active_seconds: float = 0.5,
        orderrun_status: str | None = None,
        *,
        nodes: Iterable[str] = DEFAULT_NODES,
        failing_node: str | None = None,
        fail_runs: int | None = None,
        tests: Iterable[Any] = (),
        log_lines_per_node: int = 3,
    ) -> Variation:
        """Add (or replace) a catalogue variation; kitchen and recipe are created as needed.

        Runs of it stay unlisted for ``queue_seconds``, are PLANNED_SERVING for ``planned_seconds``,
        ACTIVE_SERVING for ``active_seconds``, then end in ``outcome`` (COMPLETED_SERVING,
        SERVING_ERROR or STOPPED_SERVING) with ``orderrun_status`` (a default text per outcome).

        While active a run works through ``nodes`` in turn; one that does not complete ends at
        ``failing_node`` (default: the last-but-one node). ``fail_runs=N``: the first N runs of an
        order fail (SERVING_ERROR), later ones (resumes) complete. ``tests``: data tests as
        ``{"node", "name", "status": PASSED|WARNING|FAILED, "message"}`` (or tuples / TestSpec).
        ``log_lines_per_node``: log lines each node that ran writes.
        """
        return self.model.add_variation(
            kitchen,
            recipe,
            variation,
            outcome,
            queue_seconds=queue_seconds,
            planned_seconds=planned_seconds,
            active_seconds=active_seconds,
            orderrun_status=orderrun_status,
            nodes=nodes,
            failing_node=failing_node,
            fail_runs=fail_runs,
            tests=tests,
            log_lines_per_node=log_lines_per_node,
        )

    def start_scheduled_order(
        self, kitchen: str, recipe: str, variation: str, parameters: dict[str, Any] | None = None
    ) -> str:
        """Start an order as DataKitchen's own scheduler would (no API request; ``created_by``
        ``DataKitchen Scheduler``, ``schedule`` ``scheduled``); returns the order id."""
        return self.model.start_scheduled_order(kitchen, recipe, variation, parameters).order_id

    def schedule_variation(
        self,
        kitchen: str,
        recipe: str,
        variation: str,
        every_seconds: float,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        """Start a scheduled order of the variation every ``every_seconds`` (real time; the first one
        ``every_seconds`` from now) until :meth:`unschedule`, :meth:`reset` or :meth:`stop`.
        Returns the schedule's id."""
        if not every_seconds > 0:
            raise ValueError(f"every_seconds must be positive, got {every_seconds}")
        self.model.lookup(kitchen, recipe, variation)  # unknown variation: fail now, not in the thread
        with self._schedules_lock:
            schedule_id = f"schedule-{next(self._schedule_ids)}"
            ticker = _Ticker(
                schedule_id,
                float(every_seconds),
                lambda: self.model.start_scheduled_order(kitchen, recipe, variation, parameters),
            )
            self._schedules[schedule_id] = ticker
        ticker.start()
        return schedule_id

    def unschedule(self, schedule_id: str) -> bool:
        """Stop one schedule; False if there is no such schedule."""
        with self._schedules_lock:
            ticker = self._schedules.pop(schedule_id, None)
        if ticker is None:
            return False
        ticker.cancel()
        return True

    def clear_schedules(self) -> int:
        """Stop every schedule (their threads end); returns how many there were."""
        with self._schedules_lock:
            tickers = list(self._schedules.values())
            self._schedules.clear()
        for ticker in tickers:
            ticker.cancel()
        return len(tickers)

    @property
    def schedules(self) -> dict[str, float]:
        """schedule id -> every_seconds of the running schedules."""
        with self._schedules_lock:
            return {sid: t.every_seconds for sid, t in self._schedules.items()}

    @property
    def orders(self) -> dict[str, Order]:
        """order id -> :class:`Order` (``kitchen``, ``recipe``, ``variation``, ``parameters``, ``runs``)."""
        with self.model.lock:
            return dict(self.model.orders)

    def finish_run(self, run_id: str) -> dict[str, Any]:
        """End the unfinished order run ``run_id`` now with its variation's outcome; returns the serving."""
        run = self.model.finish_run(run_id)
        with self.model.lock:
            order = self.model.orders[run.order_id]
            return run.serving(self.model.clock(), order.parameters)

    def expire_tokens(self) -> int:
        """Every JWT issued so far answers 401 token_expired from now on (a new login works)."""
        return self.model.expire_tokens()

    def issue_token(self, username: str | None = None, ttl: float | None = None) -> str:
        """A valid JWT without a login request (``ttl`` overrides ``token_ttl``)."""
        return self.model.issue_token(username, ttl)

    def connection_json(self, conn_extra: dict[str, Any] | None = None) -> str:
        """``AIRFLOW_CONN_DATAKITCHEN_DEFAULT`` value for this sandbox; ``conn_extra`` is merged in."""
        extra: dict[str, Any] = {"customer": self.customer, "web_app_url": self.url}
        extra.update(conn_extra or {})
        return json.dumps(
            {
                "conn_type": "datakitchen",
                "host": self.url,
                "login": self.username,
                "password": self.password,
                "extra": extra,
            }
        )

    # ---------------------------------------------------------------- SandboxServer hooks
    def _reset_state(self) -> None:
        self.clear_schedules()
        self.model.reset()

    def _admin_orders(self) -> Any:
        return self.model.snapshot()

    def _admin(self, request: Request, name: str) -> Response | None:
        if name == "expire-tokens" and request.method == "POST":
            return Response.json(200, {"expired": self.expire_tokens()})
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "runs" and parts[2] == "finish" and request.method == "POST":
            try:
                return Response.json(200, self.finish_run(parts[1]))
            except DataKitchenError as exc:
                return Response.json(404, error_body(exc.message, exc.detail))
        if name == "catalogue" and request.method == "GET":
            catalogue = {
                k: {r: sorted(vs) for r, vs in recipes.items()} for k, recipes in self.model.catalogue.items()
            }
            return Response.json(200, {"catalogue": catalogue})
        if name == "catalogue" and request.method == "POST":
            spec = admin_object(request)
            try:
                added = self.add_variation(**spec)
            except (TypeError, ValueError) as exc:
                raise AdminError(
                    f"cannot add the variation: {exc}; fields: kitchen, recipe, variation, outcome, "
                    "queue_seconds, planned_seconds, active_seconds, orderrun_status, nodes, failing_node, "
                    "fail_runs, tests, log_lines_per_node"
                ) from exc
            return Response.json(
                201,
                {
                    "kitchen": added.kitchen,
                    "recipe": added.recipe,
                    "variation": added.name,
                    "outcome": added.outcome,
                    "queue_seconds": added.queue_seconds,
                    "planned_seconds": added.planned_seconds,
                    "active_seconds": added.active_seconds,
                    "orderrun_status": added.final_text(),
                    "nodes": list(added.nodes),
                    "failing_node": added.failing,
                    "fail_runs": added.fail_runs,
                    "tests": [
                        {"node": t.node, "name": t.name, "status": t.status, "message": t.message}
                        for t in added.tests
                    ],
                    "log_lines_per_node": added.log_lines_per_node,
                },
            )
        if name == "scheduled-orders" and request.method == "POST":
            fields = _admin_fields(
                admin_object(request), required=("kitchen", "recipe", "variation"), optional=("parameters",)
            )
            try:
                order_id = self.start_scheduled_order(**fields)
            except DataKitchenError as exc:
                raise AdminError(f"cannot start a scheduled order: {exc}") from exc
            return Response.json(201, {"order_id": order_id})
        if name == "schedules" and request.method == "POST":
            fields = _admin_fields(
                admin_object(request),
                required=("kitchen", "recipe", "variation", "every_seconds"),
                optional=("parameters",),
            )
            try:
                fields["every_seconds"] = float(fields["every_seconds"])
                schedule_id = self.schedule_variation(**fields)
            except (TypeError, ValueError, DataKitchenError) as exc:
                raise AdminError(f"cannot schedule the variation: {exc}") from exc
            return Response.json(201, {"schedule_id": schedule_id, "every_seconds": fields["every_seconds"]})
        if name == "schedules" and request.method == "GET":
            return Response.json(
                200,
                {"schedules": [{"schedule_id": k, "every_seconds": v} for k, v in self.schedules.items()]},
            )
        if name == "schedules" and request.method == "DELETE":
            return Response.json(200, {"cleared": self.clear_schedules()})
        if len(parts) == 2 and parts[0] == "schedules" and request.method == "DELETE":
            if not self.unschedule(parts[1]):
                return Response.json(404, {"error": f"no schedule {parts[1]}"})
            return Response.json(200, {"cleared": 1})
        return None

    def _route(self, request: Request) -> Route:
        segments = request.segments
        if request.method == "GET" and (not segments or segments[0] != "v2"):
            return Route(None, (), lambda: self._web_page(request), log=False)
        for method, pattern, name in _ROUTES:
            params = _match(pattern, segments)
            if params is not None:
                return self._api_route(request, method, name, params)
        return Route(
            None,
            (),
            lambda: Response.json(404, {"message": f"the requested URL {request.path} was not found"}),
        )

    def _api_route(self, request: Request, method: str, name: str, params: dict[str, str]) -> Route:
        if request.method != method:
            message = f"method {request.method} not allowed here; use {method}"
            return Route(name, (name,), lambda: Response.json(405, {"message": message}))
        handler = getattr(self, f"_{name}")
        return Route(name, (name,), lambda: self._call(name, handler, request, params))

    # ---------------------------------------------------------------- handlers
    def _call(
        self,
        name: str,
        handler: Callable[[Request, dict[str, str], TokenInfo | None], Response],
        request: Request,
        params: dict[str, str],
    ) -> Response:
        token: TokenInfo | None = None
        refreshed: str | None = None
        if name != "login":
            auth = request.header("authorization") or ""
            scheme, _, credentials = auth.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                return Response.json(401, MISSING_TOKEN_BODY)
            try:
                token = self.model.authenticate(credentials.strip())
            except TokenRejectedError:
                return Response.json(401, TOKEN_EXPIRED_BODY)
            if self.refresh_within is not None:
                left = float(token.claims["exp"]) - self.model.clock()
                if left < self.refresh_within:
                    refreshed = self.model.issue_token(token.username)
        try:
            # one snapshot per answer: a run cannot be stopped or resumed (nor a scheduled order
            # added) while its serving, log or test report is being read
            with self.model.lock:
                response = handler(request, params, token)
        except DataKitchenError as exc:
            response = Response.json(_STATUS_BY_ERROR[type(exc)], error_body(exc.message, exc.detail))
        if refreshed is not None:
            response.headers["refreshed_token"] = refreshed
        return response

    def _login(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        fields: dict[str, Any]
        if "json" in (request.header("content-type") or ""):
            fields = request.json_object() or {}
        else:
            fields = {k: v[0] for k, v in parse_qs(request.text).items()}
        try:
            jwt = self.model.login(fields.get("username"), fields.get("password"))
        except InvalidCredentialsError:
            return Response.text(401, INVALID_CREDENTIALS_TEXT)
        return Response.text(200, jwt)

    def _validatetoken(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        assert token is not None
        return Response.json(200, {"token": token.token})

    def _userinfo(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        assert token is not None
        return Response.json(
            200,
            {
                "customer_git_name": self.customer,
                "customer_name": self.customer.replace("-", " ").title(),
                "username": token.username,
                "email": token.username,
            },
        )

    def _create_order(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        kitchen, recipe, variation = params["kitchen"], params["recipe"], params["variation"]
        label = f"kitchen ({kitchen}),recipe ({recipe}),variation ({variation})"
        example = '{"parameters": {"some key": "some value"}}'
        payload = _json_object(request, label, example)
        parameters = payload.get("parameters")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise InvalidRequestError(
                label,
                f'"parameters" must be a JSON object such as {example}, got {type(parameters).__name__}',
            )
        schedule = payload.get("schedule")
        order = self.model.create_order(
            kitchen,
            recipe,
            variation,
            parameters,
            username=token.username if token else None,
            schedule=schedule if isinstance(schedule, str) else None,
        )
        return Response.json(
            200, {"status": "success", self.id_key: order.order_id, "variable_overrides": order.parameters}
        )

    def _servings(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        # DKUtils sends {"count": N} as a body even on this GET: tolerate and honour it
        count: Any = (request.json_object() or {}).get("count", request.param("count"))
        try:
            limit = int(count) if count is not None else None
        except (TypeError, ValueError):
            limit = None
        servings = self.model.order_servings(params["kitchen"], params["order_id"], limit)
        return Response.json(200, {"servings": servings})

    def _details(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        kitchen = params["kitchen"]
        example = '{"serving_hid": "<order run id>"}'
        payload = _json_object(request, f"kitchen ({kitchen})", example)
        run_id, order_id = payload.get("serving_hid"), payload.get("serving_book_hid")
        now = self.model.clock()
        if isinstance(run_id, str) and run_id:
            order, serving, run = self.model.run_details(kitchen, run_id)
            if payload.get("logs"):
                serving["log"] = {"lines": run.log_lines(now)}
            if payload.get("testresults"):
                serving["testresults"] = run.test_report(now)
            servings = [serving]
        elif isinstance(order_id, str) and order_id:
            order = self.model.order_details(kitchen, order_id)
            servings = order.servings(now)
        else:
            raise InvalidRequestError(
                f"kitchen ({kitchen})",
                f'the request body must be a JSON object with a "serving_hid": {example}',
            )
        return Response.json(
            200,
            {
                "kitchenname": kitchen,
                "orders": [{"hid": order.order_id, "order-status": order.order_status(now)}],
                "servings": servings,
            },
        )

    def _logs(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        _, _, run = self.model.run_details(params["kitchen"], params["run_id"])
        return Response.json(200, {"log": {"lines": run.log_lines(self.model.clock())}})

    def _order_status(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        kitchen = params["kitchen"]
        label = f"kitchen ({kitchen})"

        def number(name: str, what: str) -> float | None:
            text = request.param(name)
            if text is None or not text.strip():
                return None
            try:
                value = float(text)
            except ValueError:
                value = -1.0
            if not value >= 0:
                raise InvalidRequestError(label, f"{name} must be {what}, got {text!r}")
            return value

        try:
            count = int(request.param("count") or 0)  # a count that is not a number: no limit, as before
        except ValueError:
            count = 0
        period = number("timePeriod", "a number of minutes (0 or more)")
        per_order = number("servingsCount", "a whole number of order runs (0 or more)")
        orders = self.model.list_orders(
            kitchen,
            request.param("recipe") or request.param("r"),
            variation=request.param("variation"),
            order_status=request.param("orderStatus"),
            run_status=request.param("orderRunStatus"),
            time_period_minutes=period,
            search=request.param("search"),
            count=count,
            listing_delay=self.listing_delay_seconds,
        )
        run_statuses = {v.strip() for v in (request.param("orderRunStatus") or "").split(",") if v.strip()}
        now = self.model.clock()
        servings: list[dict[str, Any]] = []
        for order in orders:
            runs = order.servings(now)
            if run_statuses:
                runs = [r for r in runs if r["status"] in run_statuses]
            servings += runs[: int(per_order)] if per_order is not None else runs
        servings.sort(key=lambda s: s["timings"]["start-time"], reverse=True)
        return Response.json(
            200,
            {"kitchenname": kitchen, "orders": [o.listing(now) for o in orders], "servings": servings},
        )

    def _kitchen_from_body(self, request: Request) -> str | None:
        kitchen = (request.json_object() or {}).get("kitchen_name")
        return kitchen if isinstance(kitchen, str) and kitchen else None

    def _stop_run(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        run = self.model.stop_run(
            params["run_id"],
            kitchen=self._kitchen_from_body(request),
            username=token.username if token else None,
        )
        return Response.json(
            200,
            {
                "status": "success",
                "serving_hid": run.hid,
                "order_id": run.order_id,
                "serving_status": run.status(self.model.clock()),
            },
        )

    def _stop_order(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        order = self.model.stop_order(
            params["order_id"],
            kitchen=self._kitchen_from_body(request),
            username=token.username if token else None,
        )
        return Response.json(
            200,
            {
                "status": "success",
                "order_id": order.order_id,
                "order-status": order.order_status(self.model.clock()),
            },
        )

    def _resume_run(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        run_id = params["run_id"]
        # DKUtils sends {"kitchen_name"}; DKCloudCommand {"serving_hid", "kitchen_name",
        # "skip-failed-nodes", "parameters"?}. A body that is not a JSON object is ignored, as before.
        payload = request.json_object() or {}
        kitchen = payload.get("kitchen_name")
        parameters = payload.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequestError(
                f"order run ({run_id})",
                f'"parameters" must be a JSON object such as {{"some key": "some value"}}, '
                f"got {type(parameters).__name__}",
            )
        run = self.model.resume_run(
            run_id,
            kitchen=kitchen if isinstance(kitchen, str) and kitchen else None,
            skip_failed_nodes=payload.get("skip-failed-nodes") is True,
            parameters=parameters,
        )
        answer = {"status": "success", "order_id": run.order_id}
        if self.resume_answer_has_run_id:
            answer["serving_hid"] = run.hid
        return Response.json(200, answer)

    # ---------------------------------------------------------------- web page
    def _web_page(self, request: Request) -> Response:
        segments = request.segments
        if segments and segments[:2] != ["dk", "orders"]:
            return Response.text(404, "Not found", "text/html; charset=utf-8")
        focus = segments[-1] if len(segments) == 6 and segments[4] == "runs" else None
        rows = []
        for order in self.model.snapshot():
            for run in order["runs"]:
                if focus is not None and run["hid"] != focus:
                    continue
                cells = (
                    order["kitchen"],
                    order["recipe"],
                    order["variation"],
                    order["order_id"],
                    run["hid"],
                    run["status"],
                    run["orderrun_status"],
                )
                rows.append(
                    f'<tr id="{html.escape(run["hid"])}">'
                    + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                    + "</tr>"
                )
        title = f"Order run {html.escape(focus)}" if focus else "Orders"
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>DataKitchen sandbox: {title}</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
            "tr.focus{background:#ffd}</style></head><body>"
            f"<h1>DataKitchen sandbox: {title}</h1><p>customer {html.escape(self.customer)}</p>"
            "<table><tr><th>kitchen</th><th>recipe</th><th>variation</th><th>order</th><th>order run</th>"
            "<th>status</th><th>orderrun_status</th></tr>"
            + "".join(rows)
            + "</table><script>var m=location.hash.match(/runs\\/([^/]+)$/);"
            "if(m){var r=document.getElementById(decodeURIComponent(m[1]));"
            "if(r){r.className='focus';r.scrollIntoView();}}</script></body></html>"
        )
        return Response.text(200, page, "text/html; charset=utf-8")


def _admin_fields(
    payload: dict[str, Any], *, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The admin body's fields: all of ``required``, some of ``optional``, nothing else (AdminError)."""
    missing = [f for f in required if f not in payload]
    unknown = sorted(set(payload) - set(required) - set(optional))
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(unknown)}")
        fields = ", ".join([*required, *(f"{f}?" for f in optional)])
        raise AdminError(f"{'; '.join(problems)}; fields: {fields}")
    if payload.get("parameters") is not None and not isinstance(payload["parameters"], dict):
        raise AdminError('"parameters" must be a JSON object')
    return dict(payload)


class _Ticker:
    """A daemon thread calling ``action`` every ``every_seconds`` until cancelled."""

    def __init__(self, name: str, every_seconds: float, action: Callable[[], Any]) -> None:
        self.every_seconds = every_seconds
        self._action = action
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"datakitchen-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._cancelled.wait(self.every_seconds):
            try:
                self._action()
            except Exception:  # a schedule must not die of one bad tick (e.g. its variation was removed)
                continue

    def cancel(self) -> None:
        self._cancelled.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


__all__ = ["MISSING_TOKEN_BODY", "ROUTE_NAMES", "TOKEN_EXPIRED_BODY", "DataKitchenSandbox", "error_body"]
