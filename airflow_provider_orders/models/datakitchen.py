"""DataKitchen values: order run statuses, an order run read once from the API's dict, and the words
messages use for an order.

An *order* asks for a recipe variation to run (the API's "serving book", id ``order_id`` /
``serving_hid`` in the create answer); an *order run* is one execution of it (a "serving", id ``hid``, or
``serving_hid`` in some answers). Statuses are read leniently: an unknown status is kept as text and
counts as "still running", never as an end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class OrderRunStatus(str, Enum):
    """DataKitchen order run (``serving``) ``status``, with what each one means for a waiting task."""

    PLANNED_SERVING = "PLANNED_SERVING"
    ACTIVE_SERVING = "ACTIVE_SERVING"
    COMPLETED_SERVING = "COMPLETED_SERVING"
    SERVING_ERROR = "SERVING_ERROR"
    STOPPED_SERVING = "STOPPED_SERVING"
    #: The run was superseded by a resume: the order's newest run carries on.
    SERVING_RERAN = "SERVING_RERAN"

    @classmethod
    def parse(cls, value: Any) -> OrderRunStatus | None:
        """The status of an API value (any casing, padded); None for a missing or unknown one."""
        if not value:
            return None
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            return None

    @property
    def is_terminal(self) -> bool:
        """The run will not change any more (it may have been superseded: see :attr:`is_superseded`)."""
        return self in TERMINAL_RUN_STATUSES

    @property
    def is_failed(self) -> bool:
        """The run ended without success: the recipe failed or was stopped."""
        return self in FAILED_RUN_STATUSES

    @property
    def is_superseded(self) -> bool:
        """A resume replaced this run: follow the order's newest run instead."""
        return self is OrderRunStatus.SERVING_RERAN


#: A run in one of these will not change any more.
TERMINAL_RUN_STATUSES: frozenset[OrderRunStatus] = frozenset(
    {
        OrderRunStatus.COMPLETED_SERVING,
        OrderRunStatus.SERVING_ERROR,
        OrderRunStatus.STOPPED_SERVING,
        OrderRunStatus.SERVING_RERAN,
    }
)
#: The statuses a watcher of finished runs fires for unless told otherwise: runs that complete.
DEFAULT_FINISHED_STATUSES: tuple[str, ...] = (OrderRunStatus.COMPLETED_SERVING.value,)
#: A run in one of these did not succeed. SERVING_RERAN is terminal but not failed: a resume superseded it.
FAILED_RUN_STATUSES: frozenset[OrderRunStatus] = frozenset(
    {OrderRunStatus.SERVING_ERROR, OrderRunStatus.STOPPED_SERVING}
)


def _text(value: Any) -> str | None:
    """A non-empty string of an API value, else None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class OrderRun:
    """One order run as the API described it, parsed once.

    :param id: the run id (``hid``, or ``serving_hid`` in some answers).
    :param order_id: the order the run belongs to, when the answer names it.
    :param status: the parsed status; None while the API sends none or one this provider does not know.
    :param status_text: the status as sent (upper-cased), also when it is unknown.
    :param message: DataKitchen's own text about the run (``orderrun_status``).
    """

    id: str | None
    order_id: str | None = None
    status: OrderRunStatus | None = None
    status_text: str | None = None
    message: str | None = None

    @classmethod
    def from_api(cls, run: Mapping[str, Any]) -> OrderRun:
        """A run from a ``servings[]`` entry of ``/v2/order/servings`` or ``/v2/order/details``."""
        raw = _text(run.get("status"))
        return cls(
            id=_text(run.get("hid")) or _text(run.get("serving_hid")),
            order_id=_text(run.get("order_id")) or _text(run.get("serving_book_hid")),
            status=OrderRunStatus.parse(raw),
            status_text=raw.upper() if raw else None,
            message=_text(run.get("orderrun_status")),
        )

    @property
    def is_terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal

    @property
    def is_failed(self) -> bool:
        return self.status is not None and self.status.is_failed

    @property
    def is_superseded(self) -> bool:
        return self.status is not None and self.status.is_superseded

    @property
    def has_ended(self) -> bool:
        """Completed or failed: terminal and not superseded by a resume."""
        return self.is_terminal and not self.is_superseded


def newest_run(servings: Any) -> OrderRun | None:
    """The newest run of a ``servings`` list (the API lists runs newest first); None before the first."""
    runs = runs_of(servings)
    return runs[0] if runs else None


def runs_of(servings: Any) -> list[OrderRun]:
    """Every run of a ``servings`` list, in the API's order (newest first); junk entries are skipped."""
    if not isinstance(servings, list):
        return []
    return [OrderRun.from_api(s) for s in servings if isinstance(s, Mapping)]


