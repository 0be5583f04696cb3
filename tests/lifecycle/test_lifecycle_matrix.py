"""The lifecycle matrix against a real Airflow: one test per applicable cell (``make test-lifecycle``).

All cells run at once in the session fixture ``matrix`` (conftest.py); each test here checks one cell's
observed outcome against its expectation in ``lifecycle_cells.py`` (the same text docs/reliability.md
shows). A failure message lists what differed and the steps the cell's script took.
"""

from __future__ import annotations

from typing import Any

import pytest
from lifecycle_cells import ACTIVE

pytestmark = [pytest.mark.lifecycle, pytest.mark.timeout(1200)]


@pytest.mark.parametrize("key", [c.key for c in ACTIVE])
def test_cell(matrix: dict[str, Any], key: str) -> None:
    result = matrix[key]
    if result["mismatches"]:
        observed = result["observed"] or {}
        steps = "\n  ".join(observed.get("steps") or [])
        pytest.fail(
            f"{key}: expected {result['expected']}; "
            + "; ".join(result["mismatches"])
            + (f"\n  script error: {observed['error']}" if observed.get("error") else "")
            + f"\n  steps:\n  {steps}",
            pytrace=False,
        )
