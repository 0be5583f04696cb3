"""The per-cell scripts of the lifecycle matrix, run all at once against one real Airflow.

:func:`run_matrix` gives every applicable cell (``lifecycle_cells.ACTIVE``) a thread that runs
:class:`CellScript`: arm the cell's sandbox fault, trigger its DAG, produce the column's event (REST
clear / mark failed, a signal to the task process, a triggerer restart), end the remote work when the
script decides (``finish_run`` / the order turning submitted), wait for the final state and observe.
Remote effects are read from the sandboxes' admin routes, task state and tries from Airflow's REST API.
Waits poll with deadlines (``e2e_harness.wait_until``); nothing asserts on a sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from e2e_harness import task_process_pids, wait_until
from lifecycle_cells import ACTIVE, SLOW_ANSWER, Cell, Expect

if TYPE_CHECKING:
    from collections.abc import Callable

    from e2e_harness import AirflowCluster

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

STEP_TIMEOUT = 240.0  # one wait of a script (Airflow on two busy cores, 40+ cells at once)
SETTLE_TIMEOUT = 30.0
#: cells in flight at once: SQLite (one writer) and one api-server worker are the limit, not the cores
MAX_CONCURRENT_CELLS = int(
    os.environ.get("LIFECYCLE_CONCURRENCY", "12")
)  # after the final state: for the remote effects of a kill to show
FINAL = ("success", "failed")
#: REST writes (trigger, clear, mark failed) go one at a time: SQLite takes one writer, and 40+ at once
#: time out in the api-server.
WRITE_LOCK = threading.Lock()
GET_LOCK = threading.BoundedSemaphore(4)  # and not more than a few reads at once
DK_READS = ("servings", "details")
DK_WRITES = ("stop_run", "stop_order", "resume_run")


# ---------------------------------------------------------------------------------------------- sandboxes
@dataclass
class CellSandboxes:
    """The cell's own sandboxes (each cell has its own fault queue and request log)."""

    dk: DataKitchenSandbox | None = None
    ez: EzCaterSandbox | None = None

    def connection_env(self, cell: Cell) -> dict[str, str]:
        env = {}
        extra = {"retry_delay": 0.2, **cell.conn_extra}
        if self.dk is not None:
            env[f"AIRFLOW_CONN_{cell.conn_id.upper()}_DK"] = self.dk.connection_json(extra)
        if self.ez is not None:
            env[f"AIRFLOW_CONN_{cell.conn_id.upper()}_EZ"] = self.ez.connection_json(extra)
        return env


