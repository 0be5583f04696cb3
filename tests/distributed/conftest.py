"""``make test-distributed``: one CeleryExecutor deployment for the whole session (see dist_harness.py).

``deployment`` (session-scoped) starts PostgreSQL, Redis, the sandboxes and Airflow (api-server,
scheduler, dag-processor, triggerer, Celery workers ``w1`` and ``w2``) once; every scenario of
``test_distributed.py`` runs against it. ``record`` collects one results row per scenario into
``.artifacts/distributed/results.json`` (the rows of the table in docs/reliability.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dist_harness import RESULTS, Deployment, distributed_stack

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_ROWS: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    with distributed_stack() as started:
        yield started


@pytest.fixture
def record() -> Callable[..., None]:
    """``record(scenario=..., fault=..., checked=..., observed=..., passed=...)``: one results row."""

    def add(**row: Any) -> None:
        _ROWS.append(row)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(_ROWS, indent=2, default=str))

    return add
