"""The secret scan is real: it sees the hooks' log lines and it recognises each kind of secret.

Every test of this directory is scanned after it ran (``conftest.py``): pytest's caplog at DEBUG, the
stdout/stderr file descriptors (which also carry ``dag.test()``'s task logs), exception texts the tests
hand in, and log files under ``AIRFLOW_HOME/logs``. These tests make sure that scan could fail.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from reliability_support import DK_PASSWORD, EZ_TOKEN, KITCHEN, RECIPE, SecretScanner


def test_scanner_recognises_each_secret_kind(datakitchen_sandbox: Any, secret_scanner: SecretScanner) -> None:
    jwt = datakitchen_sandbox.issue_token()
    samples = {
        "jwt": f"Authorization: Bearer {jwt}",
        "password": f"password={DK_PASSWORD}",
        "token": f"Authorization: {EZ_TOKEN}",
    }
    for kind, text in samples.items():
        assert secret_scanner.findings([(kind, text)]), f"the scanner misses a {kind}: {text!r}"
    assert not secret_scanner.findings([("masked", "Authorization: Bearer ***, password=***")])


def test_scan_sees_the_hook_logs_of_a_login_and_a_failed_call(
    datakitchen_sandbox: Any,
    ezcater_sandbox: Any,
    caplog: pytest.LogCaptureFixture,
    secret_scan: SecretScanner,
) -> None:
    """A login, a token refresh after expiry and an auth failure, with DEBUG logging everywhere."""
    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
    from airflow_provider_orders.hooks.ezcater import EzCaterHook

    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG  # set by the scan fixture
    hook = DataKitchenHook()
    order_id = hook.create_order(KITCHEN, RECIPE, "success", parameters={"k": "v"})["order_id"]
    datakitchen_sandbox.expire_tokens()
    hook.get_order_runs(KITCHEN, order_id)
    ezcater_sandbox.inject_fault("order", status=401, body={"errors": [{"message": "Unauthorized"}]})
    from airflow_provider_orders.exceptions import OrdersProviderError

    with pytest.raises(OrdersProviderError) as info:
        EzCaterHook().get_order("some-order")
    secret_scan.add("exception text", str(info.value))
    captured = caplog.text + secret_scan.read_captured()
    # the scan must actually see the hooks' log output, else "no secret found" would prove nothing
    assert "Logged in to DataKitchen" in captured
    assert datakitchen_sandbox.count(route="login") == 2
