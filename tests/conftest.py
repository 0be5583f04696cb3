"""Test-suite wide setup: a throw-away AIRFLOW_HOME with a migrated SQLite metadata DB.

The environment is set at import time, before anything imports Airflow, so every test (and every
``dag.test()``) runs against this session's own home and never touches ``~/airflow``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

_HOME = Path(tempfile.mkdtemp(prefix="orders-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
(_HOME / "dags").mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """Migrate the session's SQLite metadata DB once; yield AIRFLOW_HOME."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _HOME