# ------------------------------------------------------------------------------------------ time


def epoch_seconds(value: Any) -> float | None:
    """Epoch seconds of an API time: epoch milliseconds (DataKitchen's ``timings``), epoch seconds, a
    numeric string, or an ISO-8601 text (naive means UTC); None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    if not isinstance(value, (int, float)) or value != value or value <= 0:
        return None
    # Epoch milliseconds pass 1e11 in 1973; epoch seconds will not before the year 5138.
    return float(value) / 1000.0 if value > 1e11 else float(value)


def iso_utc(epoch: float | None) -> str | None:
    """``2026-12-01T10:00:00.000000+00:00`` for epoch seconds; None for None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def _timings(run: Mapping[str, Any]) -> tuple[float | None, float | None]:
    timings = run.get("timings")
    timings = timings if isinstance(timings, Mapping) else {}
    start = timings.get("start-time", timings.get("start_time", run.get("start_time")))
    end = timings.get("end-time", timings.get("end_time", run.get("end_time")))
    return epoch_seconds(start), epoch_seconds(end)


# ------------------------------------------------------------------------------------------ order list


def _first_text(entry: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        text = _text(entry.get(key))
        if text is not None:
            return text
    return None


@dataclass(frozen=True)
class ListedOrder:
    """One order of a kitchen's order list (``GET /v2/order/status/{kitchen}``).

    The list's exact shape is not documented; this reads the variants public clients show. A field the
    answer lacks is None (``overrides`` None means "not listed", not "no overrides").
    """

    id: str
    recipe: str | None = None
    variation: str | None = None
    overrides: dict[str, Any] | None = None
    created_at: float | None = None
    created_by: str | None = None
    status_text: str | None = None

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> ListedOrder | None:
        order_id = _first_text(entry, "hid", "order_id", "serving_book_hid", "id")
        if order_id is None:
            return None
        overrides = next(
            (entry[k] for k in ("variable_overrides", "parameters", "overrides") if k in entry), None
        )
        created = next(
            (entry[k] for k in ("created_time", "created-time", "create_time", "created_at") if k in entry),
            None,
        )
        status = _first_text(entry, "order-status", "order_status", "status")
        return cls(
            id=order_id,
            recipe=_first_text(entry, "recipe_name", "recipe"),
            variation=_first_text(entry, "variation_name", "variation"),
            overrides=dict(overrides) if isinstance(overrides, Mapping) else None,
            created_at=epoch_seconds(created),
            created_by=_first_text(entry, "created_by", "created-by", "user", "username"),
            status_text=status.upper() if status else None,
        )


@dataclass(frozen=True)
class ListedRun:
    """One order run of a kitchen's order list, with what its order asked to run and when it ended."""

    id: str
    order_id: str | None
    recipe: str | None
    variation: str | None
    status: OrderRunStatus | None
    status_text: str | None
    started_at: float | None
    finished_at: float | None
    message: str | None = None

    @classmethod
    def from_api(cls, entry: Mapping[str, Any], order: ListedOrder | None = None) -> ListedRun | None:
        run = OrderRun.from_api(entry)
        if run.id is None:
            return None
        started, finished = _timings(entry)
        return cls(
            id=run.id,
            order_id=run.order_id or (order.id if order else None),
            recipe=_first_text(entry, "recipe_name", "recipe") or (order.recipe if order else None),
            variation=_first_text(entry, "variation_name", "variation")
            or (order.variation if order else None),
            status=run.status,
            status_text=run.status_text,
            started_at=started,
            finished_at=finished,
            message=run.message,
        )

    @property
    def has_ended(self) -> bool:
        """Completed or failed: terminal and not superseded by a resume."""
        return self.status is not None and self.status.is_terminal and not self.status.is_superseded


def _order_entries(body: Any) -> list[Mapping[str, Any]]:
    entries = body.get("orders") if isinstance(body, Mapping) else body
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []


def listed_orders(body: Any) -> list[ListedOrder]:
    """The orders of an order-list answer (``{"orders": [...]}`` or a bare list); junk is skipped."""
    orders = (ListedOrder.from_api(e) for e in _order_entries(body))
    return [o for o in orders if o is not None]


def listed_runs(body: Any) -> list[ListedRun]:
    """The runs of an order-list answer: its top-level ``servings`` and any nested in its orders, each
    once, newest start first."""
    seen: dict[str, ListedRun] = {}

    def add(entries: Any, order: ListedOrder | None) -> None:
        if not isinstance(entries, list):
            return
        for entry in entries:
            if isinstance(entry, Mapping):
                run = ListedRun.from_api(entry, order)
                if run is not None and run.id not in seen:
                    seen[run.id] = run

    if isinstance(body, Mapping):
        add(body.get("servings"), None)
    for entry in _order_entries(body):
        add(entry.get("servings"), ListedOrder.from_api(entry))
    return sorted(seen.values(), key=lambda r: r.started_at or 0.0, reverse=True)


# ------------------------------------------------------------------------------------------ lost orders


def canonical_json(value: Any) -> str:
    """Overrides as comparable text: keys sorted, no spaces, non-JSON values as their ``str``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class LostOrderQuery:
    """What a create whose answer was lost asked for, to find the order it made in the order list.

    :param overrides: the overrides as sent (with the reference variable, if one was set).
    :param created_after: / :param created_before: the window (epoch seconds) the order must have been
        created in: from just before the request was sent to the lookup, widened for clock skew.
    :param created_by: the connection's user; orders listed as created by someone else never match.
    :param reference_variable: the override carrying this request's unique reference, if opted in.
    """

    recipe: str
    variation: str
    overrides: Mapping[str, Any]
    created_after: float
    created_before: float
    created_by: str | None = None
    reference_variable: str | None = None

    @property
    def reference(self) -> str | None:
        if not self.reference_variable:
            return None
        value = self.overrides.get(self.reference_variable)
        return str(value) if value is not None else None


def match_lost_order(orders: list[ListedOrder], query: LostOrderQuery) -> tuple[list[ListedOrder], bool]:
    """The listed orders that may be the one ``query``'s create made, and whether the list could tell.

    An order matches when nothing the list shows contradicts the query: same recipe and variation,
    created inside the window, by the same user, and with the same overrides. With a reference variable
    the reference alone identifies the order, but only an order whose overrides are listed can show it:
    when the list shows no overrides at all, the lookup is inconclusive (``False``). Without one, two
    orders of the same variation with the same overrides in the same seconds cannot be told apart; the
    caller adopts only a single match.
    """
    reference = query.reference
    sent = canonical_json(dict(query.overrides))
    if reference is not None and orders and all(o.overrides is None for o in orders):
        return [], False
    matches = []
    for order in orders:
        if order.recipe is not None and order.recipe != query.recipe:
            continue
        if order.variation is not None and order.variation != query.variation:
            continue
        if (
            order.created_at is not None
            and not query.created_after <= order.created_at <= query.created_before
        ):
            continue
        if (
            query.created_by
            and order.created_by
            and order.created_by.strip().lower() != query.created_by.strip().lower()
        ):
            continue
        if reference is not None:
            assert query.reference_variable is not None
            if order.overrides is None or str(order.overrides.get(query.reference_variable)) != reference:
                continue
        elif order.overrides is not None and canonical_json(order.overrides) != sent:
            continue
        matches.append(order)
    return matches, True


# ------------------------------------------------------------------------------------------ run report

#: What the task log shows of a failed run at most: lines per failing node, characters per line.
STORY_LINES_PER_NODE = 20
STORY_LINE_CHARS = 400
#: At most this many test names in ``order_run_summary`` per list.
SUMMARY_TEST_NAMES = 10

_TEST_LINE = re.compile(r"^\s*(PASSED|PASS|WARNING|WARN|FAILED|FAIL|ERROR|LOG)\s*:?\s+(.+?)\s*$", re.I)
_NODE_LINE = re.compile(r"^\s*Node\s*:\s*(.+?)\s*$", re.I)
_TOTALS_LINE = re.compile(r"(\d+)\s+passed\W+(\d+)\s+warnings?\W+(\d+)\s+failed", re.I)
_STATUS_WORDS = {"PASS": "PASSED", "WARN": "WARNING", "FAIL": "FAILED", "ERROR": "FAILED"}


@dataclass(frozen=True)
class TestResult:
    """One data test of a run: its node, name, ``PASSED`` / ``WARNING`` / ``FAILED`` (or as sent), text."""

    __test__ = False  # not a pytest class

    node: str | None
    name: str
    status: str
    message: str | None = None

    def describe(self) -> str:
        where = f"{self.node}/" if self.node else ""
        return f"{where}{self.name}" + (f": {self.message}" if self.message else "")


def _status_word(value: Any) -> str:
    word = str(value or "").strip().upper()
    return _STATUS_WORDS.get(word, word) or "UNKNOWN"


def parse_test_results(value: Any) -> tuple[tuple[TestResult, ...], dict[str, int] | None]:
    """The tests of a run's ``testresults``: a text report (``Node: n`` blocks of ``FAILED: name -
    message`` lines, then ``Totals: p passed, w warnings, f failed``) or a JSON list of
    ``{node, name|test, status|result, message}``. Returns the tests and the report's own totals, if any."""
    if isinstance(value, Mapping):
        value = value.get("tests", value.get("results"))
    if isinstance(value, list):
        tests = []
        for entry in value:
            if not isinstance(entry, Mapping):
                continue
            name = _first_text(entry, "name", "test", "test_name")
            if name is None:
                continue
            tests.append(
                TestResult(
                    node=_first_text(entry, "node", "node_name"),
                    name=name,
                    status=_status_word(entry.get("status", entry.get("result"))),
                    message=_first_text(entry, "message", "description", "detail"),
                )
            )
        return tuple(tests), None
    if not isinstance(value, str):
        return (), None
    node: str | None = None
    parsed: list[TestResult] = []
    totals: dict[str, int] | None = None
    for line in value.splitlines():
        if match := _NODE_LINE.match(line):
            node = match.group(1)
        elif match := _TEST_LINE.match(line):
            name, _, message = match.group(2).partition(" - ")
            parsed.append(
                TestResult(
                    node, name.strip().rstrip(":"), _status_word(match.group(1)), message.strip() or None
                )
            )
        elif match := _TOTALS_LINE.search(line):
            passed, warnings, failed = (int(g) for g in match.groups())
            totals = {"passed": passed, "warnings": warnings, "failed": failed}
    return tuple(parsed), totals


