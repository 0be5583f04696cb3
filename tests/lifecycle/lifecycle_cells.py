"""The lifecycle matrix (issue 11): every operator and sensor x every way Airflow can end or restart a try.

This module is the single source of truth of the matrix: the DAG file (``dags/lifecycle_dags.py``) builds
one DAG per applicable cell from it, the driver (``driver.py``) runs each cell's script against a real
Airflow and compares what it observed with :class:`Expect`, and :func:`render_section` writes the table
of ``docs/reliability.md`` (``test_lifecycle_doc.py`` fails when the document and this module differ).

It imports nothing but the standard library: the dag-processor and every task process import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the ``[scheduler] task_instance_heartbeat_timeout`` (and its check interval) of the lifecycle Airflow
HEARTBEAT_TIMEOUT = 30
HEARTBEAT_CHECK_INTERVAL = 5
RETRY_DELAY = 2  # seconds; every cell DAG has retries=1
POLL = 2  # seconds between status reads (poke_interval / poll_interval / trigger polls)
SLOW_ANSWER = 90  # seconds a mutation's answer is held back after it was applied (the kill lands first)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    kind: str  # submit | run_sensor | lifecycle_sensor | accept | reject
    deferrable: bool | None  # None: poke for the process columns, deferrable for the deferred ones


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    how: str  # how the cell's script produces the event (rendered under the table)


ROWS: tuple[Row, ...] = (
    Row("submit_poke", "`SubmitRecipeOrderOperator` (wait, poke)", "submit", False),
    Row("submit_deferred", "`SubmitRecipeOrderOperator` (wait, deferred)", "submit", True),
    Row("run_sensor", "`RecipeOrderRunSensor`", "run_sensor", None),
    Row("lifecycle_sensor", "`OrderLifecycleSensor`", "lifecycle_sensor", None),
    Row("accept", "`AcceptOrderOperator`", "accept", False),
    Row("reject", "`RejectOrderOperator`", "reject", False),
)

COLUMNS: tuple[Column, ...] = (
    Column(
        "exec_timeout",
        "`execution_timeout` + retries",
        "`execution_timeout` shorter than the wait (or than the slow mutation answer); retries=1",
    ),
    Column(
        "clear_running",
        "clear while running",
        "REST `clearTaskInstances` while the try runs on a worker (mid-request for accept/reject)",
    ),
    Column(
        "clear_deferred",
        "clear while deferred",
        "REST `clearTaskInstances` once the scheduler has seen the deferral",
    ),
    Column(
        "mark_failed",
        "mark failed",
        "REST `PATCH .../taskInstances/{task}` `new_state=failed` while the try runs (or waits deferred)",
    ),
    Column(
        "sigterm",
        "SIGTERM of the task process",
        "SIGTERM to the supervisor's child titled `airflow worker -- <ti id>`",
    ),
    Column(
        "sigkill",
        "SIGKILL of the task process",
        "SIGKILL to that process (a worker crash); "
        f"`task_instance_heartbeat_timeout` {HEARTBEAT_TIMEOUT} s, checked every {HEARTBEAT_CHECK_INTERVAL} s",
    ),
    Column(
        "triggerer_restart",
        "triggerer restart while deferred",
        "the `airflow triggerer` process group stopped (SIGTERM) and started again; one restart for all cells",
    ),
    Column(
        "clear_success",
        "clear after success",
        "REST `clearTaskInstances` of the succeeded task",
    ),
    Column(
        "lost_answer",
        "retry after a lost answer",
        "sandbox fault `apply=True, status=502`: the create / mutation is applied, its answer lost "
        "(accept/reject: hook retries off, so the task's retry meets it)",
    ),
    Column(
        "customer_cancel",
        "customer cancellation before the send",
        "try 1's reject never reaches ezCater (503, hook retries off); the customer cancels the order "
        "before try 2 sends",
    ),
)


@dataclass(frozen=True)
class Expect:
    """What a cell must end with. ``None`` fields are not checked for that cell."""

    state: str  # the task instance's final state
    tries: int | tuple[int, ...]  # its try_number at the end (a clear starts a new try)
    orders: int | None = None  # DataKitchen orders in the cell's sandbox (the sensor cells create one)
    stopped: int | None = None  # DataKitchen runs that ended STOPPED_SERVING
    mutations: int | None = None  # acceptOrder / rejectOrder calls that changed the ezCater order
    order_state: str | None = None  # the ezCater order's final state
    untouched: bool = False  # no stop / resume / accept / reject request, no create but the test's own
    log: tuple[str, ...] = ()  # texts the task's log must hold (any try)
    story: str = ""  # why, in words

    def summary(self) -> str:
        parts: list[str] = []
        if self.orders is not None:
            parts.append(f"{self.orders} order{'s' if self.orders != 1 else ''}")
        if self.stopped is not None:
            parts.append(f"{self.stopped} stopped")
        if self.mutations is not None:
            parts.append(f"applied {self.mutations}x")
        if self.order_state is not None:
            parts.append(f"order {self.order_state}")
        if self.untouched:
            parts.append("nothing touched")
        parts.append(f"**{self.state}**")
        tries = self.tries if isinstance(self.tries, tuple) else (self.tries,)
        parts.append(" or ".join(str(t) for t in tries) + (" try" if tries == (1,) else " tries"))
        return " · ".join(parts)


@dataclass(frozen=True)
class NA:
    reason: str


@dataclass(frozen=True)
class Cell:
    row: Row
    column: Column
    spec: Expect | NA
    deferrable: bool = False
    execution_timeout: float | None = None  # seconds
    retry_delay: float = RETRY_DELAY
    conn_extra: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.row.key}__{self.column.key}"

    @property
    def dag_id(self) -> str:
        return f"lifecycle__{self.key}"

    @property
    def conn_id(self) -> str:
        return f"lc_{self.key}"

    @property
    def kitchen(self) -> str:
        return f"k-{self.key}".replace("_", "-")


# ---------------------------------------------------------------------------------------------- the cells
_NOT_DEFERRABLE = NA("the operator never defers")
_NO_TRIGGER = NA("no deferral, no trigger")
_DEFERRED_NO_PROCESS = NA("a deferred try has no task process (the worker part is one create and one read)")
_READS_ONLY = NA("reads only: a lost answer is a failed read, retried inside the hook (fault matrix above)")
_REJECT_ONLY = NA("only a reject can take a customer's cancellation for its own doing")
_NO_CLEAR_RUNNING = NA("the try runs on a worker for one create and one read, then waits deferred")


#: Airflow 3.3.2 race: when a trigger fires before the scheduler has processed the deferring process's
#: exit, the scheduler counts the resumed try as failed and retries it (one more try number); the retry
#: finds the run completed within the same attempt and succeeds with it, no second order.
_RESUME_RACE = (
    " (Airflow may count one more try when the trigger fires before the scheduler processed the "
    "deferral; that retry finds the completed run: still no extra order)"
)


def _submit(column: str, deferred: bool) -> Expect | NA:
    lost = Expect(
        "success",
        (1, 2) if deferred else 1,
        orders=1,
        stopped=0,
        log=("Found the order this request created",),
        story="the create answer is lost after DataKitchen made the order: the operator finds it in the "
        "kitchen's order list and carries on with it; one order" + (_RESUME_RACE if deferred else ""),
    )
    after_success = Expect(
        "success",
        (2, 3) if deferred else 2,
        orders=2,
        stopped=0,
        story="a cleared task starts clean and orders again" + (_RESUME_RACE if deferred else ""),
    )
    if not deferred:
        return {
            "exec_timeout": Expect(
                "failed",
                2,
                orders=2,
                stopped=2,
                story="each try is killed at its timeout, on_kill stops that try's run, try 2 orders again",
            ),
            "clear_running": Expect(
                "success",
                2,
                orders=2,
                stopped=1,
                story="the killed try's on_kill stops run 1, the new try orders again; success once run 2 completes",
            ),
            "clear_deferred": _NOT_DEFERRABLE,
            "mark_failed": Expect(
                "failed", 1, orders=1, stopped=1, story="on_kill stops the run; no second try"
            ),
            "sigterm": Expect(
                "success",
                2,
                orders=2,
                stopped=1,
                story="on_kill stops the run, the try fails retryably, try 2 orders again",
            ),
            "sigkill": Expect(
                "success",
                2,
                orders=1,
                stopped=0,
                story="the run keeps going, Airflow detects the dead task, the retry reattaches to the same order",
            ),
            "triggerer_restart": _NOT_DEFERRABLE,
            "clear_success": after_success,
            "lost_answer": lost,
            "customer_cancel": _REJECT_ONLY,
        }[column]
    return {
        "exec_timeout": Expect(
            "failed",
            2,
            orders=2,
            stopped=2,
            story="the operator bounds the deferred wait by execution_timeout; at expiry the run is stopped "
            "and the try fails retryably; try 2 orders again",
        ),
        "clear_running": _NO_CLEAR_RUNNING,
        "clear_deferred": Expect(
            "success",
            (2, 3),
            orders=2,
            stopped=1,
            story="the trigger's on_kill stops run 1, the new try orders again" + _RESUME_RACE,
        ),
        "mark_failed": Expect(
            "failed",
            1,
            orders=1,
            stopped=1,
            story="mark failed while deferred: the trigger's on_kill stops the run",
        ),
        "sigterm": _DEFERRED_NO_PROCESS,
        "sigkill": _DEFERRED_NO_PROCESS,
        "triggerer_restart": Expect(
            "success", (1, 2), orders=1, stopped=0, story="the wait resumes" + _RESUME_RACE
        ),
        "clear_success": after_success,
        "lost_answer": lost,
        "customer_cancel": _REJECT_ONLY,
    }[column]


def _sensor(column: str) -> Expect | NA:
    watch = "the next try watches again and succeeds when the awaited state comes"
    return {
        "exec_timeout": Expect(
            "failed",
            2,
            untouched=True,
            story="the state never comes: failed after 2 tries, run / order untouched",
        ),
        "clear_running": Expect("success", 2, untouched=True, story=watch),
        "clear_deferred": Expect("success", 2, untouched=True, story=watch),
        "mark_failed": Expect("failed", 1, untouched=True, story="failed, nothing touched remotely"),
        "sigterm": Expect(
            "success",
            (1, 2),
            untouched=True,
            story="Airflow's SIGTERM handler runs on_kill (a no-op for a sensor); the try goes on or the "
            "next one watches again",
        ),
        "sigkill": Expect("success", 2, untouched=True, story=watch),
        "triggerer_restart": Expect("success", 1, untouched=True, story="the wait resumes"),
        "clear_success": Expect("success", 2, untouched=True, story="the cleared try watches again"),
        "lost_answer": _READS_ONLY,
        "customer_cancel": _REJECT_ONLY,
    }[column]


def _mutation(column: str, kind: str) -> Expect | NA:
    done = "accepted" if kind == "accept" else "rejected"
    verb = "accept" if kind == "accept" else "reject"
    again = Expect(
        "success",
        2,
        mutations=1,
        order_state=done,
        story="the mutation applied once (its answer slow); the next try meets INVALID_STATE_TRANSITION and "
        "counts the earlier try's record",
    )
    cells: dict[str, Expect | NA] = {
        "exec_timeout": again,
        "clear_running": Expect(
            "failed",
            2,
            mutations=1,
            order_state=done,
            log=(f"Sorry, we were unable to {verb} this order.", "before the task was cleared"),
            story="a clear, also of a running task, starts a new attempt (Airflow raises max_tries): the "
            "killed try's send applied, but a cleared task starts clean, so ezCater's refusal fails it and "
            "the message says that an earlier attempt sent the mutation",
        ),
        "clear_deferred": _NOT_DEFERRABLE,
        "mark_failed": Expect(
            "failed", 1, mutations=1, order_state=done, story="failed; the order as ezCater left it"
        ),
        "sigterm": Expect(
            "success",
            (1, 2),
            mutations=1,
            order_state=done,
            story="Airflow's SIGTERM handler runs on_kill (nothing to stop for a mutation) and the try goes "
            "on until its answer arrives; if the supervisor kills it first, the retry counts its send",
        ),
        "sigkill": again,
        "triggerer_restart": _NO_TRIGGER,
        "clear_success": Expect(
            "failed",
            2,
            mutations=1,
            order_state=done,
            log=(f"Sorry, we were unable to {verb} this order.",),
            story="a cleared task starts clean: the old record does not count, the API's refusal fails it",
        ),
        "lost_answer": Expect(
            "success", 2, mutations=1, order_state=done, story="success on try 2, the mutation applied once"
        ),
        "customer_cancel": _REJECT_ONLY,
    }
    if kind == "reject":
        cells["customer_cancel"] = Expect(
            "failed",
            2,
            mutations=0,
            order_state="cancelled",
            story="the cancellation is not the task's own doing: the reject fails",
        )
    return cells[column]


def _cell(row: Row, column: Column) -> Cell:
    if row.kind == "submit":
        spec = _submit(column.key, bool(row.deferrable))
    elif row.kind in ("run_sensor", "lifecycle_sensor"):
        spec = _sensor(column.key)
    else:
        spec = _mutation(column.key, row.kind)
    deferrable = bool(row.deferrable) if row.deferrable is not None else column.key in _DEFERRED_COLUMNS
    timeout = None
    if column.key == "exec_timeout":
        timeout = 8.0 if row.kind in ("accept", "reject") else 15.0
    conn_extra: dict[str, object] = {}
    retry_delay: float = RETRY_DELAY
    if row.kind in ("accept", "reject") and column.key in ("lost_answer", "customer_cancel"):
        conn_extra["max_retries"] = 0
    if column.key == "customer_cancel":
        retry_delay = 10.0  # time for the customer to cancel between the tries
    return Cell(row, column, spec, deferrable, timeout, retry_delay, conn_extra)


_DEFERRED_COLUMNS = ("clear_deferred", "triggerer_restart")

CELLS: tuple[Cell, ...] = tuple(_cell(row, column) for row in ROWS for column in COLUMNS)
#: the cells that run (not n/a)
ACTIVE: tuple[Cell, ...] = tuple(c for c in CELLS if isinstance(c.spec, Expect))


# ---------------------------------------------------------------------------------------------- rendering
SECTION_START = "<!-- lifecycle-matrix:start (rendered from tests/lifecycle/lifecycle_cells.py) -->"
SECTION_END = "<!-- lifecycle-matrix:end -->"


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_section() -> str:
    """The lifecycle part of ``docs/reliability.md`` (between and including the two markers)."""
    notes: list[str] = []
    lines = [
        SECTION_START,
        "## Lifecycle: kills, clears and restarts against a real Airflow",
        "",
        "Each cell is one DAG (`tests/lifecycle/dags/`) run by a real Airflow that the test starts "
        "(api-server, scheduler, dag-processor, triggerer; LocalExecutor, PostgreSQL), each cell with its own "
        "pair of sandboxes, all cells at once; a small script per cell triggers the run, produces the "
        "column's event through the REST API or a signal, and waits for the outcome. `make test-lifecycle` "
        "runs it (`pytest -m lifecycle`); each cell's check is a test `tests/lifecycle/test_lifecycle_matrix.py::"
        "test_cell[<row>__<column>]`. Task DAGs: `retries=1`, "
        f"`retry_delay` {RETRY_DELAY} s, status reads every {POLL} s.",
        "",
        "Reading a cell: orders created / runs stopped (DataKitchen), times the mutation changed the order "
        "and the order's final state (ezCater), *nothing touched* = no stop, resume, accept or reject "
        "request (and no create but the test's own), then the task's final state and its try number.",
        "",
        "| | " + " | ".join(c.label for c in COLUMNS) + " |",
        "| --- | " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    by_key = {(c.row.key, c.column.key): c for c in CELLS}
    for row in ROWS:
        line = [row.label]
        for column in COLUMNS:
            spec = by_key[(row.key, column.key)].spec
            if isinstance(spec, NA):
                if spec.reason not in notes:
                    notes.append(spec.reason)
                line.append(f"n/a[^lc{notes.index(spec.reason) + 1}]")
            else:
                line.append(_esc(spec.summary()))
        lines.append("| " + " | ".join(line) + " |")
    lines.append("")
    lines.extend(f"[^lc{i}]: {_esc(note)}" for i, note in enumerate(notes, start=1))
    lines += ["", "How each column is produced:", ""]
    lines.extend(f"- **{c.label}**: {_esc(c.how)}." for c in COLUMNS)
    lines += ["", "Why each cell ends so:", ""]
    for cell in ACTIVE:
        assert isinstance(cell.spec, Expect)
        lines.append(f"- {cell.row.label} x {cell.column.label}: {_esc(cell.spec.story)}.")
    lines += ["", SECTION_END, ""]
    return "\n".join(lines)


def section_of(text: str) -> str | None:
    """The lifecycle section of a document's text (markers included), or None when it has none."""
    start = text.find(SECTION_START)
    end = text.find(SECTION_END)
    if start < 0 or end < start:
        return None
    return text[start : end + len(SECTION_END)] + "\n"
