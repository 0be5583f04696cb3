"""DataKitchen sandbox state: catalogue, users and JWTs, orders and their runs. No HTTP in here.

Time is read from an injectable ``clock`` (epoch seconds, ``time.time`` by default); an order run's
status is derived from it, so runs walk PLANNED_SERVING -> ACTIVE_SERVING -> terminal without a thread.
Every public method takes the model's lock, so the threaded server may call them concurrently.

A recipe is a chain of nodes (``extract``, ``transform``, ``load`` by default). A run spends its
ACTIVE_SERVING time on its nodes in turn; a failing run stops at the variation's failing node, and a
resume re-runs that node and those after it. The log and the test report of a run are derived from
its nodes and the variation's test specs, again from the clock alone.
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
from collections.abc import Iterable, Mapping, Sequence
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
#: The one node of the legacy demo variations (success, fails, stopped, slow).
DEFAULT_NODE = "process-data"
#: The nodes of a variation that does not name its own.
DEFAULT_NODES = ("extract", "transform", "load")
#: Who "creates" the orders DataKitchen's own scheduler starts.
SCHEDULER_USER = "DataKitchen Scheduler"

PASSED = "PASSED"
WARNING = "WARNING"
FAILED = "FAILED"
TEST_STATUSES = (PASSED, WARNING, FAILED)


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
class TestSpec:
    """A data test a node of a variation runs: ``status`` is PASSED, WARNING or FAILED.

    A FAILED test only reports FAILED in a run that fails; a run of the same variation that completes
    (a resume of a ``fail_runs`` variation) reports it PASSED.
    """

    __test__ = False  # not a pytest test class

    node: str
    name: str
    status: str = PASSED
    message: str | None = None

    @classmethod
    def coerce(cls, value: Any) -> TestSpec:
        """A TestSpec from itself, a mapping ``{node, name, status?, message?}`` or a sequence."""
        if isinstance(value, TestSpec):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"node", "name", "status", "message"}
            if unknown:
                raise ValueError(f"unknown test field(s): {', '.join(sorted(unknown))}")
            if "node" not in value or "name" not in value:
                raise ValueError('a test needs a "node" and a "name"')
            return cls(
                str(value["node"]), str(value["name"]), str(value.get("status", PASSED)), value.get("message")
            )
        if isinstance(value, Sequence) and not isinstance(value, str) and 2 <= len(value) <= 4:
            node, name, *rest = value
            status = str(rest[0]) if rest else PASSED
            message = rest[1] if len(rest) > 1 else None
            return cls(str(node), str(name), status, None if message is None else str(message))
        raise ValueError(
            f"a test is {{node, name, status, message}} or [node, name, status, message], got {value!r}"
        )


@dataclass(frozen=True)
class Variation:
    """A recipe variation and how its order runs behave.

    A run is queued (not listed yet) for ``queue_seconds``, PLANNED_SERVING for ``planned_seconds``,
    ACTIVE_SERVING for ``active_seconds``, then ends in ``outcome`` with ``orderrun_status`` as its text.

    During ACTIVE_SERVING the run works through ``nodes`` in turn (the active time split evenly among
    the nodes the run gets to). A run that does not complete ends at ``failing_node`` (default: the
    last-but-one node). ``fail_runs=None``: every run ends in ``outcome``; ``fail_runs=N``: the first N
    runs of an order end SERVING_ERROR and later ones (resumes) COMPLETED_SERVING. ``tests`` are the
    data tests the nodes run; ``log_lines_per_node`` is how many log lines each node that ran writes.
    """

    kitchen: str
    recipe: str
    name: str
    outcome: str = COMPLETED
    queue_seconds: float = 0.0
    planned_seconds: float = 0.2
    active_seconds: float = 0.5
    orderrun_status: str | None = None
    nodes: tuple[str, ...] = DEFAULT_NODES
    failing_node: str | None = None
    fail_runs: int | None = None
    tests: tuple[TestSpec, ...] = ()
    log_lines_per_node: int = 3

    @property
    def failing(self) -> str:
        """The node a run that does not complete ends at."""
        if self.failing_node is not None:
            return self.failing_node
        return self.nodes[-2] if len(self.nodes) >= 2 else self.nodes[0]

    def outcome_of(self, attempt: int) -> str:
        """How the ``attempt``-th run (0: the order's first) of an order ends, before skips."""
        if self.fail_runs is None:
            return self.outcome
        return ERROR if attempt < self.fail_runs else COMPLETED

    def final_text(self, outcome: str | None = None) -> str:
        """The ``orderrun_status`` of a run that ended in ``outcome`` (default: the variation's)."""
        outcome = self.outcome if outcome is None else outcome
        if self.orderrun_status is not None and (outcome != COMPLETED or self.fail_runs is None):
            return self.orderrun_status
        if outcome == ERROR:
            node = self.failing
            failed = next((t for t in self.tests if t.node == node and t.status == FAILED), None)
            if failed is not None:
                text = f"Node {node} failed: test {failed.name} FAILED"
                return f"{text}: {failed.message}" if failed.message else text
            # the legacy single-node recipe's text names its step 'transform'
            step = "transform" if node == DEFAULT_NODE else node
            return f"Node {node} failed: step '{step}' exited with code 1"
        if outcome == STOPPED:
            return "Order run stopped"
        return "Order run completed"


#: The failure text of the legacy ``fails`` demo variation.
LEGACY_FAILURE_TEXT = f"Node {DEFAULT_NODE} failed: step 'transform' exited with code 1"


def demo_catalogue() -> list[Variation]:
    """The default catalogue: kitchen ``demo-kitchen``, recipe ``demo-recipe`` and its variations.

    ``success``, ``fails``, ``stopped`` and ``slow`` are the legacy single-node ones (node
    ``process-data``); ``fails-data-test``, ``flaky`` and ``noisy-failure`` run extract, transform, load.
    """
    k, r = DEFAULT_KITCHEN, DEFAULT_RECIPE
    legacy: dict[str, Any] = {"nodes": (DEFAULT_NODE,), "log_lines_per_node": 2}
    passed = (TestSpec(DEFAULT_NODE, "output_not_empty", PASSED, "process-data wrote 1234 rows"),)
    return [
        Variation(k, r, "success", COMPLETED, tests=passed, **legacy),
        Variation(
            k,
            r,
            "fails",
            ERROR,
            orderrun_status=LEGACY_FAILURE_TEXT,
            tests=(TestSpec(DEFAULT_NODE, "exit_code", FAILED, "step 'transform' exited with code 1"),),
            **legacy,
        ),
        Variation(k, r, "stopped", STOPPED, **legacy),
        Variation(k, r, "slow", COMPLETED, planned_seconds=1.0, active_seconds=59.0, tests=passed, **legacy),
        Variation(
            k,
            r,
            "fails-data-test",
            ERROR,
            failing_node="load",
            tests=(
                TestSpec("extract", "source_freshness", PASSED, "orders_raw was updated 4 minutes ago"),
                TestSpec("transform", "schema_check", PASSED, "orders_clean has the 12 expected columns"),
                TestSpec(
                    "transform", "null_ratio", WARNING, "5.2% of customer_id values are null (limit 5%)"
                ),
                TestSpec(
                    "load", "row_count_check", FAILED, "expected at least 1000 rows in orders_clean, found 12"
                ),
                TestSpec("load", "unique_order_id", PASSED),
            ),
        ),
        Variation(
            k,
            r,
            "flaky",
            ERROR,
            failing_node="transform",
            fail_runs=1,
            orderrun_status="Node transform failed: the warehouse connection was reset (transient)",
            tests=(
                TestSpec("extract", "source_freshness", PASSED, "orders_raw was updated 2 minutes ago"),
                TestSpec("load", "row_count_check", PASSED, "1,532 rows in orders_clean"),
            ),
        ),
        Variation(k, r, "noisy-failure", ERROR, log_lines_per_node=5000),
    ]


def _node_spans(start: float, end: float, count: int) -> list[tuple[float, float]]:
    """``count`` equal consecutive spans of [start, end] (the last one ends exactly at ``end``)."""
    step = (end - start) / count if count else 0.0
    return [(start + i * step, end if i == count - 1 else start + (i + 1) * step) for i in range(count)]


# ------------------------------------------------------------------------------------------ orders
def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass
class OrderRun:
    """One execution of an order (DataKitchen "serving"); its status follows from the clock.

    ``attempt`` counts the order's runs (0: the first); a resumed run starts at node ``first_node`` of
    its variation and names the run it resumed in ``resumed_from``; ``overrides`` are variables the
    resume request added.
    """

    hid: str
    order_id: str
    spec: Variation
    scheduled_at: float
    stopped_at: float | None = None
    stopped_by: str | None = None
    reran_at: float | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    attempt: int = 0
    first_node: int = 0
    resumed_from: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def kitchen(self) -> str:
        return self.spec.kitchen

    @property
    def outcome(self) -> str:
        """How this run ends unless stopped: the variation's outcome for this attempt, COMPLETED when
        the node it would end at was skipped."""
        outcome = self.spec.outcome_of(self.attempt)
        if outcome != COMPLETED and self.spec.nodes.index(self.spec.failing) < self.first_node:
            return COMPLETED
        return outcome

    @property
    def node_names(self) -> tuple[str, ...]:
        """The nodes this run works through (up to the failing node if it does not complete)."""
        nodes = self.spec.nodes
        last = len(nodes) - 1 if self.outcome == COMPLETED else nodes.index(self.spec.failing)
        return nodes[self.first_node : last + 1]

    @property
    def start_time(self) -> float:
        natural = self.scheduled_at + self.spec.queue_seconds
        return min(natural, self.stopped_at) if self.stopped_at is not None else natural

    def _planned_end(self) -> float:
        return self.scheduled_at + self.spec.queue_seconds + self.spec.planned_seconds

    def _natural(self, at: float) -> tuple[str, float | None]:
        """(status, end time) without stops and reruns."""
        planned_end = self._planned_end()
        end = planned_end + self.spec.active_seconds
        if at < planned_end:
            return PLANNED, None
        if at < end:
            return ACTIVE, None
        return self.outcome, end

    def node_spans(self) -> list[tuple[str, float, float]]:
        """(node, start, end) of the nodes this run works through, stops ignored."""
        planned_end = self._planned_end()
        names = self.node_names
        spans = _node_spans(planned_end, planned_end + self.spec.active_seconds, len(names))
        return [(name, start, end) for name, (start, end) in zip(names, spans, strict=True)]

    def current_node(self, at: float) -> str | None:
        """The node running at ``at`` (None before or after the active phase)."""
        return next((n for n, start, end in self.node_spans() if start <= at < end), None)

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
            node = self.current_node(now)
            return f"Order run in progress: node {node} running" if node else "Order run in progress"
        if status == RERAN:
            return "Order run superseded by a resumed run"
        return self.spec.final_text(self.outcome)

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
            "variable_overrides": {**parameters, **self.overrides},
            "timings": {
                "start-time": _ms(start),
                "end-time": _ms(end) if end is not None else None,
                "duration": _ms((end if end is not None else now) - start),
            },
        }

    def resume_node(self) -> int:
        """Index (in the variation's nodes) of the node a resume of this ended run starts at: the
        failing node, or for a run stopped by hand the first node it did not finish."""
        nodes = self.spec.nodes
        if self.stopped_at is not None:
            spans = self.node_spans()
            unfinished = [n for n, _, end in spans if end > self.stopped_at]
            if unfinished:
                return nodes.index(unfinished[0])
            return nodes.index(spans[-1][0]) + 1 if spans else self.first_node
        return nodes.index(self.spec.failing)

    def _started(self, start: float, now: float) -> bool:
        return start <= now and (self.stopped_at is None or start <= self.stopped_at)

    def _finished(self, end: float, now: float) -> bool:
        return end <= now and (self.stopped_at is None or end <= self.stopped_at)

    def log_lines(self, now: float) -> list[dict[str, Any]]:
        """The run's log so far, oldest first: a planned line, then per node that ran a start line,
        ``log_lines_per_node - 2`` progress lines and an end line (the failing node's is the ERROR
        failure text), then the run's end (completed or stopped)."""
        outcome = self.outcome
        per_node = max(1, self.spec.log_lines_per_node)
        planned = "Order run planned"
        if self.resumed_from is not None:
            planned += f": resuming order run {self.resumed_from}"
            if self.node_names:
                planned += f" from node {self.node_names[0]}"
        lines: list[tuple[float, str, str, str]] = [(self.start_time, "", planned, "INFO")]
        for node, start, end in self.node_spans():
            if not self._started(start, now):
                break
            if per_node >= 2:
                lines.append((start, node, f"Node {node} started", "INFO"))
                for i in range(1, per_node - 1):
                    at = start + (end - start) * i / (per_node - 1)
                    if not self._started(at, now):
                        break
                    lines.append((at, node, f"Node {node}: processed batch {i} of {per_node - 2}", "INFO"))
            if not self._finished(end, now):
                continue
            if node == self.spec.failing and outcome == ERROR:
                lines.append((end, node, self.spec.final_text(ERROR), "ERROR"))
            elif node == self.spec.failing and outcome == STOPPED:
                lines.append((end, node, self.spec.final_text(STOPPED), "WARNING"))
            else:
                warnings = sum(1 for t in self.spec.tests if t.node == node and t.status == WARNING)
                if warnings:
                    text = f"Node {node} completed with {warnings} test warning(s)"
                    lines.append((end, node, text, "WARNING"))
                else:
                    lines.append((end, node, f"Node {node} completed", "INFO"))
        end_at = self.end_time(now)
        if end_at is not None and self.status(now) in TERMINAL:
            if self.stopped_at is not None:
                lines.append((end_at, "", self.orderrun_status(now), "WARNING"))
            elif outcome == COMPLETED:
                lines.append((end_at, "", self.spec.final_text(COMPLETED), "INFO"))
        return [
            {"datetime": _iso(at), "node": node, "message": message, "level": level}
            for at, node, message, level in lines
        ]

    def test_results(self, now: float) -> list[tuple[str, TestSpec]]:
        """(node, test as reported) for every test of the nodes this run finished so far."""
        fails = self.outcome == ERROR
        results = []
        for node, _, end in self.node_spans():
            if not self._finished(end, now):
                break
            for test in self.spec.tests:
                if test.node != node:
                    continue
                if test.status == FAILED and not (fails and node == self.spec.failing):
                    results.append((node, TestSpec(test.node, test.name, PASSED)))  # it passed this time
                else:
                    results.append((node, test))
        return results

    def test_report(self, now: float) -> str:
        """The TEXT test report (the sandbox's own form; DataKitchen does not document one)."""
        lines = [f"Test results for order run {self.hid}"]
        results = self.test_results(now)
        current: str | None = None
        for node, test in results:
            if node != current:
                lines.append(f"Node: {node}")
                current = node
            text = f"  {test.status}: {test.name}"
            lines.append(f"{text} - {test.message}" if test.message else text)
        counts = {status: sum(1 for _, t in results if t.status == status) for status in TEST_STATUSES}
        lines.append(f"Totals: {counts[PASSED]} passed, {counts[WARNING]} warnings, {counts[FAILED]} failed")
        return "\n".join(lines)


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

    def search_text(self) -> str:
        """What the order list's ``search`` filter looks in (lower-cased)."""
        overrides = json.dumps(self.parameters, sort_keys=True, default=str)
        return "\n".join((self.order_id, self.recipe, self.variation, overrides)).lower()

    def listing(self, now: float) -> dict[str, Any]:
        """The order as the order list (``GET /v2/order/status``) shows it."""
        return {
            "hid": self.order_id,
            "order-status": self.order_status(now),
            "recipe_name": self.recipe,
            "variation_name": self.variation,
            "variable_overrides": dict(self.parameters),
            "created_time": _ms(self.created_at),
            "created_by": self.created_by,
            "schedule": self.schedule,
        }


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
        *,
        nodes: Iterable[str] = DEFAULT_NODES,
        failing_node: str | None = None,
        fail_runs: int | None = None,
        tests: Iterable[Any] = (),
        log_lines_per_node: int = 3,
    ) -> Variation:
        """Add (or replace) a variation, creating its kitchen and recipe as needed (see :class:`Variation`).

        ``tests`` items are :class:`TestSpec`, mappings ``{node, name, status, message}`` or sequences
        ``(node, name, status, message)``.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(sorted(OUTCOMES))}, got {outcome!r}")
        for name, value in (
            ("queue_seconds", queue_seconds),
            ("planned_seconds", planned_seconds),
            ("active_seconds", active_seconds),
        ):
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if isinstance(nodes, str):
            raise ValueError(f"nodes must be a list of node names, got the string {nodes!r}")
        node_names = tuple(str(n) for n in nodes)
        if not node_names or any(not n for n in node_names) or len(set(node_names)) != len(node_names):
            raise ValueError(f"nodes must be distinct non-empty names (at least one), got {list(node_names)}")
        if failing_node is not None and failing_node not in node_names:
            raise ValueError(f"failing_node {failing_node!r} is not one of the nodes {list(node_names)}")
        if fail_runs is not None and (
            isinstance(fail_runs, bool) or int(fail_runs) != fail_runs or fail_runs < 0
        ):
            raise ValueError(f"fail_runs must be None or a whole number >= 0, got {fail_runs!r}")
        if isinstance(log_lines_per_node, bool) or int(log_lines_per_node) != log_lines_per_node:
            raise ValueError(f"log_lines_per_node must be a whole number, got {log_lines_per_node!r}")
        if log_lines_per_node < 1:
            raise ValueError(f"log_lines_per_node must be at least 1, got {log_lines_per_node}")
        specs = tuple(TestSpec.coerce(t) for t in tests)
        for test in specs:
            if test.node not in node_names:
                raise ValueError(
                    f"test {test.name!r}: node {test.node!r} is not one of the nodes {list(node_names)}"
                )
            if test.status not in TEST_STATUSES:
                raise ValueError(
                    f"test {test.name!r}: status must be one of {', '.join(TEST_STATUSES)}, got {test.status!r}"
                )
        spec = Variation(
            kitchen,
            recipe,
            variation,
            outcome,
            float(queue_seconds),
            float(planned_seconds),
            float(active_seconds),
            orderrun_status,
            nodes=node_names,
            failing_node=failing_node,
            fail_runs=None if fail_runs is None else int(fail_runs),
            tests=specs,
            log_lines_per_node=int(log_lines_per_node),
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

    def list_orders(
        self,
        kitchen: str,
        recipe: str | None = None,
        *,
        variation: str | None = None,
        order_status: str | None = None,
        run_status: str | None = None,
        time_period_minutes: float | None = None,
        search: str | None = None,
        count: int | None = None,
        listing_delay: float = 0.0,
    ) -> list[Order]:
        """Orders of a kitchen, newest first, narrowed by every filter given.

        ``order_status`` / ``run_status`` may list several values separated by commas; ``run_status``
        keeps orders with at least one started run in one of them; ``time_period_minutes`` keeps orders
        created that many minutes back from now or later; ``search`` is a case-insensitive substring of
        the order id, recipe, variation or the overrides' JSON. An order is listed only
        ``listing_delay`` seconds after it was created.
        """

        def values(text: str | None) -> set[str] | None:
            return {v.strip() for v in text.split(",") if v.strip()} if text else None

        order_statuses, run_statuses = values(order_status), values(run_status)
        needle = search.lower() if search else None
        with self.lock:
            self.check_kitchen(kitchen)
            now = self.clock()
            orders = [
                o
                for o in self.orders.values()
                if o.kitchen == kitchen and now >= o.created_at + listing_delay
            ]
            if recipe is not None:
                orders = [o for o in orders if o.recipe == recipe]
            if variation is not None:
                orders = [o for o in orders if o.variation == variation]
            if order_statuses is not None:
                orders = [o for o in orders if o.order_status(now) in order_statuses]
            if run_statuses is not None:
                orders = [
                    o for o in orders if any(r.visible(now) and r.status(now) in run_statuses for r in o.runs)
                ]
            if time_period_minutes is not None:
                orders = [o for o in orders if o.created_at >= now - time_period_minutes * 60]
            if needle is not None:
                orders = [o for o in orders if needle in o.search_text()]
            orders.sort(key=lambda o: o.created_at, reverse=True)
            return orders[:count] if count is not None and count > 0 else orders

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

    def resume_run(
        self,
        run_id: str,
        *,
        kitchen: str | None = None,
        skip_failed_nodes: bool = False,
        parameters: dict[str, Any] | None = None,
    ) -> OrderRun:
        """Resume a failed or stopped run: it becomes SERVING_RERAN and a new run of its order starts
        (not queued) at the failed node (the node after it with ``skip_failed_nodes``), with
        ``parameters`` added to the order's variable overrides."""
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
            first = run.resume_node()
            if spec.nodes != run.spec.nodes:  # the variation changed: start again from the top
                first = 0
            elif skip_failed_nodes and run.stopped_at is None:
                first += 1
            new = OrderRun(
                str(uuid.uuid4()),
                order.order_id,
                replace(spec, queue_seconds=0.0),
                now,
                clock=self.clock,
                attempt=len(order.runs),
                first_node=min(first, len(spec.nodes)),
                resumed_from=run.hid,
                overrides={**run.overrides, **(parameters or {})},
            )
            order.runs.append(new)
            order.stopped_at = None
            return new

    def start_scheduled_order(
        self, kitchen: str, recipe: str, variation: str, parameters: dict[str, Any] | None = None
    ) -> Order:
        """An order DataKitchen's own scheduler starts (``created_by`` DataKitchen Scheduler)."""
        return self.create_order(
            kitchen, recipe, variation, parameters, username=SCHEDULER_USER, schedule="scheduled"
        )

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
                    "created_by": o.created_by,
                    "schedule": o.schedule,
                    "runs": [
                        {**r.serving(now, o.parameters), "visible": r.visible(now)} for r in reversed(o.runs)
                    ],
                }
                for o in sorted(self.orders.values(), key=lambda o: o.created_at, reverse=True)
            ]
