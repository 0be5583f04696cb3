"""The ``make demo`` and ``make airflow`` driver: both sandboxes plus a real Airflow, on this machine.

A development script of this checkout, not part of the installed package (the wheel does not ship it):
it reads the checkout's ``example_dags/`` and keeps its Airflow home in the checkout's ``.airflow-home/``,
both found relative to this file (``dev/..``).

``python dev/demo.py``
    starts the DataKitchen and ezCater sandboxes on loopback, seeds the demo catering orders, prepares a
    project-local ``AIRFLOW_HOME`` (``.airflow-home/``, SQLite), runs ``airflow db migrate`` (once per
    Airflow version) and ``airflow dags test example_order_pipeline``, prints what happened according to
    the sandboxes, stops them and exits non-zero if anything failed.

``python dev/demo.py --standalone``
    the same sandboxes, then ``airflow standalone`` (UI, scheduler, dag-processor, triggerer) with the
    example DAGs and the sandbox connections, until Ctrl-C. The ezCater sandbox notifies the Airflow
    API server of its demo caterer's ``submitted`` and ``cancelled`` orders (a subscriber whose secret
    is the ``webhook_secret`` extra of ``ezcater_default``), and the two notification DAGs are unpaused:
    an order placed in the sandbox starts a run of ``example_accept_notified_orders``.

``python dev/demo.py --notifications``
    the notification path end to end, without a keyboard: the ezCater sandbox with that subscriber,
    ``airflow standalone`` on a free port in its own home (``.airflow-home/notifications-demo/``,
    SQLite), one 25-person order placed; prints each step as it happens (delivery answered 202, asset
    event, DAG run, tasks, order accepted), stops everything and exits 0, or 1 with what was seen if the
    order is not accepted (and its run done) within ``ACCEPT_TIMEOUT`` seconds.

Like the sandbox package it imports, this script never imports Airflow: Airflow runs in subprocesses
(``python -m airflow ...`` with this interpreter's ``bin`` first on ``PATH``), so it runs before Airflow
is set up.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox
from airflow_provider_orders.sandbox.datakitchen.models import DEFAULT_KITCHEN, DEFAULT_RECIPE
from airflow_provider_orders.sandbox.ezcater.models import (
    DEMO_CATERER_NAME,
    DEMO_CATERER_UUID,
    DEMO_ORDERS,
    SECOND_CATERER_UUID,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

DAG_ID = "example_order_pipeline"
DEMO_KITCHEN = DEFAULT_KITCHEN
DEMO_RECIPE = DEFAULT_RECIPE
DEMO_VARIATION = "success"
#: The sandbox's demo catering orders the pipeline accepts: one submitted, one that becomes submitted.
#: Keep in step with the default of ``ezcater_order_ids`` in ``example_dags/example_order_pipeline.py``.
PIPELINE_ORDERS = ("submitted", "becomes-submitted")
DEMO_EZCATER_ORDER_IDS: tuple[str, ...] = tuple(DEMO_ORDERS[name]["uuid"] for name in PIPELINE_ORDERS)
#: ``make demo``: seconds after seeding at which "becomes-submitted" turns submitted (the CLI waits 30).
SUBMITTED_AFTER = 3.0

_COMPLETED = "COMPLETED_SERVING"

#: The DAG that reviews and accepts notified orders, and the one that records cancellations: both are
#: scheduled on the assets the notification receiver (the API-server plugin) records events on.
NOTIFIED_DAG_ID = "example_accept_notified_orders"
CANCELLED_DAG_ID = "example_record_cancelled_orders"
NOTIFICATION_DAG_IDS = (NOTIFIED_DAG_ID, CANCELLED_DAG_ID)
NOTIFICATION_CONN_ID = "ezcater_default"
#: The demo caterer's order events the sandbox delivers to Airflow.
NOTIFICATION_EVENTS = ("submitted", "cancelled")
NOTIFIED_ASSET_URI = f"ezcater://{NOTIFICATION_CONN_ID}/orders/submitted"
SUBSCRIBER_NAME = "airflow-provider-orders demo"
#: ``--notifications``: the sandbox retries a refused delivery soon (e.g. a 503 while no DAG listens yet).
NOTIFICATIONS_DELIVERY = {
    "delivery_retry_base": 0.5,
    "delivery_retry_max_delay": 5.0,
    "delivery_max_attempts": 60,
}
#: ``--notifications``: seconds from placing the order to its being accepted and its run done.
ACCEPT_TIMEOUT = 180.0
#: Seconds for Airflow's API server to answer, and for the dag-processor to parse the example DAGs.
API_TIMEOUT = 180.0
PARSE_TIMEOUT = 180.0


def _print(*lines: str, file: TextIO | None = None) -> None:
    print("\n".join(lines), file=file or sys.stdout, flush=True)


#: The checkout this script belongs to: ``dev/..``.
PROJECT_DIR = Path(__file__).resolve().parents[1]


def find_project_dir(project: Path = PROJECT_DIR) -> Path:
    """The checkout (``dev/..``), after checking that it holds the example DAGs."""
    if not (project / "example_dags" / f"{DAG_ID}.py").is_file():
        raise SystemExit(
            f"Cannot find example_dags/{DAG_ID}.py in {project}: dev/demo.py runs from the "
            "airflow-provider-orders checkout it belongs to (`make demo`)."
        )
    return project


# --------------------------------------------------------------------------------------------------
# Sandboxes


@dataclass
class Sandboxes:
    """Both sandboxes, started on free loopback ports, with the demo catering orders seeded."""

    datakitchen: DataKitchenSandbox
    ezcater: EzCaterSandbox
    catering_order_ids: list[str] = field(default_factory=list)

    def connection_env(self) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_DATAKITCHEN_DEFAULT": self.datakitchen.connection_json(),
            "AIRFLOW_CONN_EZCATER_DEFAULT": self.ezcater.connection_json(),
        }


@contextlib.contextmanager
def running_sandboxes(*, all_demo_orders: bool, pipeline_orders: bool = True) -> Iterator[Sandboxes]:
    """Start both sandboxes (port 0) and seed the pipeline's catering orders.

    ``all_demo_orders``: also the sandbox CLI's other demo orders (for ``--standalone``: the order to
    reject, one with a pending modification...), with the CLI's own timings. ``pipeline_orders=False``
    (``--notifications``): no catering order at all, and deliveries retried within seconds.
    """
    extra: dict[str, Any] = {} if pipeline_orders else dict(NOTIFICATIONS_DELIVERY)
    with (
        DataKitchenSandbox(port=0) as dk,
        EzCaterSandbox(port=0, demo_orders=all_demo_orders, **extra) as ez,
    ):
        if not pipeline_orders:
            yield Sandboxes(dk, ez, [])
            return
        if not all_demo_orders:
            for name in PIPELINE_ORDERS:
                spec = dict(DEMO_ORDERS[name])
                if spec.get("transitions"):
                    spec["transitions"] = [(state, SUBMITTED_AFTER) for state, _ in spec["transitions"]]
                ez.add_order(**spec)
        yield Sandboxes(dk, ez, list(DEMO_EZCATER_ORDER_IDS))


# --------------------------------------------------------------------------------------------------
# Airflow in subprocesses


@dataclass
class AirflowHome:
    path: Path
    dags_folder: Path

    @property
    def db_path(self) -> Path:
        return self.path / "airflow.db"

    @property
    def demo_logs(self) -> Path:
        return self.path / "demo-logs"

    def env(self, sandboxes: Sandboxes, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of every Airflow subprocess: this home, the example DAGs, the sandboxes."""
        env = {
            key: value
            for key, value in os.environ.items()
            # An Airflow setting or connection from the caller's shell must not leak into the demo.
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and key != "AIRFLOW_HOME"
        }
        scripts = sysconfig.get_path("scripts")
        env["PATH"] = os.pathsep.join(p for p in (scripts, env.get("PATH", "")) if p)
        env.update(
            {
                "AIRFLOW_HOME": str(self.path),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(sandboxes.connection_env())
        env.update(extra or {})
        return env

    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.demo_logs.mkdir(exist_ok=True)
        # Keep the folder out of git even where the checkout's .gitignore does not list it.
        gitignore = self.path / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def _airflow_version() -> str:
    try:
        return metadata.version("apache-airflow-core")
    except metadata.PackageNotFoundError:
        try:
            return metadata.version("apache-airflow")
        except metadata.PackageNotFoundError:
            raise SystemExit(
                "Apache Airflow is not installed in this Python environment "
                f"({sys.prefix}); run `make demo`, which installs it into .venv."
            ) from None


def migrate_db(home: AirflowHome, env: dict[str, str], log: TextIO) -> bool:
    """``airflow db migrate`` unless this home's DB was already migrated by this Airflow version."""
    stamp = home.path / ".demo-migrated"
    version = _airflow_version()
    if home.db_path.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return True
    _print(f"- Creating the Airflow {version} metadata DB (SQLite, first run only) ...")
    rc, _ = _run_logged(_airflow("db", "migrate"), env, log, echo=False)
    if rc == 0:
        stamp.write_text(version + "\n")
    return rc == 0


def migrate_standalone_db(home: AirflowHome, env: dict[str, str], log_path: Path) -> bool:
    """:func:`migrate_db` with its output appended to the standalone log; on failure, say where it is."""
    with log_path.open("a") as log:
        if migrate_db(home, env, log):
            return True
    _print(f"`airflow db migrate` failed; see {log_path}", file=sys.stderr)
    return False


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
#: The last line of a traceback: ``package.module.SomeError: the message``.
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Timeout)): (?P<message>.+)$")


