"""DataKitchen sandbox state: catalogue, users and JWTs, orders and their runs. No HTTP in here.

Time is read from an injectable ``clock`` (epoch seconds, ``time.time`` by default); an order run's
status is derived from it, so runs walk PLANNED_SERVING -> ACTIVE_SERVING -> terminal without a thread.
Every public method takes the model's lock, so the threaded server may call them concurrently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

PLANNED = "PLANNED_SERVING"
ACTIVE = "ACTIVE_SERVING"
COMPLETED = "COMPLETED_SERVING"
ERROR = "SERVING_ERROR"
STOPPED = "STOPPED_SERVING"
RERAN = "SERVING_RERAN"
#: Outcomes a catalogue variation may end in.
OUTCOMES = frozenset({COMPLETED, ERROR, STOPPED})
TERMINAL = frozenset({COMPLETED, ERROR, STOPPED, RERAN})

DEFAULT_KITCHEN = "demo-kitchen"
DEFAULT_RECIPE = "demo-recipe"
DEFAULT_CUSTOMER = "demo-customer"
#: The node every sandbox recipe "runs"; named in logs and in SERVING_ERROR texts.
DEFAULT_NODE = "process-data"


# ------------------------------------------------------------------------------------------ errors
class DataKitchenError(Exception):
    """Base of the model's refusals; the HTTP layer maps each class to a status and body."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(f"{message}: {detail}")
        self.message = message
        self.detail = detail


class CatalogueLookupError(DataKitchenError):
    """Unknown kitchen, recipe or variation (DataKitchen answers 417)."""


class NotFoundError(DataKitchenError):
    """Unknown order or order run (answered 404)."""


class InvalidRequestError(DataKitchenError):
    """A request body the API cannot use (answered 400)."""


class InvalidCredentialsError(Exception):
    """Login with a wrong username or password."""


class TokenRejectedError(Exception):
    """A bearer token that is expired, revoked, forged or not a JWT at all."""


