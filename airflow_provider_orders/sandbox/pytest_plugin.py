"""pytest plugin: sandbox fixtures for users testing their own DAGs (entry point ``pytest11``).

Fixtures (function-scoped):

* ``datakitchen_sandbox``: a started :class:`~airflow_provider_orders.sandbox.DataKitchenSandbox`;
  for the test's duration ``AIRFLOW_CONN_DATAKITCHEN_DEFAULT`` points at it (extras ``customer``,
  ``web_app_url`` and ``retry_delay: 0.01`` so hook backoff is fast).
* ``ezcater_sandbox``: a started :class:`~airflow_provider_orders.sandbox.EzCaterSandbox`;
  ``AIRFLOW_CONN_EZCATER_DEFAULT`` points at it (extras ``retry_delay: 0.01``).

Constructor options come from markers of the same name, e.g.
``@pytest.mark.datakitchen_sandbox(token_ttl=2, id_key="serving_hid")`` or
``@pytest.mark.ezcater_sandbox(error_code_style="seed")``; the extra keyword ``conn_extra={...}`` is
merged into the connection's extras.

Importing this module is cheap: it imports neither Airflow nor the sandboxes (they load when a fixture
is first used), because pytest loads it in every session of an environment where the provider is
installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_orders.sandbox.datakitchen.http import DataKitchenSandbox
    from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox

DATAKITCHEN_ENV = "AIRFLOW_CONN_DATAKITCHEN_DEFAULT"
EZCATER_ENV = "AIRFLOW_CONN_EZCATER_DEFAULT"
#: Extras every fixture connection carries: hook retries back off in milliseconds, not seconds.
FAST_RETRY_EXTRA: dict[str, Any] = {"retry_delay": 0.01}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "datakitchen_sandbox(**options): DataKitchenSandbox options for the datakitchen_sandbox fixture "
        "(plus conn_extra={...} for the connection's extras)",
    )
    config.addinivalue_line(
        "markers",
        "ezcater_sandbox(**options): EzCaterSandbox options for the ezcater_sandbox fixture "
        "(plus conn_extra={...} for the connection's extras)",
    )


def _options(request: pytest.FixtureRequest, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(name))):  # closest marker wins
        options.update(marker.kwargs)
    conn_extra = {**FAST_RETRY_EXTRA, **(options.pop("conn_extra", None) or {})}
    return options, conn_extra


@pytest.fixture
def datakitchen_sandbox(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DataKitchenSandbox]:
    """A running DataKitchen sandbox; ``AIRFLOW_CONN_DATAKITCHEN_DEFAULT`` points at it."""
    from airflow_provider_orders.sandbox.datakitchen.http import DataKitchenSandbox

    options, conn_extra = _options(request, "datakitchen_sandbox")
    with DataKitchenSandbox(**options) as sandbox:
        monkeypatch.setenv(DATAKITCHEN_ENV, sandbox.connection_json(conn_extra))
        yield sandbox


@pytest.fixture
def ezcater_sandbox(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EzCaterSandbox]:
    """A running ezCater sandbox; ``AIRFLOW_CONN_EZCATER_DEFAULT`` points at it."""
    from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox

    options, conn_extra = _options(request, "ezcater_sandbox")
    with EzCaterSandbox(**options) as sandbox:
        monkeypatch.setenv(EZCATER_ENV, sandbox.connection_json(conn_extra))
        yield sandbox