def progress_line(line: str) -> str | None:
    """The short progress note for a line of ``airflow dags test`` output, if it deserves one."""
    if match := _TASK_START.search(line):
        index = int(match["index"])
        return f"    task {match['task']}{f'[{index}]' if index >= 0 else ''}"
    if "[DAG TEST] running trigger in line" in line:
        return "      deferred: the trigger polls until it is done"
    if match := _EXCEPTION.match(line.rstrip()):
        return f"      failed: {match['type'].rsplit('.', 1)[-1]}: {match['message'][:500]}"
    return None


def _run_logged(cmd: Sequence[str], env: dict[str, str], log: TextIO, *, echo: bool) -> tuple[int, int]:
    """Run ``cmd`` with its output in ``log``; show progress lines (everything when ``echo``).

    Returns the exit code and the number of exceptions the output reported.
    """
    failures = 0
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    with subprocess.Popen(
        list(cmd),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            note = progress_line(line)
            failures += bool(note and note.lstrip().startswith("failed:"))
            if echo:
                note = "    " + line.rstrip()
            if note:
                _print(note)
        rc = proc.wait()
    log.write(f"[exit code {rc}]\n")
    log.flush()
    return rc, failures


def _tail(path: Path, lines: int = 30) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


# --------------------------------------------------------------------------------------------------
# Summary, read from the sandboxes' own state


@dataclass
class DemoOutcome:
    rc: int
    seconds: float
    log_path: Path
    home: AirflowHome
    orders: list[dict[str, Any]]
    catering: dict[str, str]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.problems


def _order_summaries(dk: DataKitchenSandbox) -> list[dict[str, Any]]:
    summaries = []
    for order_id, order in dk.orders.items():
        last = order.runs[-1] if order.runs else None
        summaries.append(
            {
                "order_id": order_id,
                "kitchen": order.kitchen,
                "recipe": order.recipe,
                "variation": order.variation,
                "parameters": order.parameters,
                "run_id": last.hid if last is not None else None,
                "run_status": last.status() if last is not None else None,
            }
        )
    return summaries


def outcome_problems(orders: list[dict[str, Any]], catering: dict[str, str], variation: str) -> list[str]:
    problems = []
    if len(orders) != 1:
        problems.append(f"expected exactly one DataKitchen order, the sandbox received {len(orders)}")
    elif variation == DEMO_VARIATION and orders[0]["run_status"] != _COMPLETED:
        problems.append(f"the order run ended as {orders[0]['run_status']}, not {_COMPLETED}")
    if variation == DEMO_VARIATION:
        not_accepted = [f"{uuid} ({state})" for uuid, state in catering.items() if state != "accepted"]
        if not_accepted:
            problems.append("catering orders not accepted: " + ", ".join(not_accepted))
    return problems


def print_summary(outcome: DemoOutcome, project: Path) -> None:
    def rel(path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(project))
        return str(path)

    verdict = "succeeded" if outcome.ok else "FAILED"
    _print("", f"{DAG_ID} {verdict} in {outcome.seconds:.0f} s (airflow dags test, exit code {outcome.rc})")
    if not outcome.orders:
        _print("  DataKitchen order   none was created")
    for order in outcome.orders:
        params = json.dumps(order["parameters"], sort_keys=True)
        _print(
            f"  DataKitchen order   {order['order_id']}  "
            f"({order['kitchen']} / {order['recipe']} / {order['variation']}, parameters {params})",
            f"  order run           {order['run_id'] or '-'}  {order['run_status'] or 'never started'}",
        )
    accepted = [uuid for uuid, state in outcome.catering.items() if state == "accepted"]
    _print(f"  ezCater orders      {len(accepted)} of {len(outcome.catering)} accepted")
    for uuid, state in outcome.catering.items():
        _print(f"                      {uuid}  {state}")
    for problem in outcome.problems:
        _print(f"  problem             {problem}")
    _print(
        f"  logs                {rel(outcome.log_path)} (every task's log, as `airflow dags test` printed it)"
    )
    _print(f"  Airflow home        {rel(outcome.home.path)}/ (SQLite; `make clean` removes it)")


# --------------------------------------------------------------------------------------------------
# ezCater notifications: the sandbox's subscriber, and the REST calls that follow an order through Airflow


def webhook_url(port: int, conn_id: str = NOTIFICATION_CONN_ID) -> str:
    """Where the sandbox delivers: the receiver plugin of the Airflow API server on ``port``."""
    return f"http://127.0.0.1:{port}/ezcater/webhooks/{conn_id}"


@dataclass
class Subscriber:
    """The ezCater sandbox's subscriber for this Airflow, and the connection that holds its secret."""

    id: str
    webhook_url: str
    #: ``AIRFLOW_CONN_EZCATER_DEFAULT``: the sandbox, with the ``webhook_secret`` extra
    connection_json: str

    def env(self) -> dict[str, str]:
        return {f"AIRFLOW_CONN_{NOTIFICATION_CONN_ID.upper()}": self.connection_json}


def create_subscriber(ez: EzCaterSandbox, port: int) -> Subscriber:
    """The API user's subscriber (webhook URL + a new secret), as ``orders-ezcater subscribe`` makes it.

    No subscription yet: :func:`subscribe` adds the demo caterer's events. The secret goes into the
    connection Airflow starts with, never to the screen.
    """
    made = ez.create_subscriber(SUBSCRIBER_NAME, webhook_url(port))
    return Subscriber(made["id"], made["webhookUrl"], ez.connection_json({"webhook_secret": made["secret"]}))


def subscribe(ez: EzCaterSandbox, subscriber: Subscriber) -> None:
    """Subscribe to the demo caterer's ``submitted`` and ``cancelled`` orders: from now on they notify."""
    ez.subscribe(subscriber.id, DEMO_CATERER_UUID, NOTIFICATION_EVENTS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowApi:
    """The few REST calls the demo makes (loopback; SIMPLE_AUTH_MANAGER_ALL_ADMINS: no token needed)."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base_url}/api/v2/{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(
            url,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Accept": "application/json", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
            text = response.read().decode()
        return json.loads(text) if text else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def asset_events(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """A list of asset events (``path``), read again while Airflow answers it with 500.

        Airflow answers 500 while a DAG run that one of the events created is still queued (it has no
        ``start_date`` and the response model requires one: apache/airflow#71360, every release up to
        3.3.2). The scheduler starts the run within a loop or two; a 500 lasting a minute is raised.
        """
        deadline = time.monotonic() + 60.0
        while True:
            try:
                return list(self.get(path, **params)["asset_events"])
            except urllib.error.HTTPError as exc:
                if exc.code != 500 or time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG once the dag-processor has parsed it; None until then."""
        try:
            return dict(self.get(f"dags/{dag_id}"))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def order_events(self, uri: str, order_id: str, since: str) -> list[dict[str, Any]]:
        """The asset events on ``uri`` since ``since`` (ISO time) whose extra names ``order_id``."""
        assets = self.get("assets", uri_pattern=uri, limit=10)["assets"]
        ids = [a["id"] for a in assets if a["uri"] == uri]
        if not ids:
            return []
        events = self.asset_events("assets/events", asset_id=ids[0], timestamp_gte=since, limit=100)
        return [e for e in events if (e.get("extra") or {}).get("order_id") == order_id]

    def runs(self, dag_id: str, since: str) -> list[dict[str, Any]]:
        return list(self.get(f"dags/{dag_id}/dagRuns", run_after_gte=since, limit=100)["dag_runs"])

    def run_order_ids(self, dag_id: str, run_id: str) -> list[str]:
        """The order ids of the asset events that triggered the run."""
        quoted = urllib.parse.quote(run_id, safe="")
        events = self.asset_events(f"dags/{dag_id}/dagRuns/{quoted}/upstreamAssetEvents")
        return [str((e.get("extra") or {}).get("order_id")) for e in events]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        quoted = urllib.parse.quote(run_id, safe="")
        return list(self.get(f"dags/{dag_id}/dagRuns/{quoted}/taskInstances", limit=100)["task_instances"])


def _wait(check: Any, timeout: float, interval: float = 1.0) -> Any:
    """``check()`` until it returns something truthy (returned) or ``timeout`` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            result = check()
            if result:
                return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def enable_notification_dags(api: AirflowApi, timeout: float = PARSE_TIMEOUT) -> list[str]:
    """Wait for the notification DAGs to be parsed and unpause them; the ids still missing after
    ``timeout`` (empty when both are ready)."""
    _wait(lambda: all(api.dag(d) for d in NOTIFICATION_DAG_IDS), timeout)
    missing = []
    for dag_id in NOTIFICATION_DAG_IDS:
        try:
            if api.dag(dag_id) is None:
                missing.append(dag_id)
            else:
                api.unpause(dag_id)
        except (urllib.error.URLError, OSError, ValueError):
            missing.append(dag_id)
    return missing


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).isoformat()


# --------------------------------------------------------------------------------------------------
# The three modes


def run_demo(home: AirflowHome, project: Path, variation: str, verbose: bool) -> int:
    home.prepare()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = home.demo_logs / f"{DAG_ID}-{stamp}.log"
    _print(f"make demo: {DAG_ID} against the DataKitchen and ezCater sandboxes")
    with running_sandboxes(all_demo_orders=False) as boxes, log_path.open("w") as log:
        _print(
            f"- Sandboxes up: DataKitchen {boxes.datakitchen.url}, ezCater {boxes.ezcater.url} "
            f"({len(boxes.catering_order_ids)} catering orders seeded)"
        )
        env = home.env(boxes)
        started = time.monotonic()
        if not migrate_db(home, env, log):
            _print("", f"`airflow db migrate` failed; its output ({log_path}) ends with:", file=sys.stderr)
            _print(*("    " + line for line in _tail(log_path)), file=sys.stderr)
            return 1
        conf = {
            "kitchen": DEMO_KITCHEN,
            "recipe": DEMO_RECIPE,
            "variation": variation,
            "overrides": {"run_date": dt.date.today().isoformat(), "requested_by": "make demo"},
            "ezcater_order_ids": boxes.catering_order_ids,
        }
        _print(
            f"- Running `airflow dags test {DAG_ID}` (variation {variation!r}); "
            f"output goes to {log_path.relative_to(project) if log_path.is_relative_to(project) else log_path}"
        )
        rc, failures = _run_logged(
            _airflow("dags", "test", DAG_ID, "--conf", json.dumps(conf)), env, log, echo=verbose
        )
        seconds = time.monotonic() - started
        orders = _order_summaries(boxes.datakitchen)
        catering = {uuid: boxes.ezcater.order_state(uuid) for uuid in boxes.catering_order_ids}
    outcome = DemoOutcome(
        rc=rc,
        seconds=seconds,
        log_path=log_path,
        home=home,
        orders=orders,
        catering=catering,
        problems=outcome_problems(orders, catering, variation),
    )
    if not outcome.ok and not verbose and not failures:
        _print("", f"Last lines of {log_path}:", *("    " + line for line in _tail(log_path, 15)))
    print_summary(outcome, project)
    return 0 if outcome.ok else 1


def _wait_for_api(url: str, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
                if response.status < 500:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a process we may not signal still holds the id
        return True
    return True


def _stop_process_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop ``proc`` and every process it started (its own process group), nothing else.

    SIGINT first (Airflow's graceful shutdown), then SIGTERM, then SIGKILL, each time only while some
    process of the group is left: ``airflow standalone`` may exit before its scheduler or workers do.
    """
    pgid = proc.pid  # start_new_session=True: the group id is the leader's pid
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        proc.poll()  # reap the leader if it exited, so it no longer counts as a member
        if not _group_alive(pgid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(pgid):
                return
            time.sleep(0.2)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _catch_termination() -> None:
    """Ctrl-C, and also a plain `kill`: stop Airflow and the sandboxes the same way."""
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, _interrupt)


def standalone_env(
    home: AirflowHome, boxes: Sandboxes, port: int, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of ``airflow standalone``: loopback, one port, a small LocalExecutor."""
    return home.env(
        boxes,
        {
            # Local use only: everyone who reaches the UI is an admin, no login form.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # ... so listen on loopback only.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            # Workers reach the API server here; without it a non-default port fails every task.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # A laptop-sized LocalExecutor (the default 32 worker processes is a lot for a demo).
            "AIRFLOW__CORE__PARALLELISM": "8",
            **(extra or {}),
        },
    )


def _start_standalone(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_bytes:
        return subprocess.Popen(
            _airflow("standalone"),
            env=env,
            stdout=log_bytes,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole by _stop_process_group
        )


def _stop_airflow(proc: subprocess.Popen[bytes]) -> None:
    # A second Ctrl-C must not cut the shutdown short and orphan Airflow's processes:
    # _stop_process_group escalates to SIGTERM / SIGKILL by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _stop_process_group(proc)


def _api_failed(port: int, log_path: Path) -> int:
    _print(
        "",
        f"Airflow did not come up on port {port}; the end of {log_path}:",
        *("    " + line for line in _tail(log_path)),
        file=sys.stderr,
    )
    return 1


def run_standalone(home: AirflowHome, project: Path, port: int) -> int:
    _catch_termination()
    home.prepare()
    log_path = home.path / "standalone.log"
    _print("make airflow: Airflow standalone with the example DAGs and the sandbox connections")
    with running_sandboxes(all_demo_orders=True) as boxes:
        ez = boxes.ezcater
        # The subscriber (and so its secret) exists before Airflow starts: the connection carries it.
        subscriber = create_subscriber(ez, port)
        env = standalone_env(home, boxes, port, subscriber.env())
        if not migrate_standalone_db(home, env, log_path):
            return 1
        _print(
            f"- Sandboxes up: DataKitchen {boxes.datakitchen.url}, ezCater {ez.url}",
            f"- Starting `airflow standalone` (under a minute; its output goes to {log_path}) ...",
        )
        proc = _start_standalone(env, log_path)
        try:
            if not _wait_for_api(
                f"http://127.0.0.1:{port}/api/v2/monitor/health", proc, time.monotonic() + API_TIMEOUT
            ):
                return _api_failed(port, log_path)
            _print(
                "- Airflow is up; unpausing the notification DAGs once the dag-processor has parsed them ..."
            )
            missing = enable_notification_dags(AirflowApi(port))
            # Subscribe only now, once the demo orders' timed transitions are done ("becomes-submitted"
            # turns submitted 30 s after seeding): no demo order is notified, so none is accepted by
            # example_accept_notified_orders before you trigger the pipeline with it.
            _wait(lambda: not any(o.transitions for o in ez.orders.values()), 60)
            subscribe(ez, subscriber)
            place = f"curl -X POST {ez.url}/_sandbox/place-order -d '{{\"headcount\": 25}}'"
            second = json.dumps({"state": "submitted", "caterer_uuid": SECOND_CATERER_UUID})
            _print(
                "",
                f"Airflow is up: http://localhost:{port}",
                "  No login needed: every visitor is an admin (SIMPLE_AUTH_MANAGER_ALL_ADMINS, local use only).",
                f"  Trigger {DAG_ID} from its page (button 'Trigger'); the form's defaults use the sandboxes.",
                "  The demo catering orders in the form's defaults can be accepted once. To start over:",
                f"    curl -X POST {ez.url}/_sandbox/reset      (re-seeds the demo orders; it also forgets the",
                "    notification subscriber below: restart `make airflow` to get notifications back)",
                "  or seed a new submitted order (for the second caterer, which nobody is notified of) and",
                "  paste the uuid it answers into the form:",
                f"    curl -X POST {ez.url}/_sandbox/orders -d '{second}'",
                "",
                "  Notifications: the ezCater sandbox delivers its demo caterer's "
                f"{' and '.join(NOTIFICATION_EVENTS)} orders,",
                f"  signed, to {subscriber.webhook_url}",
                "  (the secret is the webhook_secret extra of ezcater_default). Place an order:",
                f"    {place}",
                f"  and a run of {NOTIFIED_DAG_ID} appears within seconds at",
                f"  http://localhost:{port}/dags/{NOTIFIED_DAG_ID}: it accepts the order (one of over 150",
                f"  guests it rejects). What was delivered: curl {ez.url}/_sandbox/deliveries",
                *(
                    [f"  ({', '.join(missing)} not parsed yet: unpause it on its page once it appears.)"]
                    if missing
                    else []
                ),
                "",
                "  Connections datakitchen_default and ezcater_default come from AIRFLOW_CONN_* variables",
                "  (pointing at the sandboxes), so they are not listed on the Connections page.",
                f"  Airflow output: {log_path}",
                "Press Ctrl-C to stop Airflow and the sandboxes.",
            )
            while proc.poll() is None:
                time.sleep(1)
            _print(f"airflow standalone exited with code {proc.returncode}; see {log_path}", file=sys.stderr)
            return proc.returncode or 1
        except KeyboardInterrupt:
            _print("", "Stopping Airflow ...")
            return 0
        finally:
            _stop_airflow(proc)
            _print("Airflow stopped; stopping the sandboxes.")


# ---------------------------------------------------------------------------------------- --notifications


@dataclass
class OrderWatch:
    """What ``--notifications`` has seen of one order on its way through Airflow (printed once each)."""

    order_id: str
    placed: float  # epoch seconds, the sandbox's clock
    attempts: int = 0
    answers: list[str] = field(default_factory=list)
    events: set[int] = field(default_factory=set)
    runs: dict[str, str] = field(default_factory=dict)  # run id -> last state printed
    other_runs: set[str] = field(default_factory=set)
    tasks: dict[tuple[str, int], str] = field(default_factory=dict)
    accepted_after: float | None = None
    accepted_said: bool = False
    #: (when, line) seen since the last :meth:`flush`
    pending: list[tuple[float, str]] = field(default_factory=list)

    def say(self, text: str, epoch: float | None = None) -> None:
        """A step, stamped with when it happened (``epoch``) or else when it was seen (now)."""
        when = time.time() if epoch is None else epoch
        self.pending.append((when, f"  +{when - self.placed:5.1f} s  {text}"))

    def flush(self) -> None:
        """Print the steps seen in one round, in the order they happened."""
        for _, line in sorted(self.pending, key=lambda item: item[0]):
            _print(line)
        self.pending.clear()

    @property
    def since(self) -> str:
        """A little before the order was placed, as Airflow's REST filters want it."""
        return _iso(self.placed - 5)

    def run_state(self) -> str | None:
        return next(iter(self.runs.values()), None)


def _watch_deliveries(ez: EzCaterSandbox, watch: OrderWatch) -> None:
    attempts = [
        (d, a)
        for d in ez.deliveries(order_id=watch.order_id, key="submitted")
        for a in d["attempts"]
        if a.get("elapsed_ms") is not None  # finished
    ]
    for delivery, attempt in attempts[watch.attempts :]:
        status = attempt["status"]
        answer = f"answered {status}" if status is not None else f"not answered ({attempt['error']})"
        watch.answers.append(str(status) if status is not None else "no answer")
        watch.say(  # stamped when it was sent: the receiver records the asset event before it answers
            f"delivery {delivery['id']} POSTed (signed) to the receiver: {answer} in "
            f"{attempt['elapsed_ms']:.0f} ms",
            attempt["at"],
        )
    watch.attempts = len(attempts)


def _epoch(value: Any) -> float | None:
    """Epoch seconds of an ISO time from Airflow's REST API (None when absent)."""
    if not isinstance(value, str) or not value:
        return None
    with contextlib.suppress(ValueError):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


_TASK_DONE = ("success", "failed", "skipped", "upstream_failed")


def _watch_airflow(api: AirflowApi, watch: OrderWatch) -> None:
    """The order's asset event, its run and the run's tasks, each stamped with Airflow's own times."""
    for event in api.order_events(NOTIFIED_ASSET_URI, watch.order_id, watch.since):
        if event["id"] not in watch.events:
            watch.events.add(event["id"])
            watch.say(f"asset event {event['id']} on {NOTIFIED_ASSET_URI}", _epoch(event.get("timestamp")))
    for run in api.runs(NOTIFIED_DAG_ID, watch.since):
        run_id = run["dag_run_id"]
        if run_id in watch.other_runs:
            continue
        if run_id not in watch.runs:
            if watch.order_id not in api.run_order_ids(NOTIFIED_DAG_ID, run_id):
                watch.other_runs.add(run_id)
                continue
            watch.runs[run_id] = ""
            created = _epoch(run.get("queued_at")) or _epoch(run.get("run_after"))
            watch.say(f"DAG run {run_id} of {NOTIFIED_DAG_ID} ({run['run_type']})", created)
        for ti in api.task_instances(NOTIFIED_DAG_ID, run_id):
            key = (ti["task_id"], int(ti.get("map_index", -1)))
            state = ti.get("state")
            if state in _TASK_DONE and watch.tasks.get(key) != state:
                watch.tasks[key] = state
                index = f"[{key[1]}]" if key[1] >= 0 else ""
                watch.say(f"  task {key[0]}{index}: {state}", _epoch(ti.get("end_date")))
        if run["state"] != watch.runs[run_id]:
            watch.runs[run_id] = run["state"]
            when = _epoch(run.get("end_date")) if run["state"] in ("success", "failed") else None
            watch.say(f"run {run_id}: {run['state']}", when or _epoch(run.get("start_date")))


def _say_accepted(watch: OrderWatch, *, final: bool) -> None:
    """The sandbox's acceptOrder, told once Airflow's side has caught up with it (the accept task or
    the run seen done), so that the lines stay in the order things happened."""
    if watch.accepted_after is None or watch.accepted_said:
        return
    caught_up = watch.run_state() in ("success", "failed") or any(
        task.rsplit(".", 1)[-1] == "accept" and state in _TASK_DONE
        for (task, _), state in watch.tasks.items()
    )
    if caught_up or final:
        watch.accepted_said = True
        watch.say(
            f"order {watch.order_id} accepted (acceptOrder, seen by the sandbox)",
            watch.placed + watch.accepted_after,
        )


def follow_notified_order(
    api: AirflowApi, ez: EzCaterSandbox, proc: subprocess.Popen[bytes], timeout: float = ACCEPT_TIMEOUT
) -> tuple[OrderWatch, str | None]:
    """Place a 25-person order and print each step of its way until it is accepted and its run done.

    Returns what was seen and, if the order did not get there within ``timeout``, why not.
    """
    order_id = ez.place_order(headcount=25)
    watch = OrderWatch(order_id, ez.orders[order_id].created_at)
    watch.say(f"order {order_id} placed in the sandbox (25 guests, {DEMO_CATERER_NAME})", watch.placed)
    watch.flush()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return watch, f"airflow standalone exited with code {proc.returncode}"
        _watch_deliveries(ez, watch)
        if "202" in watch.answers:  # nothing to see in Airflow before the receiver recorded the delivery
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError, KeyError):
                _watch_airflow(api, watch)
        if watch.accepted_after is None and ez.order_state(order_id) == "accepted":
            accepted_at = next(t for t, m, _ in ez.orders[order_id].mutations if m == "acceptOrder")
            watch.accepted_after = accepted_at - watch.placed
        _say_accepted(watch, final=False)
        watch.flush()
        state = ez.order_state(order_id)
        if state not in ("submitted", "accepted"):
            return watch, f"the order is {state}, not accepted"
        if watch.accepted_after is not None and watch.run_state() in ("success", "failed"):
            break
        time.sleep(0.5)
    else:
        _say_accepted(watch, final=True)
        watch.flush()
        return watch, (
            f"not accepted and its run done within {timeout:.0f} s: the order is {ez.order_state(order_id)}; "
            f"delivery answers {watch.answers or 'none'}, {len(watch.events)} asset event(s), "
            f"runs {watch.runs or 'none'}"
        )
    if watch.run_state() != "success":
        return watch, f"the order was accepted, but its run ended {watch.run_state()}"
    return watch, None


def run_notifications(home: AirflowHome, project: Path, port: int, timeout: float = ACCEPT_TIMEOUT) -> int:
    _catch_termination()
    started = time.monotonic()
    home.prepare()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = home.demo_logs / f"notifications-{stamp}.log"

    def rel(path: Path) -> str:
        return str(path.relative_to(project)) if path.is_relative_to(project) else str(path)

    _print(
        "make demo-notifications: an ezCater order accepted through its notification",
        "  (sandbox -> signed delivery -> receiver plugin -> asset event -> DAG run -> acceptOrder)",
    )
    with running_sandboxes(all_demo_orders=False, pipeline_orders=False) as boxes:
        ez = boxes.ezcater
        subscriber = create_subscriber(ez, port)
        subscribe(ez, subscriber)  # no order yet, so nothing to deliver until one is placed
        _print(
            f"- ezCater sandbox {ez.url}: subscriber {subscriber.id} -> {subscriber.webhook_url}",
            f"  ({' and '.join(NOTIFICATION_EVENTS)} orders of {DEMO_CATERER_NAME}; its secret is the "
            "webhook_secret extra of the ezcater_default connection)",
        )
        env = standalone_env(home, boxes, port, subscriber.env())
        if not migrate_standalone_db(home, env, log_path):
            return 1
        _print(
            f"- Starting `airflow standalone` (api-server, scheduler, dag-processor, triggerer; SQLite) on "
            f"port {port}; output: {rel(log_path)}"
        )
        proc = _start_standalone(env, log_path)
        try:
            if not _wait_for_api(
                f"http://127.0.0.1:{port}/api/v2/monitor/health", proc, time.monotonic() + API_TIMEOUT
            ):
                return _api_failed(port, log_path)
            api = AirflowApi(port)
            _print(f"- Airflow API up after {time.monotonic() - started:.0f} s: http://localhost:{port}")
            missing = enable_notification_dags(api)
            if NOTIFIED_DAG_ID in missing:
                _print(
                    "",
                    f"FAILED: the dag-processor did not parse {NOTIFIED_DAG_ID} within {PARSE_TIMEOUT:.0f} s; "
                    f"the end of {log_path}:",
                    *("    " + line for line in _tail(log_path)),
                    file=sys.stderr,
                )
                return 1
            _print(f"- {NOTIFIED_DAG_ID} parsed and unpaused ({time.monotonic() - started:.0f} s)")
            watch, problem = follow_notified_order(api, ez, proc, timeout)
        except KeyboardInterrupt:
            _print("", "Interrupted; stopping Airflow ...", file=sys.stderr)
            return 130
        finally:
            _print("- Stopping Airflow and the sandboxes ...")
            _stop_airflow(proc)
    seconds = time.monotonic() - started
    if problem is not None:
        _print(
            "",
            f"make demo-notifications FAILED after {seconds:.0f} s: order {watch.order_id}: {problem}.",
            f"  Airflow output: {rel(log_path)}; task logs: {rel(home.path / 'logs')}/; it ends with:",
            *("    " + line[:200] for line in _tail(log_path, 10)),
            file=sys.stderr,
        )
        return 1
    _print(
        "",
        f"make demo-notifications succeeded in {seconds:.0f} s: order {watch.order_id} accepted "
        f"{watch.accepted_after:.1f} s after it was placed, by run {next(iter(watch.runs))} "
        f"of {NOTIFIED_DAG_ID}.",
        f"  Airflow output: {rel(log_path)}; task logs: {rel(home.path / 'logs')}/ "
        "(`make clean` removes them)",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python dev/demo.py",
        description="Run the example order pipeline with Airflow against both sandboxes (make demo), "
        "Airflow standalone with them (make airflow), or follow one ezCater order through its "
        "notification (make demo-notifications).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="airflow standalone until Ctrl-C")
    mode.add_argument(
        "--notifications",
        action="store_true",
        help="place one ezCater order and follow it through its notification to its acceptance, then stop",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="UI / API port: --standalone 8080, --notifications a free port (default)",
    )
    parser.add_argument(
        "--accept-timeout",
        type=float,
        default=ACCEPT_TIMEOUT,
        help=f"--notifications: seconds for the order to be accepted and its run done ({ACCEPT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--variation",
        default=DEMO_VARIATION,
        help="demo recipe variation: success (default), fails, stopped, slow",
    )
    parser.add_argument("--airflow-home", type=Path, help="default: <checkout>/.airflow-home")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Airflow's whole output")
    args = parser.parse_args(argv)

    project = find_project_dir()
    home = AirflowHome(
        path=(args.airflow_home or project / ".airflow-home").resolve(),
        dags_folder=project / "example_dags",
    )
    try:
        if args.standalone:
            return run_standalone(home, project, args.port or 8080)
        if args.notifications:
            # A home of its own: it may run while `make airflow` holds the other one's SQLite DB.
            own = AirflowHome(path=home.path / "notifications-demo", dags_folder=home.dags_folder)
            return run_notifications(own, project, args.port or free_port(), args.accept_timeout)
        return run_demo(home, project, args.variation, args.verbose)
    except KeyboardInterrupt:
        _print("", "Interrupted; the sandboxes are stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
