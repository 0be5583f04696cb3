"""What a user gets from ``pip install airflow-provider-orders``: one version everywhere, the package data
the sandboxes need, every entry point. ``make test-compat`` runs this against the installed wheel
(ORDERS_TEST_INSTALLED_WHEEL=1), where a file missing from the wheel fails it."""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

import airflow_provider_orders
from airflow_provider_orders import __version__, get_provider_info

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = os.environ.get("ORDERS_TEST_INSTALLED_WHEEL") == "1"


def test_one_version_everywhere() -> None:
    assert distribution("airflow-provider-orders").version == __version__
    assert get_provider_info()["versions"][0] == __version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {__version__}" in changelog, "CHANGELOG.md has no section for the package's version"


@pytest.mark.skipif(not INSTALLED, reason="the installed-wheel check (make test-compat)")
def test_the_package_comes_from_the_installed_wheel_not_the_checkout() -> None:
    package_dir = Path(airflow_provider_orders.__file__).resolve().parent
    assert package_dir != ROOT / "airflow_provider_orders", f"imported from the checkout: {package_dir}"
    assert "site-packages" in package_dir.parts
    direct_url = json.loads(distribution("airflow-provider-orders").read_text("direct_url.json") or "{}")
    assert direct_url.get("dir_info", {}).get("editable") is not True, (
        "installed editable, not from the wheel"
    )


def test_the_wheel_carries_the_files_the_sandboxes_and_type_checkers_read() -> None:
    package_dir = Path(airflow_provider_orders.__file__).resolve().parent
    assert (package_dir / "py.typed").is_file()
    schemas = list((package_dir / "sandbox").rglob("*.graphql"))
    assert schemas, "the ezCater sandbox's GraphQL schema is missing"
    from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox

    with EzCaterSandbox() as sandbox:  # the sandbox loads its schema at start
        assert sandbox.url.startswith("http://127.0.0.1:")


def test_every_entry_point_loads() -> None:
    groups = {
        "apache_airflow_provider": "airflow_provider_orders",
        "airflow.plugins": "airflow_provider_orders.webhooks.plugin",
        "pytest11": "airflow_provider_orders.sandbox.pytest_plugin",
        "console_scripts": None,
    }
    for group, module in groups.items():
        mine = [e for e in entry_points(group=group) if e.dist and e.dist.name == "airflow-provider-orders"]
        assert mine, f"no {group} entry point"
        for ep in mine:
            if module is not None:
                assert ep.module == module
            assert ep.load() is not None
    scripts = {
        e.name
        for e in entry_points(group="console_scripts")
        if e.dist and e.dist.name == "airflow-provider-orders"
    }
    assert scripts == {"orders-sandbox", "orders-ezcater"}
    assert all((Path(sys.executable).parent / name).exists() for name in scripts)
