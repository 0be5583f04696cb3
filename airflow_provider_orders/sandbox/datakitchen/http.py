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
* ``GET /v2/order/status/{kitchen}`` [order_status] (query ``r`` = recipe, ``count``) -> the kitchen's
  orders newest first with their ``order-status``, and all their started runs.
* ``PUT /v2/serving/stop/{run_id}`` [stop_run], ``PUT /v2/order/stop/{order_id}`` [stop_order],
  ``PUT /v2/order/resume/{run_id}`` [resume_run].

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
import json
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
    from collections.abc import Callable

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

    def __enter__(self) -> DataKitchenSandbox:
        self.start()
        return self

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
    ) -> Variation:
        """Add (or replace) a catalogue variation; kitchen and recipe are created as needed.

        Runs of it stay unlisted for ``queue_seconds``, are PLANNED_SERVING for ``planned_seconds``,
        ACTIVE_SERVING for ``active_seconds``, then end in ``outcome`` (COMPLETED_SERVING,
        SERVING_ERROR or STOPPED_SERVING) with ``orderrun_status`` (a default text per outcome).
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
        )

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
                    "queue_seconds, planned_seconds, active_seconds, orderrun_status"
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
                },
            )
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
                serving["testresults"] = _test_results(serving["status"])
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

    def _order_status(self, request: Request, params: dict[str, str], token: TokenInfo | None) -> Response:
        kitchen = params["kitchen"]
        recipe = request.param("r")
        orders = self.model.list_orders(kitchen, recipe)
        try:
            count = int(request.param("count") or 0)
        except ValueError:
            count = 0
        if count > 0:
            orders = orders[:count]
        now = self.model.clock()
        servings = sorted(
            (s for o in orders for s in o.servings(now)),
            key=lambda s: s["timings"]["start-time"],
            reverse=True,
        )
        return Response.json(
            200,
            {
                "kitchenname": kitchen,
                "orders": [
                    {
                        "hid": o.order_id,
                        "order-status": o.order_status(now),
                        "recipe_name": o.recipe,
                        "variation_name": o.variation,
                        "variable_overrides": o.parameters,
                        "created_time": int(o.created_at * 1000),
                        "created_by": o.created_by,
                    }
                    for o in orders
                ],
                "servings": servings,
            },
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
        run = self.model.resume_run(params["run_id"], kitchen=self._kitchen_from_body(request))
        return Response.json(200, {"status": "success", "order_id": run.order_id, "serving_hid": run.hid})

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


def _test_results(status: str) -> str:
    if status == COMPLETED:
        return "Tests: 1 passed, 0 failed, 0 warnings"
    return f"Tests: 0 passed, 1 failed, 0 warnings (order run {status})"


__all__ = ["MISSING_TOKEN_BODY", "ROUTE_NAMES", "TOKEN_EXPIRED_BODY", "DataKitchenSandbox", "error_body"]