def admin(url: str, method: str, name: str, body: Any = None) -> Any:
    """A sandbox admin route, over HTTP as another process would call it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}/_sandbox/{name}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read().decode() or "null")


# ---------------------------------------------------------------------------------------------- coordination
class TriggererRestart:
    """One triggerer restart for every "triggerer restart" cell, never during a kill of a deferred task.

    Kills of deferred tasks (clear / mark failed) hold :meth:`kill_guard` until their effect shows, so
    the trigger's ``on_kill`` runs in a live triggerer. The restart waits for all restart cells to be
    deferred (each calls :meth:`ready`), then for no kill in progress, restarts, and releases them.
    """

    def __init__(self, cluster: AirflowCluster, parties: int) -> None:
        self.cluster = cluster
        self.parties = parties
        self.cond = threading.Condition()
        self.arrived = 0
        self.kills = 0
        self.restarting = False
        self.done = threading.Event()
        self.restarted_at: float | None = None
        self.error: str | None = None

    @contextlib.contextmanager
    def kill_guard(self) -> Any:
        with self.cond:
            self.cond.wait_for(lambda: not self.restarting, timeout=STEP_TIMEOUT)
            self.kills += 1
        try:
            yield
        finally:
            with self.cond:
                self.kills -= 1
                self.cond.notify_all()

    def ready(self) -> None:
        """A restart cell is deferred (or gave up): count it; the last one restarts the triggerer."""
        with self.cond:
            self.arrived += 1
            if self.arrived < self.parties:
                return
            self.cond.wait_for(lambda: self.kills == 0, timeout=STEP_TIMEOUT)
            self.restarting = True
        try:
            self.cluster.restart_component("triggerer")
            self.restarted_at = time.time()
            wait_until("the restarted triggerer to report healthy", self.cluster.healthy, STEP_TIMEOUT)
        except BaseException as exc:
            self.error = f"triggerer restart failed: {exc}"
        finally:
            with self.cond:
                self.restarting = False
                self.cond.notify_all()
            self.done.set()


# ---------------------------------------------------------------------------------------------- one cell
@dataclass
class Observed:
    state: str | None = None
    tries: int | None = None
    orders: int | None = None
    stopped: int | None = None
    mutations: int | None = None
    order_state: str | None = None
    touched: list[str] = field(default_factory=list)
    log_hits: dict[str, bool] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [
            f"{k}={v}"
            for k, v in self.__dict__.items()
            if k not in ("steps", "error") and v not in (None, [], {})
        ]
        return ", ".join(parts) + (f"; script error: {self.error}" if self.error else "")


def mismatches(expect: Expect, seen: Observed) -> list[str]:
    out = []
    tries = expect.tries if isinstance(expect.tries, tuple) else (expect.tries,)
    if seen.state != expect.state:
        out.append(f"state {seen.state} (expected {expect.state})")
    if seen.tries not in tries:
        out.append(f"tries {seen.tries} (expected {' or '.join(map(str, tries))})")
    for name in ("orders", "stopped", "mutations", "order_state"):
        want = getattr(expect, name)
        if want is not None and getattr(seen, name) != want:
            out.append(f"{name} {getattr(seen, name)} (expected {want})")
    if expect.untouched and seen.touched:
        out.append(f"touched remotely: {seen.touched}")
    out.extend(f"log lacks {text!r}" for text in expect.log if not seen.log_hits.get(text))
    return out


class CellScript:
    def __init__(
        self, cell: Cell, cluster: AirflowCluster, boxes: CellSandboxes, restart: TriggererRestart
    ) -> None:
        assert isinstance(cell.spec, Expect)
        self.cell = cell
        self.expect: Expect = cell.spec
        self.cluster = cluster
        self.boxes = boxes
        self.restart = restart
        self.kind = cell.row.kind
        self.run_id = ""
        self.order_id: str | None = None  # the sensor's / mutation's order (created by the test)
        self.seen = Observed()
        self.started = time.monotonic()

    # ------------------------------------------------------------------ small helpers
    def step(self, text: str) -> None:
        self.seen.steps.append(f"{time.monotonic() - self.started:6.1f}s {text}")

    def wait(self, what: str, check: Callable[[], Any], timeout: float = STEP_TIMEOUT) -> Any:
        result = wait_until(f"{self.cell.key}: {what}", check, timeout, interval=2.0, describe=self.describe)
        self.step(what)
        return result

    def describe(self) -> str:
        with contextlib.suppress(Exception):
            ti = self.ti()
            return f"task: {ti.get('state')} try {ti.get('try_number')}; steps: {self.seen.steps}"
        return f"steps: {self.seen.steps}"

    @property
    def dk_url(self) -> str:
        assert self.boxes.dk is not None
        return self.boxes.dk.url

    @property
    def ez_url(self) -> str:
        assert self.boxes.ez is not None
        return self.boxes.ez.url

    def ti(self) -> dict[str, Any]:
        with GET_LOCK:
            return self.cluster.task_instance(self.cell.dag_id, self.run_id, "t")

    def write(self, what: str, call: Callable[[], Any]) -> Any:
        """One REST write, serialized, retried on a timeout or a 5xx (a 409 after a lost answer is done)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                with WRITE_LOCK:
                    return call()
            except urllib.error.HTTPError as exc:
                if exc.code == 409:
                    self.step(f"{what}: 409 (done already)")
                    return None
                if exc.code < 500 or time.monotonic() > deadline:
                    raise
            except (TimeoutError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
            self.step(f"{what}: retrying")
            time.sleep(2)

    def ti_is(self, states: tuple[str, ...], min_try: int = 1) -> dict[str, Any] | None:
        ti = self.ti()
        return ti if ti.get("state") in states and int(ti.get("try_number") or 0) >= min_try else None

    def dk_orders(self) -> list[dict[str, Any]]:
        return list(admin(self.dk_url, "GET", "orders")["orders"])

    def count(self, url: str, *routes: str) -> int:
        return sum(int(admin(url, "GET", f"requests?route={r}")["count"]) for r in routes)

    def reads(self) -> int:
        if self.kind in ("submit", "run_sensor"):
            return self.count(self.dk_url, *DK_READS)
        return self.count(self.ez_url, "order")

    def ez_order(self) -> dict[str, Any]:
        return dict(admin(self.ez_url, "GET", f"orders/{self.order_id}"))

    def deferrals(self) -> int:
        """How many deferrals of this task the scheduler has processed (its log; apache/airflow#72716)."""
        log = next(p.log_path for p in self.cluster.processes if p.name == "scheduler")
        needle = f"TaskInstance Finished: dag_id={self.cell.dag_id}, task_id=t, run_id={self.run_id}, "
        text = log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if needle in line and "state=deferred" in line)

    def newest_run(self) -> dict[str, Any] | None:
        orders = self.dk_orders()  # newest first
        if self.order_id is not None:
            orders = [o for o in orders if o["order_id"] == self.order_id]
        runs = orders[0]["runs"] if orders else []
        return runs[0] if runs else None

    # ------------------------------------------------------------------ the cell's remote world
    def setup(self) -> dict[str, Any]:
        if self.boxes.dk is not None:
            self.boxes.dk.add_variation(self.cell.kitchen, "r", "v", planned_seconds=0.5, active_seconds=3600)
        if self.kind == "run_sensor":
            assert self.boxes.dk is not None
            token = self.boxes.dk.issue_token()
            request = urllib.request.Request(
                f"{self.dk_url}/v2/order/create/{self.cell.kitchen}/r/v",
                data=b'{"parameters": {}}',
                method="PUT",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self.order_id = str(json.loads(response.read())["order_id"])
        elif self.kind == "lifecycle_sensor":
            self.order_id = str(admin(self.ez_url, "POST", "orders", {"state": "draft"})["uuid"])
        elif self.kind in ("accept", "reject"):
            self.order_id = str(admin(self.ez_url, "POST", "orders", {"state": "submitted"})["uuid"])
        return {"order_id": self.order_id} if self.order_id else {}

    def arm_faults(self) -> None:
        col = self.cell.column.key
        mutation = "acceptOrder" if self.kind == "accept" else "rejectOrder"
        if self.kind in ("accept", "reject") and col in (
            "exec_timeout",
            "clear_running",
            "mark_failed",
            "sigterm",
            "sigkill",
        ):
            admin(self.ez_url, "POST", "faults", {"route": mutation, "delay": SLOW_ANSWER, "apply": True})
        elif col == "lost_answer" and self.kind == "submit":
            admin(self.dk_url, "POST", "faults", {"route": "create_order", "status": 502, "apply": True})
        elif col == "lost_answer":
            admin(self.ez_url, "POST", "faults", {"route": mutation, "status": 502, "apply": True})
        elif col == "customer_cancel":
            admin(self.ez_url, "POST", "faults", {"route": mutation, "status": 503})

    def complete(self) -> None:
        """The awaited remote state arrives: the newest run ends COMPLETED / the order is submitted."""
        if self.kind in ("submit", "run_sensor"):
            run = self.newest_run()
            assert run is not None, "no run to finish"
            admin(self.dk_url, "POST", f"runs/{run['hid']}/finish")
            self.step(f"finished run {run['hid'][:8]}")
        elif self.kind == "lifecycle_sensor":
            admin(self.ez_url, "POST", f"orders/{self.order_id}", {"state": "submitted"})
            self.step("order submitted")

    def under_way(self, try_number: int = 1) -> Any:
        """The try runs on a worker and its remote work is under way (the moment to kill it)."""
        if not self.ti_is(("running",), try_number) or self.ti()["try_number"] != try_number:
            return None
        if self.kind == "submit":
            orders = self.dk_orders()
            run = orders[0]["runs"][0] if orders and orders[0]["runs"] else None
            return len(orders) >= try_number and run is not None and run["status"] == "ACTIVE_SERVING"
        if self.kind in ("accept", "reject"):
            return len(self.ez_order()["mutations"]) >= 1  # applied; its answer is being held back
        return self.reads() >= 1

    def new_order_running(self, count: int) -> bool:
        orders = self.dk_orders()
        return len(orders) >= count and bool(orders[0]["runs"])

    # ------------------------------------------------------------------ actions
    def signal_task(self, sig: signal.Signals) -> None:
        ti_id = str(self.ti()["id"])
        pids = self.wait(
            f"the task process of try {self.ti()['try_number']}", lambda: task_process_pids(ti_id)
        )
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        self.step(f"{sig.name} -> pid {pids}")

    def clear(self) -> None:
        self.write("clear", lambda: self.cluster.clear_task(self.cell.dag_id, self.run_id, "t"))
        self.step("cleared")

    def mark_failed(self) -> None:
        self.write(
            "mark failed", lambda: self.cluster.set_task_state(self.cell.dag_id, self.run_id, "t", "failed")
        )
        self.step("marked failed")

    def wait_deferred(self, count: int) -> None:
        self.wait(f"deferral {count} seen by the scheduler", lambda: self.deferrals() >= count)

    def wait_final(self, min_try: int = 1) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            ti = self.ti_is(FINAL, min_try)
            if ti is None:
                return None
            with GET_LOCK:
                run = self.cluster.dag_run(self.cell.dag_id, self.run_id)
            return ti if run.get("state") in FINAL else None

        return dict(self.wait(f"a final state (try >= {min_try})", final))

    # ------------------------------------------------------------------ the columns
    def col_exec_timeout(self) -> None:
        pass

    def col_lost_answer(self) -> None:
        if self.kind != "submit":
            return  # accept / reject: the task's retry meets the applied mutation by itself
        # the operator adopts the order it finds in the order list; then its run completes
        if self.cell.deferrable:
            self.wait_deferred(1)
        else:
            self.wait("try 1 under way", self.under_way)
        self.complete()

    def col_clear_running(self) -> None:
        self.wait("try 1 under way", self.under_way)
        self.clear()
        self.after_kill(next_try=2)

    def col_sigterm(self) -> None:
        self.wait("try 1 under way", self.under_way)
        before = self.reads()
        self.signal_task(signal.SIGTERM)
        if self.kind in ("run_sensor", "lifecycle_sensor"):
            # on_kill of a sensor does nothing: the try may go on (it reads again) or a new try starts.
            self.wait(
                "the sensor to watch again (same try reading on, or try 2 running)",
                lambda: (
                    self.ti_is(("running",), 2) or (self.ti_is(("running",)) and self.reads() >= before + 2)
                ),
            )
            self.complete()
            return
        self.after_kill(next_try=2)

    def col_sigkill(self) -> None:
        self.wait("try 1 under way", self.under_way)
        self.signal_task(signal.SIGKILL)
        if self.kind in ("submit", "run_sensor", "lifecycle_sensor"):
            self.wait("try 2 running", lambda: self.ti_is(("running",), 2))
            if self.kind == "submit":  # the retry reattaches: let it read the run once
                before = self.reads()
                self.wait("try 2 reading the run", lambda: self.reads() > before)
            self.complete()

    def after_kill(self, next_try: int) -> None:
        """After a clear / SIGTERM of a worker try: let the next try's remote work finish."""
        if self.kind == "submit":
            self.wait(f"order {next_try} with a run", lambda: self.new_order_running(next_try))
            self.complete()
        elif self.kind in ("run_sensor", "lifecycle_sensor"):
            before = self.reads()
            self.wait(
                f"try {next_try} watching",
                lambda: self.ti_is(("running",), next_try) and self.reads() > before,
            )
            self.complete()

    def wait_trigger_polling(self) -> None:
        """Until the trigger reads the API: it runs in a triggerer, so a kill reaches its on_kill (a
        trigger not yet picked up, or between two triggerers, is cancelled without one)."""
        before = self.reads()
        self.wait("the trigger to poll", lambda: self.reads() > before)

    def col_clear_deferred(self) -> None:
        self.wait_deferred(1)
        with self.restart.kill_guard():
            self.wait_trigger_polling()
            self.clear()
            if self.kind == "submit":
                self.wait("order 2 with a run", lambda: self.new_order_running(2))
            else:
                self.wait("try 2 started", lambda: int(self.ti()["try_number"]) >= 2)
        self.wait_deferred(2)
        self.complete()

    def col_mark_failed(self) -> None:
        if self.cell.deferrable:
            self.wait_deferred(1)
            with self.restart.kill_guard():
                self.wait_trigger_polling()
                self.mark_failed()
                self.wait("the task failed", lambda: self.ti_is(("failed",)))
                if self.expect.stopped:
                    with contextlib.suppress(BaseException):
                        self.wait("the trigger's on_kill", self.stopped_enough, SETTLE_TIMEOUT)
            return
        self.wait("try 1 under way", self.under_way)
        self.mark_failed()

    def col_triggerer_restart(self) -> None:
        try:
            self.wait_deferred(1)
        finally:
            self.restart.ready()
        self.wait("the triggerer restart", self.restart.done.is_set)
        if self.restart.error:
            raise RuntimeError(self.restart.error)
        before = self.reads()
        self.wait("the trigger to poll again", lambda: self.reads() > before)
        self.complete()

    def col_clear_success(self) -> None:
        if self.kind in ("submit", "run_sensor", "lifecycle_sensor"):
            if self.cell.deferrable:
                self.wait_deferred(1)
            else:
                self.wait("try 1 under way", self.under_way)
            self.complete()
        self.wait_final(1)
        self.clear()
        if self.kind == "submit":
            self.wait("order 2 with a run", lambda: self.new_order_running(2))
            if self.cell.deferrable:
                self.wait_deferred(2)
            self.complete()

    def col_customer_cancel(self) -> None:
        ti = self.wait("try 1 to fail", lambda: self.ti_is(("up_for_retry", *FINAL)))
        if ti["state"] == "up_for_retry":
            admin(self.ez_url, "POST", f"orders/{self.order_id}", {"state": "cancelled"})
            self.step("the customer cancelled")

    # ------------------------------------------------------------------ run + observe
    def stopped_enough(self) -> bool:
        return self.observe_remote().stopped == self.expect.stopped

    def observe_remote(self) -> Observed:
        seen = Observed()
        if self.boxes.dk is not None:
            orders = self.dk_orders()
            seen.orders = len(orders)
            seen.stopped = sum(1 for o in orders for r in o["runs"] if r["status"] == "STOPPED_SERVING")
            writes = {r: self.count(self.dk_url, r) for r in DK_WRITES}
            creates = self.count(self.dk_url, "create_order")
            if self.kind == "run_sensor" and creates > 1:
                writes["create_order (beyond the test's own)"] = creates - 1
            seen.touched = [f"{n} x{c}" for n, c in writes.items() if c]
        if self.boxes.ez is not None and self.order_id:
            order = self.ez_order()
            seen.order_state = order["state"]
            seen.mutations = len(order["mutations"])
            if self.kind == "lifecycle_sensor":
                sent = {r: self.count(self.ez_url, r) for r in ("acceptOrder", "rejectOrder")}
                seen.touched = [f"{n} x{c}" for n, c in sent.items() if c]
        return seen

    def run(self) -> Observed:
        try:
            conf = self.setup()
            self.arm_faults()
            self.run_id = f"lc-{self.cell.key}"
            self.write(
                "trigger", lambda: self.cluster.trigger_dag(self.cell.dag_id, conf, run_id=self.run_id)
            )
            self.step("triggered")
            getattr(self, f"col_{self.cell.column.key}")()
            self.wait_final(
                2 if self.cell.column.key in ("clear_running", "clear_success", "clear_deferred") else 1
            )
            with contextlib.suppress(BaseException):  # let the remote effects of a kill land
                self.wait("remote effects as expected", lambda: not self.remote_mismatch(), SETTLE_TIMEOUT)
        except BaseException as exc:  # pytest.fail raises an OutcomeException (a BaseException)
            self.seen.error = f"{type(exc).__name__}: {exc}"
            self.step("script error:\n" + traceback.format_exc(limit=3))
        finally:
            with contextlib.suppress(Exception):
                self.observe()
            self.seen.seconds = round(time.monotonic() - self.started, 1)
        return self.seen

    def remote_mismatch(self) -> list[str]:
        remote = self.observe_remote()
        probe = Observed(
            state=self.expect.state,
            tries=self.expect.tries if isinstance(self.expect.tries, int) else self.expect.tries[0],
        )
        for name in ("orders", "stopped", "mutations", "order_state", "touched"):
            setattr(probe, name, getattr(remote, name))
        return mismatches(self.expect, probe)

    def observe(self) -> None:
        remote = self.observe_remote()
        for name in ("orders", "stopped", "mutations", "order_state", "touched"):
            setattr(self.seen, name, getattr(remote, name))
        if self.run_id:
            ti = self.ti()
            self.seen.state = ti.get("state")
            self.seen.tries = int(ti.get("try_number") or 0)
            if self.expect.log:
                text = ""
                for number in range(1, (self.seen.tries or 0) + 1):
                    with contextlib.suppress(Exception):
                        lines = self.cluster.task_log(self.cell.dag_id, self.run_id, "t", number)
                        text += "\n".join(json.dumps(line) for line in lines)
                self.seen.log_hits = {t: (t in text or json.dumps(t)[1:-1] in text) for t in self.expect.log}


def run_matrix(
    cluster: AirflowCluster, boxes: dict[str, CellSandboxes], cells: tuple[Cell, ...] = ACTIVE
) -> dict[str, Observed]:
    """Run every cell's script in its own thread; return what each observed."""
    restart = TriggererRestart(cluster, sum(1 for c in cells if c.column.key == "triggerer_restart"))
    results: dict[str, Observed] = {}
    threads = []
    # The triggerer-restart cells first: they wait for each other, so they must run in the same wave.
    ordered = sorted(cells, key=lambda c: c.column.key != "triggerer_restart")
    slots = threading.BoundedSemaphore(MAX_CONCURRENT_CELLS)
    for cell in ordered:
        script = CellScript(cell, cluster, boxes[cell.key], restart)

        def work(script: CellScript = script) -> None:
            with slots:
                script.started = time.monotonic()
                results[script.cell.key] = script.run()

        thread = threading.Thread(target=work, name=cell.key, daemon=True)
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    return results
