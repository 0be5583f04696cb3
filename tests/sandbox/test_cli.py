"""``python -m airflow_provider_orders.sandbox`` as a subprocess: URLs, exports, admin from outside, stop."""

from __future__ import annotations

import json
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from .conftest import ACCEPT_ORDER

if TYPE_CHECKING:
    from collections.abc import Iterator

READY_LINE = "Press Ctrl-C to stop."


@dataclass
class Running:
    process: subprocess.Popen[str]
    lines: list[str]
    rest: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def line_starting(self, prefix: str) -> str:
        return next(line for line in self.lines if line.startswith(prefix))

    @property
    def exports(self) -> dict[str, dict[str, Any]]:
        found = {}
        for line in self.lines:
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                (unquoted,) = shlex.split(value)
                found[name] = json.loads(unquoted)
        return found

    def remaining_output(self, timeout: float = 10) -> str:
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.rest.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            out.append(line)
        return "".join(out)


def start(*args: str, timeout: float = 30) -> Running:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_orders.sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            pytest.fail(f"the CLI did not get ready within {timeout} s; output: {''.join(seen)}")
        if line is None:
            pytest.fail(f"the CLI exited with {process.wait()} before getting ready; output: {''.join(seen)}")
        seen.append(line)
        if line.strip() == READY_LINE:
            return Running(process, [s.rstrip("\n") for s in seen], lines)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Running]:
    running = start(
        "--env-file", str(tmp_path / "sandbox.env"), "--planned-seconds", "0", "--active-seconds", "0"
    )
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def test_cli_prints_urls_and_exports_that_work(cli: Running, tmp_path: Path) -> None:
    dk_url = cli.line_starting("DataKitchen sandbox:").split()[2]
    ez_url = cli.line_starting("ezCater sandbox:").split()[2]
    assert dk_url.startswith("http://127.0.0.1:")
    assert ez_url.startswith("http://127.0.0.1:")
    assert ez_url.endswith("/graphql")

    exports = cli.exports
    assert set(exports) == {"AIRFLOW_CONN_DATAKITCHEN_DEFAULT", "AIRFLOW_CONN_EZCATER_DEFAULT"}
    dk_conn, ez_conn = exports["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"], exports["AIRFLOW_CONN_EZCATER_DEFAULT"]
    assert dk_conn["conn_type"] == "datakitchen"
    assert dk_conn["host"] == dk_url
    assert dk_conn["extra"] == {"customer": "demo-customer", "web_app_url": dk_url}
    assert (ez_conn["conn_type"], ez_conn["host"], ez_conn["password"]) == (
        "ezcater",
        ez_url,
        "sandbox-token",
    )
    export_lines = [line for line in cli.lines if line.startswith("export ")]
    assert (tmp_path / "sandbox.env").read_text().splitlines() == export_lines

    # DataKitchen with the exported credentials; --planned/--active-seconds 0: the run is done at once
    token = requests.post(
        f"{dk_conn['host']}/v2/login",
        data={"username": dk_conn["login"], "password": dk_conn["password"]},
        timeout=5,
    ).text
    headers = {"Authorization": f"Bearer {token}"}
    created = requests.put(
        f"{dk_url}/v2/order/create/demo-kitchen/demo-recipe/success",
        json={"parameters": {}},
        headers=headers,
        timeout=5,
    )
    assert created.status_code == 200
    order_id = created.json()["order_id"]
    servings = requests.get(
        f"{dk_url}/v2/order/servings/demo-kitchen/{order_id}", headers=headers, timeout=5
    ).json()
    assert servings["servings"][0]["status"] == "COMPLETED_SERVING"

    # ezCater: a printed demo order can be accepted with the exported token
    demo = cli.line_starting("  11111111-").split()[0]
    body = {"query": ACCEPT_ORDER, "variables": {"orderId": demo}, "operationName": "AcceptOrder"}
    accepted = requests.post(
        ez_url, json=body, headers={"Authorization": ez_conn["password"]}, timeout=5
    ).json()
    assert accepted["data"]["acceptOrder"]["order"]["lifecycle"]["orderIsCurrently"] == "accepted"


