"""The fault matrix: each injected fault x each operation, through the real hooks and triggers.

Every cell arms one fault in a loopback sandbox (``inject_fault``), runs one operation, and checks it
against the failure policy of the design:

* the outcome: ``success`` or the exception type (triggers: the event they fire),
* the attempts: how many requests the sandbox received on the faulted route,
* the orders: DataKitchen orders that exist afterwards (never two for one submit),
* for ``429``: that the hook waited for ``Retry-After`` (request timestamps in the sandbox's log).

Hook settings: ``max_retries`` 2, ``retry_delay`` 0.01 s, ``timeout`` 1 s (the read-timeout fault answers
after 2 s). The rendered table is ``docs/reliability.md``.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from reliability_support import (
    KITCHEN,
    RECIPE,
    Observed,
    SecretScanner,
    first_event,
    outcome_of,
    settle,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_RETRIES = 2
TIMEOUT = 1.0
SLOW = 2.0
INSTANT = "instant"  # a variation whose run completes at once (added to the sandbox per test)

# ------------------------------------------------------------------------------------------ faults

#: name → inject_fault kwargs (expired_token is not a fault: the sandbox expires every issued JWT).
FAULTS: dict[str, dict[str, Any]] = {
    "429": {"status": 429, "headers": {"Retry-After": "1"}, "body": {"message": "slow down"}},
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "504": {"status": 504},
    "reset": {"drop": True},
    "timeout": {"delay": SLOW},
    "expired_token": {},
    "malformed_json": {"status": 200, "body": "<html><body>Bad gateway page</body></html>"},
    "lost_answer": {"status": 502, "apply": True},
    "lost_answer_reset": {"drop": True, "apply": True},
    "503_spent": {"status": 503, "times": MAX_RETRIES + 1},
}

OPERATIONS = (
    "submit",
    "run_poke",
    "run_poke_deferred",
    "accept",
    "lifecycle_poke",
    "lifecycle_poke_deferred",
)
DATAKITCHEN_OPS = {"submit", "run_poke", "run_poke_deferred"}
#: The sandbox route each operation's first request goes to (the one the fault is armed on).
ROUTE = {
    "submit": "create_order",
    "run_poke": "servings",
    "run_poke_deferred": "servings",
    "accept": "acceptOrder",
    "lifecycle_poke": "order",
    "lifecycle_poke_deferred": "order",
}
READS = {"run_poke", "run_poke_deferred", "lifecycle_poke", "lifecycle_poke_deferred"}
DEFERRED = {"run_poke_deferred", "lifecycle_poke_deferred"}


@dataclass(frozen=True)
class Expect:
    outcomes: tuple[str, ...]
    attempts: int
    orders: tuple[int, ...] | None = None  # DataKitchen submit only
    logins: int = 0  # DataKitchen logins during the call (a token exists before it)
    reads: int = 0  # ezCater accept: order reads to resolve an invalid state transition
    accepted: bool | None = None  # ezCater accept only
    policy: str = ""

    def text(self) -> str:
        out = " or ".join(self.outcomes) + f", {self.attempts} req"
        if self.orders is not None:
            out += f", {'/'.join(map(str, self.orders))} order(s)"
        return out


def expectation(fault: str, op: str) -> Expect | str:
    """The failure policy (design.md) for one cell; a string means "not applicable" and says why."""
    ok = "event success" if op in DEFERRED else "success"
    spent = "event error" if op in DEFERRED else "TransientOrdersError"
    if fault == "expired_token" and op not in DATAKITCHEN_OPS:
        return "ezCater API tokens do not expire; a refused token is permanent (see bad input)"
    if fault.startswith("lost_answer") and op in READS:
        return "reads change nothing: a lost answer is the same as the 502 row"
    if fault == "503_spent":
        orders = (0,) if op == "submit" else None
        return Expect((spent,), MAX_RETRIES + 1, orders, policy="bounded retry budget, then transient error")
    if op in READS:
        if fault == "expired_token":
            return Expect((ok,), 2, logins=1, policy="401 expired: log in again once, repeat")
        return Expect((ok,), 2, policy="reads: retry in the hook")
    if op == "submit":
        if fault in ("429", "503"):
            return Expect(("success",), 2, (1,), policy="server did not act: retry in the hook")
        if fault == "expired_token":
            return Expect(("success",), 2, (1,), logins=1, policy="401 expired: log in again once, repeat")
        if fault == "timeout":
            # the sandbox executes the delayed request after the client gave up: the order exists
            return Expect(("OrderOutcomeUnknownError",), 1, (1,), policy="no blind re-PUT")
        if fault.startswith("lost_answer"):
            return Expect(("OrderOutcomeUnknownError",), 1, (1,), policy="no blind re-PUT")
        # 500, 502, 504, reset, malformed JSON: the request may have been acted on
        return Expect(("OrderOutcomeUnknownError",), 1, (0,), policy="no blind re-PUT")
    # accept
    if fault.startswith("lost_answer"):
        return Expect(
            ("success",), 2, accepted=True, reads=1, policy="retry, then read the order: accepted by us"
        )
    return Expect(("success",), 2, accepted=True, policy="mutations: retry in the hook, then resolve")


CELLS = [(f, op) for f in FAULTS for op in OPERATIONS]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def dk(datakitchen_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    datakitchen_sandbox.add_variation(KITCHEN, RECIPE, INSTANT, planned_seconds=0.0, active_seconds=0.0)
    extra = {"retry_delay": 0.01, "max_retries": MAX_RETRIES, "timeout": TIMEOUT}
    monkeypatch.setenv("AIRFLOW_CONN_DATAKITCHEN_DEFAULT", datakitchen_sandbox.connection_json(extra))
    return datakitchen_sandbox


@pytest.fixture
def ez(ezcater_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    extra = {"retry_delay": 0.01, "max_retries": MAX_RETRIES, "timeout": TIMEOUT}
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", ezcater_sandbox.connection_json(extra))
    return ezcater_sandbox


# ------------------------------------------------------------------------------------------ operations


def _trigger_kwargs(cls: type, available: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for a trigger whose exact signature is the operators layer's business."""
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in available.items() if k in params}
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and name not in kwargs
    ]
    assert not missing, f"{cls.__name__} needs {missing}; teach the reliability suite about them"
    return kwargs


