"""A retried call warns about nothing: tenacity 9.2 deprecated ``wait_exponential_jitter(initial=...)``, and
that warning went to stdout with every retry (task logs, and the JSON output of ``orders-ezcater``)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from airflow_provider_orders.hooks.ezcater import EzCaterHook

if TYPE_CHECKING:
    import pytest


def test_a_retried_read_raises_no_deprecation_warning(
    ezcater_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_EZ_RETRY_WARN", ezcater_sandbox.connection_json({"retry_delay": 0.01, "max_retries": 3})
    )
    order_id = ezcater_sandbox.add_order()
    ezcater_sandbox.inject_fault("order", status=502)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert EzCaterHook("ez_retry_warn").get_order(order_id)["uuid"] == order_id
    assert ezcater_sandbox.count("order") == 2  # the 502, then the retry
    assert [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning)] == []