def test_cli_sandboxes_are_controlled_from_another_process(cli: Running) -> None:
    dk_url = cli.line_starting("DataKitchen sandbox:").split()[2]
    ez_url = cli.line_starting("ezCater sandbox:").split()[2]
    ez_root = ez_url.removesuffix("/graphql")
    seeded = requests.post(f"{ez_root}/_sandbox/orders", json={"state": "submitted"}, timeout=5).json()
    fault = {"route": "acceptOrder", "status": 429, "headers": {"Retry-After": "1"}}
    assert requests.post(f"{ez_root}/_sandbox/faults", json=fault, timeout=5).status_code == 201
    body = {"query": ACCEPT_ORDER, "variables": {"orderId": seeded["uuid"]}}
    answer = requests.post(ez_url, json=body, headers={"Authorization": "sandbox-token"}, timeout=5)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "1")
    log = requests.get(f"{ez_root}/_sandbox/requests", timeout=5).json()
    assert [(r["route"], r["status"]) for r in log["requests"]] == [("acceptOrder", 429)]
    states = {
        o["uuid"]: o["state"] for o in requests.get(f"{ez_root}/_sandbox/orders", timeout=5).json()["orders"]
    }
    assert states[seeded["uuid"]] == "submitted"
    assert len(states) == 6  # five demo orders and the one seeded here

    assert requests.post(f"{dk_url}/_sandbox/expire-tokens", timeout=5).json() == {"expired": 0}
    assert requests.get(f"{dk_url}/_sandbox/orders", timeout=5).json() == {"orders": []}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_stops_cleanly_on_signal(cli: Running, signum: signal.Signals) -> None:
    dk_url = cli.line_starting("DataKitchen sandbox:").split()[2]
    assert requests.get(f"{dk_url}/_sandbox/health", timeout=5).status_code == 200
    cli.process.send_signal(signum)
    assert cli.process.wait(timeout=15) == 0
    assert "Sandboxes stopped." in cli.remaining_output()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{dk_url}/_sandbox/health", timeout=2)


def test_cli_options_reach_the_sandboxes() -> None:
    running = start(
        "--dk-username", "ops@example.com", "--dk-password", "pw-1234", "--ez-token", "tok-5678",
        "--id-key", "serving_hid", "--token-ttl", "60", "--no-demo-orders",
    )  # fmt: skip
    try:
        exports = running.exports
        dk_conn, ez_conn = (
            exports["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"],
            exports["AIRFLOW_CONN_EZCATER_DEFAULT"],
        )
        assert (dk_conn["login"], dk_conn["password"], ez_conn["password"]) == (
            "ops@example.com",
            "pw-1234",
            "tok-5678",
        )
        assert not any(line.startswith("Demo ezCater orders") for line in running.lines)
        token = requests.post(
            f"{dk_conn['host']}/v2/login",
            data={"username": "ops@example.com", "password": "pw-1234"},
            timeout=5,
        ).text
        payload = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))
        assert payload["exp"] - payload["iat"] in (60, 61)
        created = requests.put(
            f"{dk_conn['host']}/v2/order/create/demo-kitchen/demo-recipe/success",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json()
        assert "serving_hid" in created
        ez_root = ez_conn["host"].removesuffix("/graphql")
        assert requests.get(f"{ez_root}/_sandbox/orders", timeout=5).json() == {"orders": []}
    finally:
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=15) == 0


def test_cli_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "airflow_provider_orders.sandbox", "--dk-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "cannot start the sandboxes" in result.stderr


def test_console_script_help() -> None:
    script = Path(sys.executable).with_name("orders-sandbox")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for flag in (
        "--dk-port",
        "--ez-port",
        "--token-ttl",
        "--planned-seconds",
        "--active-seconds",
        "--ez-token",
    ):
        assert flag in result.stdout
