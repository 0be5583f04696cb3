"""docs/reliability.md shows the lifecycle matrix exactly as lifecycle_cells.py defines it (fast; in make test)."""

from __future__ import annotations

from pathlib import Path

from lifecycle_cells import ACTIVE, CELLS, COLUMNS, ROWS, Expect, render_section, section_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def test_doc_section_matches_the_cell_definitions() -> None:
    section = section_of(DOC.read_text())
    assert section is not None, f"{DOC} has no lifecycle section; run: make test (render_reliability.py)"
    assert section == render_section(), (
        f"{DOC}'s lifecycle section differs from tests/lifecycle/lifecycle_cells.py; regenerate it with "
        "`python tests/reliability/render_reliability.py --lifecycle-only`"
    )


def test_every_cell_is_defined_once() -> None:
    assert len(CELLS) == len(ROWS) * len(COLUMNS)
    assert len({c.key for c in CELLS}) == len(CELLS)
    assert all(isinstance(c.spec, Expect) for c in ACTIVE)