def _event_outcome(event: Any) -> Observed:
    payload = getattr(event, "payload", event)
    outcome = payload.get("outcome") if isinstance(payload, dict) else None
    message = str(payload.get("message", "")) if isinstance(payload, dict) else str(payload)
    return Observed(f"event {outcome}", message, value=payload)


def _trigger_outcome(trigger: Any) -> Observed:
    """The trigger's first event; a trigger that raises instead of firing an error event is a finding."""
    raised = outcome_of(lambda: first_event(trigger))
    if raised.outcome != "success":
        return Observed(f"trigger raised {raised.outcome}", raised.message, exc=raised.exc)
    return _event_outcome(raised.value)


def _prepare_datakitchen(dk: Any, op: str) -> dict[str, Any]:
    """Warm up (so a token exists, for the expired-token row) and create what a poke reads."""
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    hook = DataKitchenHook()
    hook.get_user_info()
    ctx: dict[str, Any] = {}
    if op != "submit":
        order_id = hook.create_order(KITCHEN, RECIPE, INSTANT)["order_id"]
        assert wait_for(
            lambda: any(
                r.get("status") == "COMPLETED_SERVING" for r in hook.get_order_runs(KITCHEN, order_id)
            )
        )
        ctx["order_id"] = order_id
        ctx["order_run_id"] = hook.get_order_runs(KITCHEN, order_id)[0]["hid"]
    hook.close()
    return ctx


def run_datakitchen(dk: Any, op: str, ctx: dict[str, Any]) -> Observed:
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    hook = DataKitchenHook()
    if op == "submit":
        return outcome_of(lambda: hook.create_order(KITCHEN, RECIPE, "success", parameters={"cell": 1}))
    if op == "run_poke":

        def poke() -> Any:
            runs = hook.get_order_runs(KITCHEN, ctx["order_id"])
            assert runs[0]["status"] == "COMPLETED_SERVING", runs
            return runs

        return outcome_of(poke)
    from airflow_provider_orders.triggers.datakitchen import OrderRunTrigger

    kwargs = _trigger_kwargs(
        OrderRunTrigger,
        {
            "kitchen": KITCHEN,
            "order_id": ctx["order_id"],
            "datakitchen_conn_id": "datakitchen_default",
            "poll_interval": 0.05,
            "end_time": time.time() + 30,
            "deadline": time.time() + 30,
        },
    )
    return _trigger_outcome(OrderRunTrigger(**kwargs))