# ------------------------------------------------------------------------------------------ JWT
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT (``header.payload.signature``, base64url without padding)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def decode_jwt(token: str, secret: bytes) -> dict[str, Any]:
    """The claims of a JWT signed with ``secret``; ``ValueError`` if garbled or the signature is wrong."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        expected = hmac.new(secret, f"{header_b64}.{payload_b64}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_decode(signature_b64)):
            raise ValueError("bad signature")
        claims = json.loads(_b64url_decode(payload_b64))
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"not a token of this sandbox: {exc}") from exc
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not an object")
    return claims


# ------------------------------------------------------------------------------------------ catalogue
@dataclass(frozen=True)
class Variation:
    """A recipe variation and how its order runs behave.

    A run is queued (not listed yet) for ``queue_seconds``, PLANNED_SERVING for ``planned_seconds``,
    ACTIVE_SERVING for ``active_seconds``, then ends in ``outcome`` with ``orderrun_status`` as its text.
    """

    kitchen: str
    recipe: str
    name: str
    outcome: str = COMPLETED
    queue_seconds: float = 0.0
    planned_seconds: float = 0.2
    active_seconds: float = 0.5
    orderrun_status: str | None = None

    def final_text(self) -> str:
        if self.orderrun_status is not None:
            return self.orderrun_status
        if self.outcome == ERROR:
            return f"Node {DEFAULT_NODE} failed: step 'transform' exited with code 1"
        if self.outcome == STOPPED:
            return "Order run stopped"
        return "Order run completed"


def demo_catalogue() -> list[Variation]:
    """The default catalogue: kitchen ``demo-kitchen``, recipe ``demo-recipe`` and four variations."""
    k, r = DEFAULT_KITCHEN, DEFAULT_RECIPE
    return [
        Variation(k, r, "success", COMPLETED),
        Variation(k, r, "fails", ERROR),
        Variation(k, r, "stopped", STOPPED),
        Variation(k, r, "slow", COMPLETED, planned_seconds=1.0, active_seconds=59.0),
    ]


# ------------------------------------------------------------------------------------------ orders
def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass
class OrderRun:
    """One execution of an order (DataKitchen "serving"); its status follows from the clock."""

    hid: str
    order_id: str
    spec: Variation
    scheduled_at: float
    stopped_at: float | None = None
    stopped_by: str | None = None
    reran_at: float | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    @property
    def kitchen(self) -> str:
        return self.spec.kitchen

    @property
    def start_time(self) -> float:
        natural = self.scheduled_at + self.spec.queue_seconds
        return min(natural, self.stopped_at) if self.stopped_at is not None else natural

    def _natural(self, at: float) -> tuple[str, float | None]:
        """(status, end time) without stops and reruns."""
        planned_end = self.scheduled_at + self.spec.queue_seconds + self.spec.planned_seconds
        end = planned_end + self.spec.active_seconds
        if at < planned_end:
            return PLANNED, None
        if at < end:
            return ACTIVE, None
        return self.spec.outcome, end

    def visible(self, now: float | None = None) -> bool:
        """Listed in servings once it started (or was stopped before it could)."""
        now = self.clock() if now is None else now
        return self.stopped_at is not None or now >= self.start_time

    def status(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        if self.reran_at is not None and now >= self.reran_at:
            return RERAN
        if self.stopped_at is not None:
            return STOPPED
        return self._natural(now)[0]

    def end_time(self, now: float | None = None) -> float | None:
        now = self.clock() if now is None else now
        if self.stopped_at is not None:
            return self.stopped_at
        return self._natural(now)[1]

    def is_terminal(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        return self.status(now) in TERMINAL

    def orderrun_status(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        status = self.status(now)
        if self.stopped_at is not None:
            return f"Order run stopped by {self.stopped_by}" if self.stopped_by else "Order run stopped"
        if status == PLANNED:
            return "Order run planned"
        if status == ACTIVE:
            return f"Order run in progress: node {DEFAULT_NODE} running"
        if status == RERAN:
            return "Order run superseded by a resumed run"
        return self.spec.final_text()

    def serving(self, now: float, parameters: dict[str, Any]) -> dict[str, Any]:
        """The run as ``servings[]`` entries show it."""
        start = self.start_time
        end = self.end_time(now)
        return {
            "hid": self.hid,
            "order_id": self.order_id,
            "serving_book_hid": self.order_id,
            "kitchen_name": self.spec.kitchen,
            "recipe_name": self.spec.recipe,
            "variation_name": self.spec.name,
            "status": self.status(now),
            "orderrun_status": self.orderrun_status(now),
            "variable_overrides": dict(parameters),
            "timings": {
                "start-time": _ms(start),
                "end-time": _ms(end) if end is not None else None,
                "duration": _ms((end if end is not None else now) - start),
            },
        }

    def log_lines(self, now: float) -> list[dict[str, Any]]:
        planned_end = self.scheduled_at + self.spec.queue_seconds + self.spec.planned_seconds
        lines = [(self.start_time, "", "Order run planned")]
        if now >= planned_end and (self.stopped_at is None or self.stopped_at > planned_end):
            lines.append((planned_end, DEFAULT_NODE, f"Node {DEFAULT_NODE} started"))
        end = self.end_time(now)
        if end is not None and self.status(now) in TERMINAL:
            lines.append((end, DEFAULT_NODE if self.stopped_at is None else "", self.orderrun_status(now)))
        return [
            {
                "datetime": _iso(t),
                "node": node,
                "message": msg,
                "level": "ERROR" if "failed" in msg else "INFO",
            }
            for t, node, msg in lines
        ]


@dataclass
class Order:
    """An order (DataKitchen "serving book"): a request to run a recipe variation."""

    order_id: str
    kitchen: str
    recipe: str
    variation: str
    parameters: dict[str, Any]
    created_at: float
    created_by: str
    schedule: str | None = None
    runs: list[OrderRun] = field(default_factory=list)
    stopped_at: float | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def order_status(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        if self.stopped_at is not None:
            return "STOPPED_ORDER"
        status = self.runs[-1].status(now) if self.runs else PLANNED
        return {
            COMPLETED: "COMPLETED_ORDER",
            ERROR: "ORDER_ERROR",
            STOPPED: "STOPPED_ORDER",
        }.get(status, "ACTIVE_ORDER")

    def servings(self, now: float | None = None) -> list[dict[str, Any]]:
        """Visible runs, newest first."""
        now = self.clock() if now is None else now
        runs = [r for r in self.runs if r.visible(now)]
        return [r.serving(now, self.parameters) for r in reversed(runs)]


@dataclass(frozen=True)
class TokenInfo:
    username: str
    claims: dict[str, Any]
    token: str


class DataKitchenModel:
    """Catalogue, users/tokens, orders and runs of one DataKitchen sandbox."""

    def __init__(
        self,
        *,
        username: str = "demo@example.com",
        password: str = "demo-password",
        token_ttl: float = 4 * 3600,
        customer: str = DEFAULT_CUSTOMER,
        clock: Callable[[], float] | None = None,
        demo: bool = True,
    ) -> None:
        self.username = username
        self.password = password
        self.token_ttl = token_ttl
        self.customer = customer
        self.clock = clock or time.time
        self._demo = demo
        self._secret = secrets.token_bytes(32)
        self.lock = threading.RLock()
        self._tokens: dict[str, bool] = {}  # jti -> revoked
        self.catalogue: dict[str, dict[str, dict[str, Variation]]] = {}
        self.orders: dict[str, Order] = {}
        self.reset()

    def reset(self) -> None:
        """Orders gone, catalogue back to the demo one (or empty). Issued tokens stay valid."""
        with self.lock:
            self.orders.clear()
            self.catalogue.clear()
            for variation in demo_catalogue() if self._demo else []:
                self._put(variation)

    # ---------------------------------------------------------------- auth
    def login(self, username: str | None, password: str | None) -> str:
        if not (
            username is not None
            and password is not None
            and hmac.compare_digest(username.encode(), self.username.encode())
            and hmac.compare_digest(password.encode(), self.password.encode())
        ):
            raise InvalidCredentialsError()
        return self.issue_token(username)

    def issue_token(self, username: str | None = None, ttl: float | None = None) -> str:
        """A fresh JWT for ``username`` (the configured user by default)."""
        now = self.clock()
        jti = uuid.uuid4().hex
        claims = {
            "sub": username or self.username,
            "username": username or self.username,
            "customer": self.customer,
            "iat": int(now),
            "exp": math.ceil(now + (self.token_ttl if ttl is None else ttl)),
            "jti": jti,
        }
        with self.lock:
            self._tokens[jti] = False
        return encode_jwt(claims, self._secret)

    def authenticate(self, token: str) -> TokenInfo:
        """The token's user; ``TokenRejectedError`` if it is expired, revoked, unknown or garbled."""
        try:
            claims = decode_jwt(token, self._secret)
        except ValueError as exc:
            raise TokenRejectedError(str(exc)) from exc
        with self.lock:
            revoked = self._tokens.get(str(claims.get("jti")))
        if revoked is None:
            raise TokenRejectedError("token was not issued by this sandbox")
        if revoked:
            raise TokenRejectedError("token was expired by the sandbox")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or self.clock() >= exp:
            raise TokenRejectedError("token is expired")
        return TokenInfo(str(claims.get("sub")), claims, token)

    def expire_tokens(self) -> int:
        """Every token issued so far is expired from now on; returns how many there were."""
        with self.lock:
            for jti in self._tokens:
                self._tokens[jti] = True
            return len(self._tokens)

    # ---------------------------------------------------------------- catalogue
    def _put(self, variation: Variation) -> None:
        self.catalogue.setdefault(variation.kitchen, {}).setdefault(variation.recipe, {})[variation.name] = (
            variation
        )

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
        """Add (or replace) a variation, creating its kitchen and recipe as needed."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(sorted(OUTCOMES))}, got {outcome!r}")
        for name, value in (
            ("queue_seconds", queue_seconds),
            ("planned_seconds", planned_seconds),
            ("active_seconds", active_seconds),
        ):
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        spec = Variation(
            kitchen,
            recipe,
            variation,
            outcome,
            float(queue_seconds),
            float(planned_seconds),
            float(active_seconds),
            orderrun_status,
        )
        with self.lock:
            self._put(spec)
        return spec

    def _kitchen(self, kitchen: str, message: str) -> dict[str, dict[str, Variation]]:
        recipes = self.catalogue.get(kitchen)
        if recipes is None:
            raise CatalogueLookupError(message, f"unable to find the kitchen named {kitchen}")
        return recipes

    def lookup(self, kitchen: str, recipe: str, variation: str) -> Variation:
        """The variation, or the 417 texts of the seed page (adapted for kitchen and recipe)."""
        message = f"kitchen ({kitchen}),recipe ({recipe}),variation ({variation})"
        with self.lock:
            recipes = self._kitchen(kitchen, message)
            variations = recipes.get(recipe)
            if variations is None:
                raise CatalogueLookupError(
                    message, f"unable to find the recipe named {recipe} in the kitchen {kitchen}"
                )
            spec = variations.get(variation)
            if spec is None:
                raise CatalogueLookupError(
                    message,
                    f"unable to find the variation named {variation} in the recipe {recipe} variations.json",
                )
            return spec

    def check_kitchen(self, kitchen: str) -> None:
        with self.lock:
            self._kitchen(kitchen, f"kitchen ({kitchen})")

    # ---------------------------------------------------------------- orders
    def create_order(
        self,
        kitchen: str,
        recipe: str,
        variation: str,
        parameters: dict[str, Any] | None = None,
        *,
        username: str | None = None,
        schedule: str | None = None,
    ) -> Order:
        with self.lock:
            spec = self.lookup(kitchen, recipe, variation)
            now = self.clock()
            order = Order(
                order_id=str(uuid.uuid4()),
                kitchen=kitchen,
                recipe=recipe,
                variation=variation,
                parameters=dict(parameters or {}),
                created_at=now,
                created_by=username or self.username,
                schedule=schedule,
                clock=self.clock,
            )
            order.runs.append(OrderRun(str(uuid.uuid4()), order.order_id, spec, now, clock=self.clock))
            self.orders[order.order_id] = order
            return order

    def _order(self, kitchen: str | None, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None or (kitchen is not None and order.kitchen != kitchen):
            where = f" in the kitchen {kitchen}" if kitchen is not None else ""
            label = (
                f"kitchen ({kitchen}),order ({order_id})" if kitchen is not None else f"order ({order_id})"
            )
            raise NotFoundError(label, f"unable to find the order {order_id}{where}")
        return order

    def _run(self, kitchen: str | None, run_id: str) -> tuple[Order, OrderRun]:
        now = self.clock()
        for order in self.orders.values():
            if kitchen is not None and order.kitchen != kitchen:
                continue
            for run in order.runs:
                if run.hid == run_id and run.visible(now):
                    return order, run
        where = f" in the kitchen {kitchen}" if kitchen is not None else ""
        label = (
            f"kitchen ({kitchen}),order run ({run_id})" if kitchen is not None else f"order run ({run_id})"
        )
        raise NotFoundError(label, f"unable to find the order run {run_id}{where}")

    def order_servings(self, kitchen: str, order_id: str, count: int | None = None) -> list[dict[str, Any]]:
        """Runs of an order that have started, newest first (empty while the first one is queued)."""
        with self.lock:
            self.check_kitchen(kitchen)
            servings = self._order(kitchen, order_id).servings(self.clock())
            return servings[:count] if count is not None and count >= 0 else servings

    def run_details(self, kitchen: str, run_id: str) -> tuple[Order, dict[str, Any], OrderRun]:
        with self.lock:
            self.check_kitchen(kitchen)
            order, run = self._run(kitchen, run_id)
            return order, run.serving(self.clock(), order.parameters), run

    def order_details(self, kitchen: str, order_id: str) -> Order:
        with self.lock:
            self.check_kitchen(kitchen)
            return self._order(kitchen, order_id)

    def list_orders(self, kitchen: str, recipe: str | None = None) -> list[Order]:
        """Orders of a kitchen, newest first."""
        with self.lock:
            self.check_kitchen(kitchen)
            orders = [o for o in self.orders.values() if o.kitchen == kitchen]
            if recipe is not None:
                orders = [o for o in orders if o.recipe == recipe]
            return sorted(orders, key=lambda o: o.created_at, reverse=True)

    def stop_run(self, run_id: str, *, kitchen: str | None = None, username: str | None = None) -> OrderRun:
        """Stop a run (STOPPED_SERVING); a run that already ended keeps its status."""
        with self.lock:
            now = self.clock()
            _, run = self._run(kitchen, run_id)
            if not run.is_terminal(now):
                run.stopped_at, run.stopped_by = now, username
            return run

    def stop_order(self, order_id: str, *, kitchen: str | None = None, username: str | None = None) -> Order:
        """Stop an order and its unfinished runs (a run still queued shows up as STOPPED_SERVING)."""
        with self.lock:
            now = self.clock()
            order = self._order(kitchen, order_id)
            for run in order.runs:
                if not run.is_terminal(now):
                    run.stopped_at, run.stopped_by = now, username
            if order.stopped_at is None:
                order.stopped_at = now
            return order

    def finish_run(self, run_id: str, *, kitchen: str | None = None) -> OrderRun:
        """End an unfinished run now with its variation's outcome (a test decides when a long run ends).

        A run that already ended (or was stopped) keeps its status.
        """
        with self.lock:
            now = self.clock()
            _, run = self._run(kitchen, run_id)
            if run.is_terminal(now) or run.stopped_at is not None:
                return run
            spec = run.spec
            elapsed = max(0.0, now - run.scheduled_at)
            queue = min(spec.queue_seconds, elapsed)
            planned = min(spec.planned_seconds, elapsed - queue)
            run.spec = replace(
                spec, queue_seconds=queue, planned_seconds=planned, active_seconds=elapsed - queue - planned
            )
            return run

    def resume_run(self, run_id: str, *, kitchen: str | None = None) -> OrderRun:
        """Resume a failed or stopped run: it becomes SERVING_RERAN and a new run of its order starts."""
        with self.lock:
            now = self.clock()
            order, run = self._run(kitchen, run_id)
            if run.status(now) not in (ERROR, STOPPED):
                raise InvalidRequestError(
                    f"order run ({run_id})",
                    f"the order run {run_id} is {run.status(now)}; only a failed or stopped run can be resumed",
                )
            run.reran_at = now
            spec = self.catalogue.get(order.kitchen, {}).get(order.recipe, {}).get(order.variation, run.spec)
            new = OrderRun(
                str(uuid.uuid4()), order.order_id, replace(spec, queue_seconds=0.0), now, clock=self.clock
            )
            order.runs.append(new)
            order.stopped_at = None
            return new

    def snapshot(self) -> list[dict[str, Any]]:
        """Every order with its runs (visible or not), for the admin route."""
        with self.lock:
            now = self.clock()
            return [
                {
                    "order_id": o.order_id,
                    "kitchen": o.kitchen,
                    "recipe": o.recipe,
                    "variation": o.variation,
                    "parameters": o.parameters,
                    "order-status": o.order_status(now),
                    "created_time": _ms(o.created_at),
                    "runs": [
                        {**r.serving(now, o.parameters), "visible": r.visible(now)} for r in reversed(o.runs)
                    ],
                }
                for o in sorted(self.orders.values(), key=lambda o: o.created_at, reverse=True)
            ]
