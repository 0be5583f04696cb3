"""The pytest plugin: fixtures, markers, connections Airflow can read, and a cheap import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox


def test_datakitchen_fixture_sets_the_connection(datakitchen_sandbox: DataKitchenSandbox) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"])
    assert conn == {
        "conn_type": "datakitchen",
        "host": datakitchen_sandbox.url,
        "login": "demo@example.com",
        "password": "demo-password",
        "extra": {"customer": "demo-customer", "web_app_url": datakitchen_sandbox.url, "retry_delay": 0.01},
    }
    assert datakitchen_sandbox.running


def test_ezcater_fixture_sets_the_connection(ezcater_sandbox: EzCaterSandbox) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_EZCATER_DEFAULT"])
    assert conn == {
        "conn_type": "ezcater",
        "host": ezcater_sandbox.graphql_url,
        "password": "sandbox-token",
        "extra": {"retry_delay": 0.01},
    }


@pytest.mark.datakitchen_sandbox(id_key="serving_hid", token_ttl=60, conn_extra={"link_style": "dk"})
@pytest.mark.ezcater_sandbox(token="other-token", conn_extra={"client_name": "my-dags"})
def test_markers_pass_options(
    datakitchen_sandbox: DataKitchenSandbox, ezcater_sandbox: EzCaterSandbox
) -> None:
    assert datakitchen_sandbox.id_key == "serving_hid"
    assert datakitchen_sandbox.model.token_ttl == 60
    dk_extra = json.loads(os.environ["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"])["extra"]
    assert dk_extra["link_style"] == "dk"
    assert dk_extra["retry_delay"] == 0.01
    ez_conn = json.loads(os.environ["AIRFLOW_CONN_EZCATER_DEFAULT"])
    assert ez_conn["password"] == "other-token"
    assert ez_conn["extra"] == {"retry_delay": 0.01, "client_name": "my-dags"}


#: What neither the plugin nor the sandboxes may import: Airflow, graphql-core, gql, requests.
HEAVY = ("airflow", "graphql", "gql", "requests")

# What importing the pytest plugin alone loads (pytest imports it in every session of an environment
# where the provider is installed, whether or not a test uses a fixture).
_PLUGIN_IMPORT_PROBE = """
import json, sys
before = set(sys.modules)
import airflow_provider_orders.sandbox.pytest_plugin
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _modules_loaded_by_the_plugin_import() -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PLUGIN_IMPORT_PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    assert "airflow_provider_orders.sandbox.pytest_plugin" in loaded  # the probe did import it
    return loaded


def test_plugin_and_sandbox_imports_stay_cheap() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_orders.sandbox.pytest_plugin\n"
        "from airflow_provider_orders.sandbox import DataKitchenSandbox\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_plugin_import_loads_neither_heavy_dependencies_nor_the_ezcater_sandbox() -> None:
    loaded = _modules_loaded_by_the_plugin_import()

    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
    assert [m for m in loaded if m.startswith("airflow_provider_orders.sandbox.ezcater")] == []


def test_plugin_import_loads_no_sandbox_until_a_fixture_is_used() -> None:
    loaded = _modules_loaded_by_the_plugin_import()

    sandbox_modules = [
        m
        for m in loaded
        if m.startswith("airflow_provider_orders.sandbox.")
        and m != "airflow_provider_orders.sandbox.pytest_plugin"
    ]
    assert sandbox_modules == []


USER_TESTS = """
import json
import os

import pytest
import requests


def test_airflow_reads_the_datakitchen_connection(datakitchen_sandbox):
    from airflow.providers.common.compat.sdk import BaseHook

    conn = BaseHook.get_connection("datakitchen_default")
    assert conn.host == datakitchen_sandbox.url
    token = requests.post(f"{conn.host}/v2/login", data={"username": conn.login, "password": conn.password}).text
    assert requests.get(f"{conn.host}/v2/userinfo", headers={"Authorization": f"Bearer {token}"}).ok
    assert conn.extra_dejson["retry_delay"] == 0.01


@pytest.mark.ezcater_sandbox(error_code_style="seed")
def test_airflow_reads_the_ezcater_connection(ezcater_sandbox):
    from airflow.providers.common.compat.sdk import BaseHook

    conn = BaseHook.get_connection("ezcater_default")
    assert (conn.host, conn.password) == (ezcater_sandbox.graphql_url, "sandbox-token")
    assert ezcater_sandbox.error_code_style == "seed"


def test_the_connections_are_gone_after_the_fixtures():
    assert "AIRFLOW_CONN_DATAKITCHEN_DEFAULT" not in os.environ
    assert "AIRFLOW_CONN_EZCATER_DEFAULT" not in os.environ
"""


def test_a_users_own_test_file_gets_the_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_my_dags.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "test_my_dags.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
