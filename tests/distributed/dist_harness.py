"""A distributed Airflow for ``make test-distributed``: CeleryExecutor on PostgreSQL + Redis, two workers.

Everything runs as local processes of this machine, loopback only, no Docker:

* PostgreSQL from Debian's binaries (``tests/lifecycle/local_postgres.py``): metadata DB and Celery's
  result backend;
* ``redis-server`` (Debian) on a free port, nothing persisted: the Celery broker;
* the DataKitchen and ezCater sandboxes, in this process (the ezCater one delivers signed notifications
  to the receiver on the api-server, retrying with short back-offs);
* Airflow: ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` (``tests/e2e/e2e_harness.py``)
  and two ``airflow celery worker`` processes, ``w1`` and ``w2``, each in its own process group.

Each worker reports its name as the task instances' ``hostname`` (``worker_name.py``), so the REST API
tells which worker ran which try. Component logs: ``.artifacts/distributed/<component>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _folder in (REPO / "tests" / "notifications", REPO / "tests" / "lifecycle", REPO / "tests" / "e2e"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from e2e_harness import (  # noqa: E402
    DAG_PARSED_TIMEOUT,
    HEALTH_TIMEOUT,
    AirflowCluster,
    AirflowProcess,
    Sandboxes,
    _group_alive,
    _group_members,
    _tail,
    airflow_env,
    free_port,
    wait_until,
)
from local_postgres import local_postgres  # noqa: E402
from notif_harness import subscribe  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

ARTIFACTS = REPO / ".artifacts" / "distributed"
RESULTS = ARTIFACTS / "results.json"
DAGS = HERE / "dags"
WORKERS = ("w1", "w2")
WORKER_CONCURRENCY = 2
DAG_IDS = ("dist_submit_wait", "dist_submit_deferred", "dist_accept_burst")
#: The sandbox variation the submit DAGs order: its runs stay active until the test finishes them.
KITCHEN, RECIPE, VARIATION = "dist", "r", "long"
#: A task whose supervisor stopped heartbeating (its worker was killed) is found within seconds.
HEARTBEAT_TIMEOUT = 20
HEARTBEAT_CHECK_INTERVAL = 3
WORKER_READY_TIMEOUT = 180.0
STOP_GRACE = 20.0
SKIP_SERVE_LOGS = ("scheduler", "triggerer")


# ---------------------------------------------------------------------------------------------- processes
def children_of() -> dict[int, list[int]]:
    """ppid -> live child pids, read from /proc."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (a task process sits in a process group of its own)."""
    tree, found, todo = children_of(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment has ``name=value`` (whatever we started for one AIRFLOW_HOME)."""
    needle = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        pid = int(environ.parent.name)
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in environ.read_bytes().split(b"\0") and alive(pid):
                found.append(pid)
    return found


def kill_all(pids: list[int], sig: signal.Signals = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@contextmanager
def redis_server(port: int, log_dir: Path) -> Iterator[str]:
    """A throw-away ``redis-server`` on 127.0.0.1:``port`` (nothing saved); yields its broker URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    folder = Path(tempfile.mkdtemp(prefix="orders-distributed-redis-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "redis.log"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--daemonize", "no", "--dir", str(folder), "--protected-mode", "yes"]
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def pong() -> bool:
        if popen.poll() is not None:
            pytest.fail(f"redis-server exited ({popen.returncode}):\n{_tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    try:
        wait_until(f"redis-server on port {port}", pong, 30, interval=0.2)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- airflow
@dataclass
class CeleryCluster(AirflowCluster):
    """The e2e harness's four components plus named Celery workers (``worker-w1``, ``worker-w2``)."""

    worker_names: tuple[str, ...] = WORKERS
    #: worker name -> the pids SIGKILLed when it was "crashed"
    killed: dict[str, list[int]] = field(default_factory=dict)

    def start_component(self, name: str) -> AirflowProcess:
        """As the e2e harness does, but scheduler and triggerer start no log server: Airflow binds it to
        every interface (``serve_logs``: host ``""``), and on one machine the api-server reads the task
        logs from the shared log folder anyway."""
        if name not in SKIP_SERVE_LOGS:
            return super().start_component(name)
        log_path = self.artifacts / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "airflow", name, "--skip-serve-logs"],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = AirflowProcess(name, popen, log_path)
        self.processes.append(proc)
        return proc

    def worker_env(self, name: str) -> dict[str, str]:
        env = dict(self.env)
        env["ORDERS_DIST_WORKER"] = name
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "worker_name.hostname"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
        return env

    def start_worker(self, name: str) -> AirflowProcess:
        log_path = self.artifacts / f"worker-{name}.log"
        command = [sys.executable, "-m", "airflow", "celery", "worker"]
        command += ["--celery-hostname", f"{name}@%h", "--concurrency", str(WORKER_CONCURRENCY)]
        # One machine: no log server per worker (the api-server reads the shared log folder), no
        # start-up handshake with the other worker.
        command += ["--skip-serve-logs", "--without-gossip", "--without-mingle"]
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                command,
                env=self.worker_env(name),
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = AirflowProcess(f"worker-{name}", popen, log_path)
        self.processes.append(proc)
        return proc

    def worker(self, name: str) -> AirflowProcess:
        return next(p for p in self.processes if p.name == f"worker-{name}")

    def worker_ready(self, name: str) -> bool:
        self.assert_running()
        text = self.worker(name).log_path.read_text(errors="replace")
        return f"{name}@" in text and " ready." in text

    def start_all(self) -> None:
        self.start()
        for name in self.worker_names:
            self.start_worker(name)

    def crash_worker(self, name: str) -> list[int]:
        """SIGKILL worker ``name`` as a machine crash would: the Celery process group and every process
        below it (the task supervisors and their task processes, which have process groups of their own)."""
        proc = self.worker(name)
        pids = sorted({*_group_members(proc.pgid), *descendants(proc.popen.pid)})
        kill_all(pids)
        wait_until(f"worker {name}'s processes to be gone", lambda: not any(alive(p) for p in pids), 30)
        proc.popen.wait(timeout=10)
        self.processes.remove(proc)
        self.killed[name] = pids
        return pids

    def crash_component(self, name: str) -> None:
        """SIGKILL one Airflow component's whole process group (no graceful shutdown) and forget it."""
        proc = next(p for p in self.processes if p.name == name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pgid, signal.SIGKILL)
        wait_until(f"{name} to be gone", lambda: not _group_alive(proc.pgid), 30, interval=0.1)
        proc.popen.wait(timeout=10)
        self.processes.remove(proc)

    def stop(self) -> list[str]:
        """Workers first (SIGTERM, then SIGKILL of the group and everything below it), then the rest."""
        below = {pid for p in self.processes for pid in descendants(p.popen.pid)}
        workers = [p for p in self.processes if p.name.startswith("worker-")]
        for proc in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)
            self.processes.remove(proc)
        leftovers = super().stop()
        # Task processes (own process groups) and anything else started for this AIRFLOW_HOME.
        stray = sorted(
            {p for p in below if alive(p)} | set(processes_with_env("AIRFLOW_HOME", str(self.home)))
        )
        kill_all(stray)
        with contextlib.suppress(BaseException):
            wait_until("stray Airflow processes to die", lambda: not any(alive(p) for p in stray), 15)
        leftovers += [f"stray pid {p}" for p in stray if alive(p)]
        return leftovers

    # -- REST
    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of one task instance (try_number, state, hostname), oldest first."""
        quoted = urllib.parse.quote(run_id, safe="")
        answer = self.api(f"dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/tries")
        return sorted(answer["task_instances"], key=lambda t: int(t["try_number"]))

    def log_tails(self, *names: str, lines: int = 40) -> str:
        """The ends of the named component logs (``scheduler``, ``worker-w1``...; all when none named)."""
        paths = [self.artifacts / f"{n}.log" for n in names] or sorted(self.artifacts.glob("*.log"))
        return "\n".join(f"----- end of {p.name} -----\n{_tail(p, lines)}" for p in paths)


# ---------------------------------------------------------------------------------------------- the stack
@dataclass
class Deployment:
    cluster: CeleryCluster
    dk: DataKitchenSandbox
    ez: EzCaterSandbox
    broker_url: str
    sql_alchemy_conn: str
    timings: dict[str, float] = field(default_factory=dict)

    def ports(self) -> set[int]:
        """The TCP ports of everything started for the deployment (PostgreSQL, Redis, sandboxes, API)."""
        found = {self.cluster.port, self.dk.port, self.ez.port}
        for url in (self.broker_url, self.sql_alchemy_conn):
            found.add(int(urllib.parse.urlsplit(url).port or 0))
        for key in ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"):
            found.add(int(self.cluster.env[key]))
        return found


def celery_env(broker_url: str, sql_alchemy_conn: str) -> dict[str, str]:
    backend = (
        "db+" + sql_alchemy_conn
    )  # db+postgresql+psycopg2://... (the driver named: SQLAlchemy may default to psycopg 3)
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        # A worker reserves no more than it runs: a crashed worker holds no queued message hostage.
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(
            HEARTBEAT_CHECK_INTERVAL
        ),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
    }


@contextmanager
def distributed_stack() -> Iterator[Deployment]:
    """Start PostgreSQL, Redis, both sandboxes and the Celery Airflow; stop all of it, also on failure."""
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    started = time.monotonic()
    timings: dict[str, float] = {}
    delivery = {"delivery_retry_base": 0.5, "delivery_retry_max_delay": 3.0, "delivery_max_attempts": 120}
    with ExitStack() as stack:
        dk = stack.enter_context(DataKitchenSandbox(port=0, demo_catalogue=False))
        dk.add_variation(KITCHEN, RECIPE, VARIATION, planned_seconds=0.5, active_seconds=3600)
        ez = stack.enter_context(EzCaterSandbox(port=0, demo_orders=False, **delivery))
        sql = stack.enter_context(local_postgres(free_port(), ARTIFACTS / "postgres"))
        broker = stack.enter_context(redis_server(free_port(), ARTIFACTS))
        timings["postgres_redis"] = time.monotonic() - started

        home = Path(tempfile.mkdtemp(prefix="orders-distributed-airflow-home-"))
        stack.callback(shutil.rmtree, home, True)
        port = free_port()
        hook = f"http://127.0.0.1:{port}/ezcater/webhooks/ezcater_default"
        secret, _ = subscribe(ez, "ezcater_default", hook, "submitted", home)
        env = airflow_env(home, port, Sandboxes(dk, ez), dags_folder=DAGS, extra_env=celery_env(broker, sql))
        fast = {"retry_delay": 0.2, "max_retries": 3}
        env["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"] = dk.connection_json(fast)
        env["AIRFLOW_CONN_EZCATER_DEFAULT"] = ez.connection_json({**fast, "webhook_secret": secret})
        cluster = CeleryCluster(home=home, port=port, env=env, artifacts=ARTIFACTS)
        deployment = Deployment(cluster, dk, ez, broker, sql, timings)
        try:
            cluster.migrate()
            timings["db_migrate"] = time.monotonic() - started
            cluster.start_all()
            wait_until(
                f"Airflow healthy on {cluster.base_url}",
                cluster.healthy,
                HEALTH_TIMEOUT,
                describe=lambda: cluster.log_tails("api-server", "scheduler"),
            )
            for name in WORKERS:
                wait_until(
                    f"Celery worker {name} ready",
                    lambda name=name: cluster.worker_ready(name),
                    WORKER_READY_TIMEOUT,
                    describe=lambda name=name: cluster.log_tails(f"worker-{name}"),
                )
            timings["healthy"] = time.monotonic() - started
            wait_until(
                "the dag-processor to parse the distributed DAGs",
                lambda: all(cluster.dag(d) for d in DAG_IDS),
                DAG_PARSED_TIMEOUT,
                describe=lambda: f"Import errors: {cluster.import_errors()}",
            )
            timings["dags_parsed"] = time.monotonic() - started
            yield deployment
        finally:
            stopping = time.monotonic()
            leftovers = cluster.stop()
            timings["stop"] = time.monotonic() - stopping
            timings["total"] = time.monotonic() - started
            (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
            with contextlib.suppress(OSError):
                shutil.copytree(home / "logs", ARTIFACTS / "airflow-logs", dirs_exist_ok=True)
            (ARTIFACTS / "deliveries.json").write_text(json.dumps(ez.deliveries(), default=str))
            if leftovers:
                raise RuntimeError(f"processes survived SIGKILL: {leftovers}")


def non_loopback_listeners(pids: set[int], ports: set[int]) -> list[str]:
    """TCP sockets in LISTEN state, of ``pids`` or on one of ``ports``, bound to anything but loopback
    (read from /proc/net/tcp and tcp6)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
    found = []
    for table, loopback in (("tcp", ("0100007F",)), ("tcp6", ("00000000000000000000000001000000",))):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                address, state, inode = parts[1], parts[3], parts[9]
                host, _, port = address.partition(":")
                ours = inode in inodes or int(port, 16) in ports
                if state == "0A" and ours and host not in loopback:
                    found.append(f"pid {inodes.get(inode)} listens on {table} {host}:{int(port, 16)}")
    return found