def run_ezcater(ez: Any, op: str, order_id: str) -> Observed:
    from airflow_provider_orders.hooks.ezcater import EzCaterHook

    hook = EzCaterHook()
    if op == "accept":
        return outcome_of(lambda: hook.accept_order(order_id))
    if op == "lifecycle_poke":

        def poke() -> Any:
            order = hook.get_order(order_id)
            assert order["lifecycle"]["orderIsCurrently"] == "submitted", order
            return order

        return outcome_of(poke)
    from airflow_provider_orders.triggers.ezcater import OrderLifecycleTrigger

    kwargs = _trigger_kwargs(
        OrderLifecycleTrigger,
        {
            "order_id": order_id,
            "target_states": ["submitted"],
            "failure_states": ["rejected", "cancelled"],
            "ezcater_conn_id": "ezcater_default",
            "poll_interval": 0.05,
            "end_time": time.time() + 30,
            "deadline": time.time() + 30,
        },
    )
    return _trigger_outcome(OrderLifecycleTrigger(**kwargs))


def _arm(sandbox: Any, fault: str, route: str) -> None:
    if fault == "expired_token":
        sandbox.expire_tokens()
        return
    spec = dict(FAULTS[fault])
    sandbox.inject_fault(route, **spec)


def _summary(obs: Observed, attempts: int, expect: Expect) -> str:
    out = f"{obs.outcome} · {attempts} req"
    if expect.orders is not None:
        out += f" · {obs.orders} order{'s' if obs.orders != 1 else ''}"
    return out


@pytest.mark.parametrize(("fault", "op"), CELLS, ids=[f"{f}-{op}" for f, op in CELLS])
def test_fault_cell(
    fault: str,
    op: str,
    request: pytest.FixtureRequest,
    record_cell: Callable[..., None],
    secret_scan: SecretScanner,
) -> None:
    expect = expectation(fault, op)
    if isinstance(expect, str):
        record_cell("matrix", fault, op, expected="n/a", summary="n/a", passed=True, na=expect)
        pytest.skip(expect)
    route = ROUTE[op]
    if op in DATAKITCHEN_OPS:
        sandbox = request.getfixturevalue("dk")
        ctx = _prepare_datakitchen(sandbox, op)
        sandbox.clear_requests()
        _arm(sandbox, fault, route)
        obs = run_datakitchen(sandbox, op, ctx)
    else:
        sandbox = request.getfixturevalue("ez")
        order_id = sandbox.add_order(state="submitted", transitions=[])
        _arm(sandbox, fault, route)
        obs = run_ezcater(sandbox, op, order_id)
    settle(sandbox, timeout=SLOW + 3)
    secret_scan.add("exception text", obs.message)
    attempts = sandbox.count(route=route)
    logins = sandbox.count(route="login") if op in DATAKITCHEN_OPS else None
    if op == "submit":
        obs.orders = len(sandbox.orders)
    if op == "accept":
        obs.state = sandbox.order_state(order_id)
    summary = _summary(obs, attempts, expect)

    problems = []
    if obs.outcome not in expect.outcomes:
        problems.append(f"outcome {obs.outcome} ({obs.message[:300]}), expected {expect.outcomes}")
    if attempts != expect.attempts:
        problems.append(f"{attempts} requests to {route}, expected {expect.attempts}")
    if expect.orders is not None and obs.orders not in expect.orders:
        problems.append(f"{obs.orders} orders, expected {expect.orders}")
    if logins is not None and logins != expect.logins:
        problems.append(f"{logins} logins, expected {expect.logins}")
    reads = sandbox.count(route="order") if op == "accept" else 0
    if reads != expect.reads:
        problems.append(f"{reads} order reads, expected {expect.reads}")
    others = len(sandbox.requests) - attempts - (logins or 0) - reads
    if others:
        problems.append(f"{others} unexpected request(s): {[r.route for r in sandbox.requests]}")
    if expect.accepted and obs.state != "accepted":
        problems.append(f"order is {obs.state!r}, expected 'accepted'")
    if fault == "429" and attempts >= 2:
        times = [r.time for r in sandbox.requests if route in r.routes]
        if times[1] - times[0] < 0.9:
            problems.append(f"retried {times[1] - times[0]:.2f} s after a 429 with Retry-After: 1")
    record_cell(
        "matrix",
        fault,
        op,
        expected=f"{expect.text()} ({expect.policy})",
        summary=summary,
        passed=not problems,
        detail={"message": obs.message[:500], "logins": logins, "problems": problems},
    )
    assert not problems, (
        "; ".join(problems) + f"\nrequest log: {json.dumps([r.fault for r in sandbox.requests])}"
    )
