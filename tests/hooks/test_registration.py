"""The provider as Airflow sees it: CLI listings, connection form metadata, hooks built from connections."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_orders import __version__
from airflow_provider_orders.hooks.datakitchen import DataKitchenHook
from airflow_provider_orders.hooks.ezcater import EzCaterHook
from airflow_provider_orders.version_compat import AIRFLOW_V_3_2_PLUS


@pytest.fixture(scope="module")
def providers_cli(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``airflow providers list|hooks|links -o json`` run in parallel with a throw-away AIRFLOW_HOME."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_HOME"] = str(home)
    airflow = str(Path(sys.executable).with_name("airflow"))
    procs = {
        name: subprocess.Popen(
            [airflow, "providers", name, "-o", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("list", "hooks", "links")
    }
    results: dict[str, Any] = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"airflow providers {name} failed: {err[-2000:]}"
        # skip what Airflow prints before the JSON (warnings; on 3.0 also its log lines, "[<time>] ...")
        start = re.search(r"^\[\s*(\{|\])", out, re.MULTILINE)
        assert start is not None, f"airflow providers {name} printed no JSON list: {out[-2000:]}"
        results[name] = json.loads(out[start.start() :])
    return results


def test_airflow_providers_list_shows_the_provider(providers_cli: dict[str, Any]) -> None:
    (ours,) = [p for p in providers_cli["list"] if p["package_name"] == "airflow-provider-orders"]
    assert ours["version"] == __version__
    assert "DataKitchen" in ours["description"]


def test_airflow_providers_hooks_shows_both_connection_types(providers_cli: dict[str, Any]) -> None:
    hooks = {h["connection_type"]: h for h in providers_cli["hooks"]}
    assert hooks["datakitchen"]["class"] == "airflow_provider_orders.hooks.datakitchen.DataKitchenHook"
    assert hooks["datakitchen"]["conn_id_attribute_name"] == "datakitchen_conn_id"
    assert hooks["datakitchen"]["hook_name"] == "DataKitchen"
    assert hooks["ezcater"]["class"] == "airflow_provider_orders.hooks.ezcater.EzCaterHook"
    assert hooks["ezcater"]["conn_id_attribute_name"] == "ezcater_conn_id"
    assert hooks["ezcater"]["hook_name"] == "ezCater"
    assert hooks["ezcater"]["package_name"] == "airflow-provider-orders"


def test_airflow_providers_links_shows_the_order_run_link(providers_cli: dict[str, Any]) -> None:
    links = [link["extra_link_class_name"] for link in providers_cli["links"]]
    assert "airflow_provider_orders.links.DataKitchenOrderRunLink" in links


def test_hook_class_attributes() -> None:
    assert (DataKitchenHook.conn_type, DataKitchenHook.default_conn_name, DataKitchenHook.conn_name_attr) == (
        "datakitchen",
        "datakitchen_default",
        "datakitchen_conn_id",
    )
    assert (EzCaterHook.conn_type, EzCaterHook.default_conn_name, EzCaterHook.conn_name_attr) == (
        "ezcater",
        "ezcater_default",
        "ezcater_conn_id",
    )
    assert DataKitchenHook().datakitchen_conn_id == "datakitchen_default"
    assert EzCaterHook().ezcater_conn_id == "ezcater_default"


@pytest.mark.skipif(not AIRFLOW_V_3_2_PLUS, reason="provider-info conn-fields are read from Airflow 3.2")
def test_connection_form_metadata_is_read_from_provider_info() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviours = manager.field_behaviours
    assert behaviours["datakitchen"]["relabeling"]["host"] == "API base URL"
    assert "port" in behaviours["datakitchen"]["hidden_fields"]
    assert behaviours["ezcater"]["relabeling"]["password"] == "API token"
    assert "login" in behaviours["ezcater"]["hidden_fields"]
    widgets = manager.connection_form_widgets
    for key in (
        "timeout",
        "verify_ssl",
        "max_retries",
        "retry_delay",
        "web_app_url",
        "customer",
        "link_style",
    ):
        assert f"extra__datakitchen__{key}" in widgets, key
    for key in ("timeout", "verify_ssl", "max_retries", "retry_delay", "client_name", "client_version"):
        assert f"extra__ezcater__{key}" in widgets, key


def test_hooks_are_built_from_airflow_conn_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import Connection

    monkeypatch.setenv(
        "AIRFLOW_CONN_DK_FROM_ENV",
        json.dumps(
            {"conn_type": "datakitchen", "host": "http://127.0.0.1:8123", "login": "u", "password": "p"}
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_EZ_FROM_ENV",
        json.dumps(
            {"conn_type": "ezcater", "host": "http://127.0.0.1:8124/graphql", "password": "t0ken-abc"}
        ),
    )

    dk_hook = Connection.get("dk_from_env").get_hook()
    ez_hook = Connection.get("ez_from_env").get_hook()

    assert isinstance(dk_hook, DataKitchenHook)
    assert dk_hook.datakitchen_conn_id == "dk_from_env"
    assert dk_hook.base_url == "http://127.0.0.1:8123"
    assert isinstance(ez_hook, EzCaterHook)
    assert ez_hook.ezcater_conn_id == "ez_from_env"
    assert ez_hook.url == "http://127.0.0.1:8124/graphql"


def test_connection_test_button_path_uses_the_hook(datakitchen_sandbox: Any, ezcater_sandbox: Any) -> None:
    """What the UI's "Test" button runs in the API server: the core Connection's test_connection() →
    hook.test_connection() (the Task SDK's Connection has no test_connection before 3.3)."""
    from airflow.models.connection import Connection

    ok, message = Connection.get_connection_from_secrets("datakitchen_default").test_connection()
    assert ok, message
    ok, message = Connection.get_connection_from_secrets("ezcater_default").test_connection()
    assert ok, message
