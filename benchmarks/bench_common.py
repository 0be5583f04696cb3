"""Shared pieces of the benchmarks: result tables, statistics, machine facts, a sandbox in a child process.

Each benchmark module is a script (``python benchmarks/bench_<name>.py [--quick] [--json out.json]``)
that measures one table and prints it; ``run.py`` runs each in a fresh interpreter (so one benchmark's
memory or imports never leak into another's figures) and assembles ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from multiprocessing.connection import Connection

MIB = 1024 * 1024


@dataclass
class Row:
    """One measured figure: what, the value as shown, the target as shown, and whether it is met."""

    name: str
    measured: str
    target: str = "—"
    passed: bool | None = None
    note: str = ""


@dataclass
class Table:
    key: str
    title: str
    method: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        rows = [Row(**r) for r in data.get("rows", [])]
        return cls(data["key"], data["title"], data["method"], rows, data.get("raw", {}))

    def markdown(self) -> str:
        out = [
            f"## {self.title}",
            "",
            self.method,
            "",
            "| figure | measured | target | result |",
            "| --- | --- | --- | --- |",
        ]
        for r in self.rows:
            verdict = "—" if r.passed is None else ("pass" if r.passed else "**FAIL**")
            name = f"{r.name} ({r.note})" if r.note else r.name
            out.append(f"| {name} | {r.measured} | {r.target} | {verdict} |")
        return "\n".join(out) + "\n"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, str]:
    """The facts the doc states about where it was measured."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 0
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        load = "n/a"
    return {
        "nproc": str(cpus),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "apache-airflow": version("apache-airflow"),
        "apache-airflow-task-sdk": version("apache-airflow-task-sdk"),
        "apache-airflow-providers-dbt-cloud": version("apache-airflow-providers-dbt-cloud"),
        "airflow-provider-orders": version("airflow-provider-orders"),
        "httpx": version("httpx"),
        "requests": version("requests"),
        "gql": version("gql"),
        "load average at start": load,
    }


def current_rss() -> int:
    """This process's resident set size in bytes, now (not the peak)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def main_for(measure: Callable[[bool], Table]) -> None:
    """The command line of every benchmark module."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--json", help="write the table as JSON to this file")
    args = parser.parse_args()
    table = measure(args.quick)
    print(table.markdown())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table.to_json(), fh, indent=2)


# --------------------------------------------------------------------------------------------------
# A sandbox in a child process: the server's CPU time never competes with the measured client for the GIL.
# --------------------------------------------------------------------------------------------------


def _serve(kind: str, conn: Connection, kwargs: dict[str, Any]) -> None:  # pragma: no cover - child
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

    cls = DataKitchenSandbox if kind == "datakitchen" else EzCaterSandbox
    sandbox: Any = cls(port=0, **kwargs)
    sandbox.start()
    conn.send(("ready", sandbox.url))
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            name, args, kw = message
            try:
                if name == "__len_orders__":
                    result: Any = len(sandbox.orders)
                elif name == "__routes__":
                    result = {}
                    for rec in list(sandbox.requests):
                        route = getattr(rec, "route", None) or "?"
                        result[route] = result.get(route, 0) + 1
                else:
                    result = getattr(sandbox, name)(*args, **kw)
                conn.send(("ok", result))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        sandbox.stop()


class SandboxProcess:
    """``with SandboxProcess("datakitchen") as sb: sb.call("count", route="create_order")``."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(kind, child, kwargs), daemon=True)
        self.url = ""

    def __enter__(self) -> SandboxProcess:
        self._proc.start()
        status, self.url = self._conn.recv()
        assert status == "ready", status
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(None)
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        status, result = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"sandbox.{name}: {result}")
        return result

    def order_count(self) -> int:
        return int(self.call("__len_orders__"))

    def routes(self) -> dict[str, int]:
        return dict(self.call("__routes__"))


def python_exe() -> str:
    return sys.executable