@dataclass(frozen=True)
class LogLine:
    """One line of a run's log (``log.lines[]``)."""

    at: str | None
    node: str | None
    level: str | None
    message: str

    @classmethod
    def from_api(cls, entry: Any) -> LogLine | None:
        if isinstance(entry, str):
            return cls(None, None, None, entry) if entry.strip() else None
        if not isinstance(entry, Mapping):
            return None
        message = _first_text(entry, "message", "msg", "text")
        if message is None:
            return None
        level = _first_text(entry, "level", "severity", "type")
        return cls(
            at=_first_text(entry, "datetime", "time", "timestamp"),
            node=_first_text(entry, "node", "node_name"),
            level=level.upper() if level else None,
            message=message,
        )

    @property
    def is_error(self) -> bool:
        return self.level in ("ERROR", "CRITICAL", "FATAL")

    def render(self) -> str:
        text = (
            self.message if len(self.message) <= STORY_LINE_CHARS else self.message[:STORY_LINE_CHARS] + " …"
        )
        head = " ".join(p for p in (self.at, self.level) if p)
        return f"{head}  {text}" if head else text


def _log_lines(serving: Mapping[str, Any]) -> list[LogLine]:
    log = serving.get("log", serving.get("logs"))
    if isinstance(log, Mapping):
        log = log.get("lines", log.get("log"))
    if isinstance(log, str):
        log = log.splitlines()
    if not isinstance(log, list):
        return []
    lines = (LogLine.from_api(e) for e in log)
    return [line for line in lines if line is not None]


