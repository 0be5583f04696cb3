"""Reliability suite plumbing: secret scanning of everything captured, and the results table.

* Every test in this directory gets :func:`_scan_for_secrets` (autouse): after the test, the log records
  captured at DEBUG, stdout/stderr and any text the test registered through ``secret_scan.add()`` are
  searched for the DataKitchen password, JWTs and the ezCater token. A hit fails the test (teardown error).
* ``record_cell`` collects one row per checked cell; at the end of the run the rows go to
  ``.artifacts/reliability.json`` and, when every test of this directory ran, ``docs/reliability.md`` is
  regenerated from them (``render_reliability.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from reliability_support import SecretScanner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = Path(__file__).resolve().parent

_CELLS: list[dict[str, Any]] = []
_SCAN_TOTALS = {"sources": 0, "findings": 0}
_COLLECTED: set[str] = set()
_SELECTED: set[str] = set()
_RAN: set[str] = set()


def pytest_itemcollected(item: pytest.Item) -> None:
    if Path(str(item.path)).resolve().is_relative_to(HERE):
        _COLLECTED.add(item.nodeid)


def pytest_collection_finish(session: pytest.Session) -> None:
    _SELECTED.update(i.nodeid for i in session.items if i.nodeid in _COLLECTED)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid in _COLLECTED and (report.when == "call" or report.skipped):
        _RAN.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _SELECTED:
        return
    from render_reliability import OUTPUT, RESULTS, render

    results = {"cells": _CELLS, "secret_scan": dict(_SCAN_TOTALS)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    files = {nodeid.split("::", 1)[0].rsplit("/", 1)[-1] for nodeid in _SELECTED}
    all_files = {p.name for p in HERE.glob("test_*.py")}
    complete = files == all_files and _SELECTED == _COLLECTED and _RAN >= _SELECTED
    if complete:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(render(results, OUTPUT.read_text() if OUTPUT.exists() else ""))


@pytest.fixture(scope="session")
def secret_scanner() -> SecretScanner:
    return SecretScanner()


@pytest.fixture
def secret_scan(
    secret_scanner: SecretScanner,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[SecretScanner]:
    """Scan this test's captured logs/output (and whatever it adds) for secrets after it ran."""
    caplog.set_level(logging.DEBUG)
    secret_scanner.begin(capfd)
    yield secret_scanner
    secret_scanner.read_captured()
    secret_scanner.add("caplog", caplog.text)
    findings = secret_scanner.end()
    _SCAN_TOTALS["sources"] += secret_scanner.sources_in_test
    _SCAN_TOTALS["findings"] += len(findings)
    if findings:
        pytest.fail("secret(s) in captured output:\n" + "\n".join(findings), pytrace=False)


@pytest.fixture(autouse=True)
def _scan_for_secrets(secret_scan: SecretScanner) -> SecretScanner:
    return secret_scan


@pytest.fixture
def record_cell() -> Callable[..., None]:
    """``record_cell(section, row, column, expected=..., summary=..., passed=..., na=None, detail=None)``."""

    def record(
        section: str,
        row: str,
        column: str,
        *,
        expected: str,
        summary: str,
        passed: bool,
        na: str | None = None,
        detail: Any = None,
    ) -> None:
        _CELLS.append(
            {
                "section": section,
                "row": row,
                "column": column,
                "expected": expected,
                "summary": summary,
                "passed": passed,
                "na": na,
                "detail": detail,
            }
        )

    return record
