"""A real Airflow that receives ezCater notifications: shared by the notification tests and benchmark.

``notification_stack()`` starts, in this order:

* two ezCater sandboxes: ``ezcater_default`` (the example DAGs' connection) and ``ezcater_burst`` (the
  burst test's own API user, so the example DAGs never see those orders), each delivering with short
  retry back-offs;
* a throw-away PostgreSQL cluster (the receiver's guarantees need row locks; see webhooks/_store.py);
* the subscriptions, made with the ``orders-ezcater subscribe`` command as a user would, the webhook
  secret written to a 0600 file and stored as the connection's ``webhook_secret`` extra;
* Airflow (api-server with 2 workers, scheduler, dag-processor, triggerer; LocalExecutor) on a dags
  folder holding the two notification example DAGs and the burst DAG.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tests" / "lifecycle"))

from e2e_harness import (  # noqa: E402
    DAG_PARSED_TIMEOUT,
    HEALTH_TIMEOUT,
    AirflowCluster,
    Sandboxes,
    airflow_env,
    free_port,
    wait_until,
)
from local_postgres import local_postgres  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

EXAMPLES = ("example_accept_notified_orders.py", "example_record_cancelled_orders.py")
TEST_DAGS = ("notified_burst.py",)
DAG_IDS = ("example_accept_notified_orders", "example_record_cancelled_orders", "notified_burst")
DEFAULT_EVENTS = "submitted,rejected,cancelled"


@dataclass
class NotificationStack:
    cluster: AirflowCluster
    ez: EzCaterSandbox
    burst: EzCaterSandbox
    dags_folder: Path
    secrets: dict[str, str]
    subscribe_output: str
    #: The DataKitchen sandbox behind ``datakitchen_default`` (the DataKitchen event tests use it).
    dk: DataKitchenSandbox | None = None

    def webhook_url(self, conn_id: str) -> str:
        return f"{self.cluster.base_url}/ezcater/webhooks/{conn_id}"

    def deploy_dag(self, source: Path, name: str) -> None:
        shutil.copy(source, self.dags_folder / name)

    def asset_events(self, conn_id: str, key: str) -> list[dict[str, Any]]:
        return self.cluster.asset_events(f"ezcater://{conn_id}/orders/{key}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.cluster.api_all(f"dags/{dag_id}/dagRuns", "dag_runs")


def subscribe(
    sandbox: EzCaterSandbox, conn_id: str, webhook_url: str, events: str, folder: Path
) -> tuple[str, str]:
    """``orders-ezcater subscribe`` against the sandbox; returns (secret, the command's output)."""
    from airflow_provider_orders.sandbox.ezcater.models import DEMO_CATERER_UUID

    secret_file = folder / f"{conn_id}.secret"
    env = {
        k: v for k, v in __import__("os").environ.items() if not k.startswith(("AIRFLOW_CONN_", "PYTEST_"))
    }
    env[f"AIRFLOW_CONN_{conn_id.upper()}"] = sandbox.connection_json()
    command = [
        str(Path(sysconfig.get_path("scripts")) / "orders-ezcater"),
        "subscribe",
        "--conn-id",
        conn_id,
        "--webhook-url",
        webhook_url,
        "--caterer",
        DEMO_CATERER_UUID,
        "--events",
        events,
        "--secret-file",
        str(secret_file),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"orders-ezcater subscribe failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return secret_file.read_text().strip(), proc.stdout + proc.stderr


@contextmanager
def notification_stack(
    artifacts: Path, *, extra_env: dict[str, str] | None = None
) -> Iterator[NotificationStack]:
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

    if artifacts.exists():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True)
    delivery = {"delivery_retry_base": 0.5, "delivery_retry_max_delay": 3.0, "delivery_max_attempts": 60}
    with ExitStack() as stack:
        dk = stack.enter_context(DataKitchenSandbox(port=0))
        ez = stack.enter_context(EzCaterSandbox(port=0, demo_orders=False, **delivery))
        burst = stack.enter_context(EzCaterSandbox(port=0, demo_orders=False, **delivery))
        home = Path(tempfile.mkdtemp(prefix="orders-notifications-airflow-home-"))
        stack.callback(shutil.rmtree, home, True)
        dags = home / "dags"
        dags.mkdir()
        for name in EXAMPLES:
            shutil.copy(REPO / "example_dags" / name, dags / name)
        for name in TEST_DAGS:
            shutil.copy(HERE / "dags" / name, dags / name)

        port = free_port()
        base = f"http://127.0.0.1:{port}/ezcater/webhooks"
        secret, out = subscribe(ez, "ezcater_default", f"{base}/ezcater_default", DEFAULT_EVENTS, home)
        burst_secret, _ = subscribe(burst, "ezcater_burst", f"{base}/ezcater_burst", "submitted", home)
        fast = {"retry_delay": 0.1, "max_retries": 3}
        env_extra = {
            "AIRFLOW_CONN_EZCATER_BURST": burst.connection_json({**fast, "webhook_secret": burst_secret}),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": stack.enter_context(
                local_postgres(free_port(), artifacts / "postgres")
            ),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Several API-server workers: the delivery-id guard must hold across processes.
            "AIRFLOW__API__WORKERS": "2",
            # A DAG file added during the test is found within seconds.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__PARALLELISM": "16",
            **(extra_env or {}),
        }
        env = airflow_env(home, port, Sandboxes(dk, ez), dags_folder=dags, extra_env=env_extra)
        env["AIRFLOW_CONN_EZCATER_DEFAULT"] = ez.connection_json({**fast, "webhook_secret": secret})
        cluster = AirflowCluster(home=home, port=port, env=env, artifacts=artifacts)
        try:
            cluster.migrate()
            cluster.start()
            wait_until(f"Airflow healthy on {cluster.base_url}", cluster.healthy, HEALTH_TIMEOUT)
            wait_until(
                "the dag-processor to parse the notification DAGs",
                lambda: all(cluster.dag(d) for d in DAG_IDS),
                DAG_PARSED_TIMEOUT,
                describe=lambda: f"Import errors: {cluster.import_errors()}",
            )
            yield NotificationStack(
                cluster, ez, burst, dags, {"ezcater_default": secret, "ezcater_burst": burst_secret}, out, dk
            )
        finally:
            leftovers = cluster.stop()
            with contextlib.suppress(OSError):
                shutil.copytree(home / "logs", artifacts / "airflow-logs", dirs_exist_ok=True)
            (artifacts / "deliveries.json").write_text(
                json.dumps(
                    {"ezcater_default": ez.deliveries(), "ezcater_burst": burst.deliveries()}, default=str
                )
            )
            if leftovers:
                raise RuntimeError(f"Airflow processes survived SIGKILL: {leftovers}")