@dataclass(frozen=True)
class OrderRunReport:
    """What happened in one run: its status, timings, log and data tests (``/v2/order/details`` with
    ``logs`` and ``testresults``), reduced to what a task log and an XCom can carry."""

    run: OrderRun
    recipe: str | None
    variation: str | None
    started_at: float | None
    finished_at: float | None
    log: tuple[LogLine, ...]
    tests: tuple[TestResult, ...]
    totals: dict[str, int] | None = None

    @classmethod
    def from_api(cls, serving: Mapping[str, Any]) -> OrderRunReport:
        started, finished = _timings(serving)
        tests, totals = parse_test_results(serving.get("testresults", serving.get("test_results")))
        return cls(
            run=OrderRun.from_api(serving),
            recipe=_first_text(serving, "recipe_name", "recipe"),
            variation=_first_text(serving, "variation_name", "variation"),
            started_at=started,
            finished_at=finished,
            log=tuple(_log_lines(serving)),
            tests=tests,
            totals=totals,
        )

    def tests_with(self, status: str) -> list[TestResult]:
        return [t for t in self.tests if t.status == status]

    @property
    def test_counts(self) -> dict[str, int]:
        """``{passed, warnings, failed, total}``: from the tests read, else the report's own totals."""
        if self.tests:
            counts = {
                "passed": len(self.tests_with("PASSED")),
                "warnings": len(self.tests_with("WARNING")),
                "failed": len(self.tests_with("FAILED")),
            }
        else:
            counts = dict(self.totals or {"passed": 0, "warnings": 0, "failed": 0})
        counts["total"] = counts["passed"] + counts["warnings"] + counts["failed"]
        return counts

    @property
    def failing_nodes(self) -> list[str]:
        """Nodes with an error line in the log, else nodes of failed tests; in the order they failed."""
        nodes = [line.node for line in self.log if line.is_error and line.node]
        if not nodes:
            nodes = [t.node for t in self.tests_with("FAILED") if t.node]
        return list(dict.fromkeys(nodes))

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 3)

    def headline(self) -> str:
        """One line for an exception: the failing node(s) and the first failed test."""
        parts = []
        nodes = self.failing_nodes
        if nodes:
            parts.append("failing node " + ", ".join(f"'{n}'" for n in nodes))
        failed = self.tests_with("FAILED")
        if failed:
            first = failed[0]
            more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
            text = f": {first.message}" if first.message else ""
            parts.append(f"failed test '{first.name}'{text}{more}")
        return "; ".join(parts)

    def story(self) -> list[str]:
        """The task-log lines about a failed run: per failing node its last log lines, then the failed
        and warning tests. Bounded: :data:`STORY_LINES_PER_NODE` lines per node, each cut at
        :data:`STORY_LINE_CHARS` characters."""
        lines: list[str] = []
        nodes = self.failing_nodes or ([""] if self.log else [])
        for node in nodes:
            own = [line for line in self.log if (line.node or "") == node] or list(self.log)
            tail = own[-STORY_LINES_PER_NODE:]
            skipped = len(own) - len(tail)
            label = f"node '{node}'" if node else "the run"
            more = f" (last {len(tail)} of {len(own)})" if skipped else ""
            lines.append(f"Log of {label}{more}:")
            lines.extend(f"    {line.render()}" for line in tail)
        for status in ("FAILED", "WARNING"):
            tests = self.tests_with(status)
            if tests:
                lines.append(f"{status.capitalize()} tests ({len(tests)}):")
                lines.extend(f"    {t.describe()[:STORY_LINE_CHARS]}" for t in tests[:STORY_LINES_PER_NODE])
                if len(tests) > STORY_LINES_PER_NODE:
                    lines.append(f"    … and {len(tests) - STORY_LINES_PER_NODE} more")
        return lines

    def summary(self, order_id: str | None) -> dict[str, Any]:
        """The XCom ``order_run_summary``: small, JSON-ready, no log text and no variable values."""
        return {
            "order_id": order_id or self.run.order_id,
            "order_run_id": self.run.id,
            "status": self.run.status_text,
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "tests": self.test_counts,
            "failed_tests": [t.name for t in self.tests_with("FAILED")][:SUMMARY_TEST_NAMES],
            "warning_tests": [t.name for t in self.tests_with("WARNING")][:SUMMARY_TEST_NAMES],
        }


