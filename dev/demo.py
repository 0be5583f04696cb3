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
    example DAGs and the sandbox connections, until Ctrl-C.

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
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox
from airflow_provider_orders.sandbox.datakitchen.models import DEFAULT_KITCHEN, DEFAULT_RECIPE
from airflow_provider_orders.sandbox.ezcater.models import DEMO_ORDERS

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
def running_sandboxes(*, all_demo_orders: bool) -> Iterator[Sandboxes]:
    """Start both sandboxes (port 0) and seed the pipeline's catering orders.

    ``all_demo_orders``: also the sandbox CLI's other demo orders (for ``--standalone``: the order to
    reject, one with a pending modification...), with the CLI's own timings.
    """
    with DataKitchenSandbox(port=0) as dk, EzCaterSandbox(port=0, demo_orders=all_demo_orders) as ez:
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
# The two modes


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


def run_standalone(home: AirflowHome, project: Path, port: int) -> int:
    # Ctrl-C, and also a plain `kill`: stop Airflow and the sandboxes the same way.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, _interrupt)
    home.prepare()
    log_path = home.path / "standalone.log"
    _print("make airflow: Airflow standalone with the example DAGs and the sandbox connections")
    with running_sandboxes(all_demo_orders=True) as boxes:
        env = home.env(
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
            },
        )
        with log_path.open("a") as log:
            if not migrate_db(home, env, log):
                _print(f"`airflow db migrate` failed; see {log_path}", file=sys.stderr)
                return 1
        _print(
            f"- Sandboxes up: DataKitchen {boxes.datakitchen.url}, ezCater {boxes.ezcater.url}",
            f"- Starting `airflow standalone` (under a minute; its output goes to {log_path}) ...",
        )
        with log_path.open("ab") as log_bytes:
            proc = subprocess.Popen(
                _airflow("standalone"),
                env=env,
                stdout=log_bytes,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as a whole below
            )
        try:
            if not _wait_for_api(
                f"http://127.0.0.1:{port}/api/v2/monitor/health", proc, time.monotonic() + 180
            ):
                _print(
                    "",
                    f"Airflow did not come up on port {port}; the end of {log_path}:",
                    *("    " + line for line in _tail(log_path)),
                    file=sys.stderr,
                )
                return 1
            _print(
                "",
                f"Airflow is up: http://localhost:{port}",
                "  No login needed: every visitor is an admin (SIMPLE_AUTH_MANAGER_ALL_ADMINS, local use only).",
                f"  Trigger {DAG_ID} from its page (button 'Trigger'); the form's defaults use the sandboxes.",
                "  The demo catering orders in the form's defaults can be accepted once. To start over:",
                f"    curl -X POST {boxes.ezcater.url}/_sandbox/reset      (re-seeds the demo orders)",
                "  or seed a new submitted order and paste the uuid it answers into the form:",
                f'    curl -X POST {boxes.ezcater.url}/_sandbox/orders -d \'{{"state": "submitted"}}\'',
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
            # A second Ctrl-C must not cut the shutdown short and orphan Airflow's processes:
            # _stop_process_group escalates to SIGTERM / SIGKILL by itself.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _stop_process_group(proc)
            _print("Airflow stopped; stopping the sandboxes.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python dev/demo.py",
        description="Run the example order pipeline with Airflow against both sandboxes (make demo), "
        "or Airflow standalone with them (make airflow).",
    )
    parser.add_argument("--standalone", action="store_true", help="airflow standalone until Ctrl-C")
    parser.add_argument("--port", type=int, default=8080, help="UI / API port for --standalone (8080)")
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
            return run_standalone(home, project, args.port)
        return run_demo(home, project, args.variation, args.verbose)
    except KeyboardInterrupt:
        _print("", "Interrupted; the sandboxes are stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
