"""Render ``docs/reliability.md`` from the reliability run's results (``.artifacts/reliability.json``).

The reliability tests record one row per cell they check (what was injected, what the provider did,
how many requests the sandbox saw, whether that matches the failure policy). ``conftest.py`` writes
the rows to ``.artifacts/reliability.json`` at the end of every run and, when the run covered every
cell, calls :func:`render` to regenerate ``docs/reliability.md``. The output holds no timings and no
date, so an unchanged behaviour gives a byte-identical file.

The lifecycle matrix (``tests/lifecycle/lifecycle_cells.py``, the expectations of the real-Airflow
cells) is rendered at the end of the file from the cell definitions, so every regeneration keeps it.

Standalone: ``python tests/reliability/render_reliability.py [results.json] [output.md]``;
``--lifecycle-only [output.md]`` rewrites only the lifecycle section of the existing file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = ROOT / "tests" / "lifecycle"
RESULTS = ROOT / ".artifacts" / "reliability.json"
OUTPUT = ROOT / "docs" / "reliability.md"

#: Column order of the fault matrix and the headings shown for them.
OPERATIONS: dict[str, str] = {
    "submit": "submit (create order)",
    "run_poke": "run poke (sync)",
    "run_poke_deferred": "run poke (deferred)",
    "accept": "accept",
    "lifecycle_poke": "lifecycle poke (sync)",
    "lifecycle_poke_deferred": "lifecycle poke (deferred)",
}
#: Row order of the fault matrix and how each fault was injected.
FAULTS: dict[str, str] = {
    "429": "429 + `Retry-After: 1`",
    "500": "500",
    "502": "502",
    "503": "503",
    "504": "504",
    "reset": "connection reset (closed, no answer)",
    "timeout": "read timeout (answer 2 s late, timeout 1 s)",
    "expired_token": "expired token (401 `token_expired`)",
    "malformed_json": "malformed JSON (200, HTML body)",
    "lost_answer": "lost answer (applied, then 502)",
    "lost_answer_reset": "lost answer (applied, then connection closed)",
    "503_spent": "503 x 3 (retry budget spent)",
}


def _mark(passed: bool) -> str:
    return "✅" if passed else "❌ **FAIL**"


def _esc(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _matrix(rows: list[dict[str, Any]]) -> list[str]:
    cells = {(r["row"], r["column"]): r for r in rows}
    notes: list[str] = []  # one footnote per distinct reason
    out = [
        "| fault | " + " | ".join(OPERATIONS.values()) + " |",
        "| --- | " + " | ".join("---" for _ in OPERATIONS) + " |",
    ]
    for fault, label in FAULTS.items():
        line = [label]
        for op in OPERATIONS:
            cell = cells.get((fault, op))
            if cell is None:
                line.append("·")
                continue
            if cell.get("na"):
                if cell["na"] not in notes:
                    notes.append(cell["na"])
                line.append(f"n/a[^{notes.index(cell['na']) + 1}]")
                continue
            line.append(f"{_mark(cell['passed'])} {_esc(cell['summary'])}")
        out.append("| " + " | ".join(line) + " |")
    out.append("")
    out.extend(f"[^{i}]: {_esc(note)}" for i, note in enumerate(notes, start=1))
    return out


def _list(rows: list[dict[str, Any]], head: tuple[str, str, str]) -> list[str]:
    out = [f"| {head[0]} | {head[1]} | {head[2]} | |", "| --- | --- | --- | --- |"]
    for r in rows:
        out.append(
            f"| {_esc(r['row'])} | {_esc(r['expected'])} | {_esc(r['summary'])} | {_mark(r['passed'])} |"
        )
    return out


def lifecycle_section() -> str:
    """The lifecycle matrix section, rendered from ``tests/lifecycle/lifecycle_cells.py``."""
    if str(LIFECYCLE) not in sys.path:
        sys.path.insert(0, str(LIFECYCLE))
    from lifecycle_cells import render_section

    return str(render_section())


def with_lifecycle_section(text: str) -> str:
    """``text`` with its lifecycle section replaced by a fresh render (appended when it has none)."""
    section = lifecycle_section()  # puts tests/lifecycle on sys.path
    from lifecycle_cells import SECTION_END, SECTION_START

    start, end = text.find(SECTION_START), text.find(SECTION_END)
    if start >= 0 and end > start:
        tail = text[end + len(SECTION_END) :].lstrip("\n")
        return text[:start] + section + tail
    return text.rstrip("\n") + "\n\n" + section


def kept_tail(previous: str) -> str:
    """What ``previous`` (the page as it is) holds after the lifecycle section: sections written by hand
    or by other suites (the distributed deployment's), which a re-render must keep."""
    from lifecycle_cells import SECTION_END

    end = previous.find(SECTION_END)
    return previous[end + len(SECTION_END) :].strip("\n") if end >= 0 else ""


def render(results: dict[str, Any], previous: str = "") -> str:
    """The Markdown text of ``docs/reliability.md`` for ``results`` (the JSON the conftest writes);
    whatever ``previous`` has after the lifecycle section is kept as it is."""
    by_section: dict[str, list[dict[str, Any]]] = {}
    for row in results["cells"]:
        by_section.setdefault(row["section"], []).append(row)
    for rows in by_section.values():
        rows.sort(key=lambda r: (str(r["row"]), str(r["column"])))
    checked = [r for r in results["cells"] if not r.get("na")]
    total = len(checked)
    failed = sum(1 for r in checked if not r["passed"])
    scan = results.get("secret_scan", {})
    lines = [
        "# Reliability: the fault matrix",
        "",
        "<!-- Generated by tests/reliability (conftest.py → render_reliability.py) on every full run of",
        "     `make test`; do not edit by hand. Raw rows: .artifacts/reliability.json -->",
        "",
        "Every cell below is a test in `tests/reliability/` that injects one fault through the sandbox's fault",
        "injection (`inject_fault(route, ...)` on the loopback DataKitchen / ezCater sandboxes), runs one",
        "operation through the real hook, trigger or `dag.test()`, and checks the outcome, the number of",
        "requests the sandbox received for the faulted call, and the number of orders that exist afterwards",
        "against the failure policy of the design (`design.md`, *Failure policy*). A cell marked ❌ is a",
        "behaviour that contradicts the policy: the test of that cell fails.",
        "",
        f"Cells checked: **{total}**, failed: **{failed}**.",
        "",
        "Reading a cell: the outcome (`success` or the exception type the caller gets), then `N req` = requests",
        "the sandbox saw on the faulted route (first attempt included), then orders in the sandbox where the",
        "operation creates one. The fault hits the first request only (`times=1`) unless the row says otherwise.",
        "Hook settings in these tests: `max_retries` 2, `retry_delay` 0.01 s (`Retry-After` still honoured).",
        "",
        "## Fault x operation (hooks and triggers)",
        "",
        *_matrix(by_section.get("matrix", [])),
        "",
        "## Airflow task state and tries (`dag.test()`, task `retries=2`)",
        "",
        *_list(by_section.get("dag", []), ("scenario", "expected (policy)", "observed")),
        "",
        "## Bad input: one clear error, no retry storm",
        "",
        *_list(by_section.get("bad_input", []), ("input", "expected", "observed")),
        "",
        "## Secrets in logs",
        "",
        f"Scanned {scan.get('sources', 0)} captured outputs (pytest caplog at DEBUG, stdout/stderr, exception",
        "texts, and the `dag.test()` task log files) for the DataKitchen password, JWTs (`eyJ…`) and the",
        f"ezCater API token: **{scan.get('findings', 0)} finding(s)**.",
        "",
        lifecycle_section(),
    ]
    text = "\n".join(lines)
    tail = kept_tail(previous)
    return f"{text.rstrip()}\n\n{tail}\n" if tail else text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--lifecycle-only":
        dst = Path(args[1]) if len(args) > 1 else OUTPUT
        dst.write_text(with_lifecycle_section(dst.read_text()))
        print(f"wrote the lifecycle section of {dst}")
        return 0
    src = Path(args[0]) if args else RESULTS
    dst = Path(args[1]) if len(args) > 1 else OUTPUT
    results = json.loads(src.read_text())
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(render(results, dst.read_text() if dst.exists() else ""))
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