def created_order_id(answer: Mapping[str, Any]) -> str | None:
    """The new order's id in a create answer: ``order_id``, or ``serving_hid`` as some examples show."""
    return _text(answer.get("order_id")) or _text(answer.get("serving_hid"))


def recipe_target(kitchen: str, recipe: str, variation: str) -> str:
    """``kitchen 'k', recipe 'r', variation 'v'``: what an order asks to run, in messages."""
    return f"kitchen '{kitchen}', recipe '{recipe}', variation '{variation}'"


def describe_order(
    kitchen: str,
    order_id: str | None,
    *,
    recipe: str | None = None,
    variation: str | None = None,
    order_run_id: str | None = None,
) -> str:
    """``DataKitchen order 'o' (kitchen 'k', recipe 'r', variation 'v', order run 'x')`` for messages."""
    parts = [f"kitchen '{kitchen}'"]
    if recipe:
        parts.append(f"recipe '{recipe}'")
    if variation:
        parts.append(f"variation '{variation}'")
    if order_run_id:
        parts.append(f"order run '{order_run_id}'")
    head = f"DataKitchen order '{order_id}'" if order_id else "DataKitchen order run"
    return f"{head} ({', '.join(parts)})"


__all__ = [
    "DEFAULT_FINISHED_STATUSES",
    "FAILED_RUN_STATUSES",
    "TERMINAL_RUN_STATUSES",
    "ListedOrder",
    "ListedRun",
    "LogLine",
    "LostOrderQuery",
    "OrderRun",
    "OrderRunReport",
    "OrderRunStatus",
    "TestResult",
    "canonical_json",
    "created_order_id",
    "describe_order",
    "epoch_seconds",
    "iso_utc",
    "listed_orders",
    "listed_runs",
    "match_lost_order",
    "newest_run",
    "parse_test_results",
    "recipe_target",
    "runs_of",
]
