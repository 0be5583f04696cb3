"""DataKitchenHook.stop_on_kill / astop_on_kill over real HTTP against the DataKitchen sandbox.

Airflow calls a task's ``on_kill`` from its SIGTERM handler in the thread it interrupted, and a trigger's
``on_kill`` within 30 s: the stop must not wait on a lock the interrupted code holds, and must end within
its budget whatever the server does. Time bounds here are generous (budget 2 s → done in < 10 s): they
tell "bounded" from "waits for the connection's full retry budget or forever", not fast from slow.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from hook_test_support import run_async, wait_for

from airflow_provider_orders.exceptions import RequestRejectedError, TransientOrdersError
from airflow_provider_orders.hooks._datakitchen_session import TOKENS
from airflow_provider_orders.hooks.datakitchen import KILL_ATTEMPTS, DataKitchenHook

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox

KITCHEN, RECIPE = "demo-kitchen", "demo-recipe"


def _running(hook: DataKitchenHook) -> tuple[str, str]:
    """A new order of the slow variation and its (running) run's id."""
    order_id = hook.create_order(KITCHEN, RECIPE, "slow")["order_id"]
    run = wait_for(lambda: (hook.get_order_runs(KITCHEN, order_id) or [None])[0])
    return order_id, run["hid"]


def _run_status(dk: DataKitchenSandbox, order_id: str) -> str:
    return str(dk.orders[order_id].runs[0].status())


def _tokens_sent(dk: DataKitchenSandbox) -> set[str]:
    return {
        r.headers["authorization"].removeprefix("Bearer ")
        for r in dk.requests
        if r.headers.get("authorization", "").startswith("Bearer ")
    }


