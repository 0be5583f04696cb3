"""The e2e harness's building blocks (the fixtures live in conftest.py): Airflow processes, REST, waits."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page, Route

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".artifacts" / "e2e"
SCREENSHOTS = ARTIFACTS / "screenshots"
DAGS_FOLDER = REPO / "example_dags"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
# Keep Chromium off the (closed) network and away from features a container lacks.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STOP_ORDER = ("scheduler", "triggerer", "dag-processor", "api-server")  # no new work while stopping

# Deadlines, generous for 2 busy cores. Waits poll and return as soon as the state is reached.
MIGRATE_TIMEOUT = 300.0
HEALTH_TIMEOUT = 180.0
DAG_PARSED_TIMEOUT = 180.0
STOP_GRACE = 30.0
UI_TIMEOUT_MS = 60_000


# ---------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 1.0,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass (fail).

    The failure message names ``what`` we waited for and, from ``describe``, what was seen instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            seen = describe() if describe else ""
            pytest.fail(f"Timed out after {timeout:.0f} s waiting for {what}. {seen}".strip())
        time.sleep(interval)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} is unreadable)"
    return "\n".join(text[-lines:])


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid pgrp ... ; comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _group_alive(pgid: int) -> bool:
    if Path("/proc/self/stat").exists():
        return bool(_group_members(pgid))
    try:  # no /proc: signal 0 (a zombie counts as alive here)
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Sandboxes:
    datakitchen: DataKitchenSandbox
    ezcater: EzCaterSandbox

    def connection_env(self) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_DATAKITCHEN_DEFAULT": self.datakitchen.connection_json(),
            "AIRFLOW_CONN_EZCATER_DEFAULT": self.ezcater.connection_json(),
        }


# ---------------------------------------------------------------------------------------------- airflow
@dataclass
class AirflowProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session=True: the child leads its own group


@dataclass
class AirflowCluster:
    """api-server, scheduler, dag-processor and triggerer of one throw-away AIRFLOW_HOME."""

    home: Path
    port: int
    env: dict[str, str]
    processes: list[AirflowProcess] = field(default_factory=list)
    #: where the component logs, db-migrate.log and pids.json go
    artifacts: Path = ARTIFACTS
    #: how long a page of asset events answered 500 is read again (``asset_events``)
    QUEUED_RUN_GRACE: ClassVar[float] = 60.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle
    def migrate(self) -> None:
        log_path = self.artifacts / "db-migrate.log"
        with log_path.open("wb") as log:
            proc = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=MIGRATE_TIMEOUT,
                check=False,
            )
        if proc.returncode != 0:
            pytest.fail(f"`airflow db migrate` failed (exit {proc.returncode}):\n{_tail(log_path)}")

    def start(self) -> None:
        for name in COMPONENTS:
            self.start_component(name)

    def start_component(self, name: str) -> AirflowProcess:
        """Start one component (its log is appended to, so a restart keeps the earlier lines)."""
        log_path = self.artifacts / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "airflow", name],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: stopped as a whole by its pid
            )
        proc = AirflowProcess(name, popen, log_path)
        self.processes.append(proc)
        (self.artifacts / "pids.json").write_text(json.dumps({p.name: p.pgid for p in self.processes}))
        return proc

    def stop_component(self, name: str, grace: float = STOP_GRACE) -> None:
        """Stop one component's process group (SIGTERM, then SIGKILL after ``grace``) and forget it."""
        for proc in [p for p in self.processes if p.name == name]:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                if not _group_alive(proc.pgid):
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pgid, sig)
                deadline = time.monotonic() + wait
                while _group_alive(proc.pgid) and time.monotonic() < deadline:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.popen.wait(timeout=0.1)
            if _group_alive(proc.pgid):
                pytest.fail(
                    f"Airflow {name} (pgid {proc.pgid}) survived SIGKILL: {_group_members(proc.pgid)}"
                )
            self.processes.remove(proc)

    def restart_component(self, name: str) -> AirflowProcess:
        """Stop ``name`` (e.g. the triggerer) and start it again with the same environment."""
        self.stop_component(name)
        return self.start_component(name)

    def assert_running(self) -> None:
        for proc in self.processes:
            if proc.popen.poll() is not None:
                pytest.fail(
                    f"Airflow {proc.name} exited with code {proc.popen.returncode}; "
                    f"end of {proc.log_path}:\n{_tail(proc.log_path)}"
                )

    def stop(self) -> list[str]:
        """Stop every process group (scheduler first); return the groups that refused to die."""
        order = sorted(self.processes, key=lambda p: STOP_ORDER.index(p.name))
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 10.0)):
            alive = [p for p in order if _group_alive(p.pgid)]
            for proc in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pgid, sig)
            deadline = time.monotonic() + grace
            while alive and time.monotonic() < deadline:
                for proc in alive:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.popen.wait(timeout=0.1)  # reap our own child
                alive = [p for p in alive if _group_alive(p.pgid)]
                if alive:
                    time.sleep(0.2)
        return [f"{p.name} (pgid {p.pgid}): {_group_members(p.pgid)}" for p in order if _group_alive(p.pgid)]

    # -- REST (loopback; SIMPLE_AUTH_MANAGER_ALL_ADMINS: no token needed)
    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        url = f"{self.base_url}/api/v2/{path.lstrip('/')}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read().decode())

    def api_all(
        self, path: str, key: str, *, read: Callable[..., Any] | None = None, **params: Any
    ) -> list[dict[str, Any]]:
        """Every item of a list endpoint, all pages (Airflow answers at most 100 items per request);
        ``read`` replaces :meth:`api` for each page."""
        read = read or self.api
        items: list[dict[str, Any]] = []
        while True:
            page = read(path, limit=100, offset=len(items), **params)
            items.extend(page[key])
            if not page[key] or len(items) >= int(page["total_entries"]):
                return items

    def asset_events(self, uri: str, **params: Any) -> list[dict[str, Any]]:
        """Every event of the asset ``uri`` (all pages); [] while Airflow knows no such asset.

        Airflow's asset-events list answers 500 while a DAG run that one of the listed events created
        is still queued: a queued run has no ``start_date`` and the response model requires one
        (apache/airflow#71360, in every release up to 3.3.2). The scheduler starts a queued run within a
        loop or two, so a page answered 500 is read again for up to ``QUEUED_RUN_GRACE`` seconds; a 500
        that lasts longer fails the test with the end of the api-server's log.
        """
        assets = self.api("assets", uri_pattern=uri, limit=100)["assets"]
        ids = [a["id"] for a in assets if a["uri"] == uri]
        if not ids:
            return []
        read = self._read_past_queued_runs
        return self.api_all("assets/events", "asset_events", read=read, asset_id=ids[0], **params)

    def _read_past_queued_runs(self, path: str, **params: Any) -> Any:
        deadline = time.monotonic() + self.QUEUED_RUN_GRACE
        while True:
            try:
                return self.api(path, **params)
            except urllib.error.HTTPError as exc:
                if exc.code != 500:
                    raise
                if time.monotonic() >= deadline:
                    logs = [p.log_path for p in self.processes if p.name == "api-server"]
                    pytest.fail(
                        f"Airflow answered the asset-events list with 500 for {self.QUEUED_RUN_GRACE:.0f} s "
                        "(longer than a queued run waits for the scheduler); end of the api-server log:\n"
                        + (_tail(logs[0]) if logs else "(no api-server started by this cluster)")
                    )
            time.sleep(0.5)

    def api_call(self, method: str, path: str, body: Any = None) -> Any:
        """A write call of the REST API (POST / PATCH ...) with a JSON body, as the UI sends it."""
        url = f"{self.base_url}/api/v2/{path.lstrip('/')}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a DAG run (the "Trigger" button); returns its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return str(self.api_call("POST", f"dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        return self.api(path)  # type: ignore[no-any-return]

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """Clear one task instance (the UI's "Clear" on a task, whatever its state)."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [task_id],
            "only_failed": False,
            "reset_dag_runs": True,
            "include_downstream": False,
            "include_upstream": False,
        }
        return self.api_call("POST", f"dags/{dag_id}/clearTaskInstances", body)

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> Any:
        """Mark one task instance ``state`` (the UI's "Mark as failed" / "Mark as success")."""
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}"
        return self.api_call("PATCH", path, {"new_state": state})

    def healthy(self) -> dict[str, Any] | None:
        self.assert_running()
        try:
            health = self.api("monitor/health")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        if all((health.get(part) or {}).get("status") == "healthy" for part in parts):
            return health  # type: ignore[no-any-return]
        return None

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        self.assert_running()
        try:
            return self.api(f"dags/{dag_id}")  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("importErrors").get("import_errors", []))

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api(f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")  # type: ignore[no-any-return]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        self.assert_running()
        quoted = urllib.parse.quote(run_id, safe="")
        return list(self.api(f"dags/{dag_id}/dagRuns/{quoted}/taskInstances", limit=100)["task_instances"])

    def task_links(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[str, str | None]:
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/links"
        return dict(self.api(path, map_index=map_index)["extra_links"])

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """The structured log lines the UI shows for one try (all sources: worker and triggerer)."""
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/logs/{try_number}"
        lines: list[dict[str, Any]] = []
        token = None
        for _ in range(50):
            answer = self.api(path, map_index=map_index, full_content=True, token=token)
            content = answer.get("content") or []
            lines.extend(line if isinstance(line, dict) else {"event": str(line)} for line in content)
            token = answer.get("continuation_token")
            if not token or not content:
                break
        return lines

    def scheduler_saw_deferral(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> bool:
        """True once the scheduler has processed the executor event of the try that deferred.

        Until then a trigger that fires and resumes the task makes the scheduler take that stale
        event for an external kill and retry the task (apache/airflow#72716, #71580; open in 3.3.2).
        A test that decides when a trigger fires waits for this first. Read from the scheduler's log
        (its "TaskInstance Finished: ... state=deferred" line): the REST API does not expose it.
        """
        log = next(p.log_path for p in self.processes if p.name == "scheduler")
        needle = (
            f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id}, "
            f"map_index={map_index}, "
        )
        text = log.read_text(errors="replace")
        return any(needle in line and "state=deferred" in line for line in text.splitlines())

    def jobs(self, job_type: str) -> list[dict[str, Any]]:
        return list(self.api("jobs", job_type=job_type, limit=100)["jobs"])


def task_process_pids(ti_id: str) -> list[int]:
    """The pid(s) of the process running task instance ``ti_id``: the supervisor's child, whose title
    the task runner sets to ``airflow worker -- <ti id>``."""
    title = f"airflow worker -- {ti_id}"
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if text == title or text.startswith(title + " "):
                pids.append(int(cmdline.parent.name))
    return pids


def airflow_env(
    home: Path,
    port: int,
    sandboxes: Sandboxes,
    *,
    dags_folder: Path = DAGS_FOLDER,
    extra_env: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Nothing from the caller's Airflow settings, connections or the test session leaks in.
        if not key.startswith(("AIRFLOW", "PYTEST_", "_AIRFLOW"))
    }
    scripts = sysconfig.get_path("scripts")  # the venv's bin: Airflow may start `airflow ...` from PATH
    env["PATH"] = os.pathsep.join(
        p for p in (scripts, str(Path(sys.executable).parent), env.get("PATH")) if p
    )
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            # Everyone is admin, no login form; the REST API answers without a token. Loopback only.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            # Without this a non-default port makes every task fail with "connection refused".
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # One secret set for all four processes (tokens between api-server, scheduler, workers).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # The log servers of scheduler and triggerer: free ports, never the defaults others may use.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # Parse the DAG files once at start, not every 30 s (two shared cores).
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
        }
    )
    env.update(sandboxes.connection_env())
    env.update(extra_env or {})
    return env


def loopback_only(route: Route) -> None:
    host = urllib.parse.urlsplit(route.request.url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or route.request.url.startswith(("data:", "blob:")):
        route.continue_()
    else:
        route.abort("blockedbyclient")


# ---------------------------------------------------------------------------------------------- screenshots
class Shots:
    """Numbered full-page screenshots of one test under .artifacts/e2e/screenshots/<test>/."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.page: Page | None = None

    def __call__(self, name: str, page: Page | None = None) -> Path:
        page = page or self.page
        assert page is not None, "no page to screenshot"
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