def _in_thread(fn: Any, *, join: float) -> dict[str, Any]:
    """Run ``fn`` in a daemon thread; its result, error and duration (a thread still blocked after
    ``join`` seconds is reported, not waited for)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            outcome["result"] = fn()
        except Exception as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(join)
    outcome["blocked"] = thread.is_alive()
    return outcome


def test_stop_on_kill_does_not_wait_for_the_login_lock_its_own_thread_holds(
    datakitchen_sandbox: DataKitchenSandbox,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow.providers.common.compat.sdk import redact

    dk = datakitchen_sandbox
    caplog.set_level("DEBUG")
    hook = DataKitchenHook()
    order_id, run_id = _running(hook)
    TOKENS.clear()  # the interrupted code was logging in: no token in the cache
    key = hook._get_config().key

    def interrupted_login_then_kill() -> str:
        # What the SIGTERM handler sees: its own thread holds the (non-reentrant) login lock.
        with TOKENS.login_lock(key):
            return hook.stop_on_kill(KITCHEN, order_id, run_id, budget=5.0)

    outcome = _in_thread(interrupted_login_then_kill, join=30)

    assert not outcome["blocked"], "stop_on_kill waited on the login lock held by its own thread"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"] == f"order run '{run_id}' was stopped"  # stop_run_or_order's words
    assert outcome["seconds"] < 5.0
    assert wait_for(lambda: _run_status(dk, order_id) == "STOPPED_SERVING")
    assert dk.count(route="stop_run") == 1

    # no secret in any log line (the JWT of the extra login is masked in this process)
    captured = capfd.readouterr()
    outputs = captured.out + captured.err + caplog.text
    assert "Logged in to DataKitchen" in outputs  # the logs were captured at all
    secrets = [*_tokens_sent(dk), dk.password]
    assert len(secrets) >= 2
    for secret in secrets:
        assert secret not in outputs
    for token in _tokens_sent(dk):
        assert redact(f"token={token}") == "token=***"


def test_stop_on_kill_uses_a_fresh_cached_token_without_any_lock(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id, _ = _running(hook)  # logged in: the token is cached
    dk.clear_requests()
    key = hook._get_config().key

    def kill_while_locks_are_held() -> str:
        with TOKENS.login_lock(key), TOKENS._lock:  # even the cache's own lock
            return hook.stop_on_kill(KITCHEN, order_id, None, budget=5.0)

    outcome = _in_thread(kill_while_locks_are_held, join=30)

    assert not outcome["blocked"]
    assert outcome.get("result") == f"no run had started, so order '{order_id}' was stopped"
    assert dk.count(route="login") == 0
    assert dk.count(route="stop_order") == 1


def test_stop_on_kill_ends_within_its_budget_when_every_stop_fails(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()  # the connection's budget: 6 attempts with backoff, 60 s timeouts
    order_id, run_id = _running(hook)
    dk.inject_fault("stop_run", times=100, status=503, headers={"Retry-After": "30"})

    outcome = _in_thread(lambda: hook.stop_on_kill(KITCHEN, order_id, run_id, budget=2.0), join=30)

    assert not outcome["blocked"]
    error = outcome.get("error")
    assert isinstance(error, TransientOrdersError), outcome
    assert "HTTP 503" in str(error)
    assert "on kill" in str(error)
    assert outcome["seconds"] < 10.0  # neither Retry-After (30 s) nor the backoff was slept through
    assert 1 <= dk.count(route="stop_run") <= KILL_ATTEMPTS


def test_stop_on_kill_ends_within_its_budget_when_the_server_hangs(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()  # request timeout 60 s
    order_id, run_id = _running(hook)
    dk.inject_fault("stop_run", times=10, delay=120)

    outcome = _in_thread(lambda: hook.stop_on_kill(KITCHEN, order_id, run_id, budget=2.0), join=30)

    assert not outcome["blocked"]
    assert isinstance(outcome.get("error"), TransientOrdersError), outcome
    assert outcome["seconds"] < 10.0
    assert 1 <= dk.count(route="stop_run") <= KILL_ATTEMPTS
    assert _run_status(dk, order_id) != "STOPPED_SERVING"


def test_stop_on_kill_retries_once_quickly(datakitchen_sandbox: DataKitchenSandbox) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id, run_id = _running(hook)
    dk.inject_fault("stop_run", status=503)

    assert hook.stop_on_kill(KITCHEN, order_id, run_id, budget=5.0) == f"order run '{run_id}' was stopped"
    assert [r.status for r in dk.requests if r.route == "stop_run"] == [503, 200]


def test_stop_on_kill_raises_permanent_errors_at_once_and_needs_an_id(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    hook = DataKitchenHook()
    order_id, run_id = _running(hook)
    dk.inject_fault("stop_run", times=5, status=403)

    with pytest.raises(Exception, match="HTTP 403") as info:
        hook.stop_on_kill(KITCHEN, order_id, run_id, budget=5.0)
    assert type(info.value).__name__ == "NotAuthorizedError"
    assert dk.count(route="stop_run") == 1
    with pytest.raises(RequestRejectedError, match="Nothing to stop"):
        hook.stop_on_kill(KITCHEN, None, None)


def test_astop_on_kill_logs_in_even_while_another_trigger_holds_the_loop_login_lock(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    order_id, run_id = _running(DataKitchenHook())
    TOKENS.clear()
    hook = DataKitchenHook()

    async def scenario() -> tuple[str, float]:
        config = await hook._aget_config()
        async with TOKENS.async_login_lock(config.key):  # another trigger's login, stuck
            started = time.monotonic()
            stopped = await hook.astop_on_kill(KITCHEN, order_id, run_id, budget=5.0)
            return stopped, time.monotonic() - started

    stopped, seconds = run_async(scenario)

    assert stopped == f"order run '{run_id}' was stopped"
    assert seconds < 5.0
    assert wait_for(lambda: _run_status(dk, order_id) == "STOPPED_SERVING")


def test_astop_on_kill_ends_within_its_budget_when_the_server_hangs(
    datakitchen_sandbox: DataKitchenSandbox,
) -> None:
    dk = datakitchen_sandbox
    order_id, run_id = _running(DataKitchenHook())
    dk.inject_fault("stop_run", times=10, delay=120)

    async def scenario() -> tuple[BaseException | None, float]:
        started = time.monotonic()
        try:
            await asyncio.wait_for(DataKitchenHook().astop_on_kill(KITCHEN, order_id, run_id, budget=2.0), 30)
        except TransientOrdersError as exc:
            return exc, time.monotonic() - started
        return None, time.monotonic() - started

    error, seconds = run_async(scenario)

    assert isinstance(error, TransientOrdersError)
    assert seconds < 10.0
    assert 1 <= dk.count(route="stop_run") <= KILL_ATTEMPTS
