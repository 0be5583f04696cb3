"""End-to-end harness: a real Airflow 3 (four processes) plus both sandboxes, driven by headless Chromium.

Session-scoped, started once for every test of this directory (``pytest -m e2e tests/e2e``):

* ``sandboxes``: the DataKitchen and ezCater sandboxes, in this process, on free loopback ports.
* ``airflow``: ``airflow db migrate``, then ``api-server``, ``scheduler``, ``dag-processor`` and
  ``triggerer`` as four subprocesses, each in its own session/process group, with a throw-away
  ``AIRFLOW_HOME``, the repository's ``example_dags`` and the sandbox connections (``AIRFLOW_CONN_*``).
  Their output goes to ``.artifacts/e2e/<component>.log``; teardown stops every process group by pid
  (SIGTERM, then SIGKILL) even when a test failed, checks that no process of those groups is left, and
  copies Airflow's task logs to ``.artifacts/e2e/airflow-logs/``.
* ``browser``: Debian's ``/usr/bin/chromium`` (``E2E_CHROMIUM`` overrides) through Playwright; nothing is
  downloaded. Every page blocks requests that do not go to loopback.

Function-scoped: ``page`` (a fresh browser context on the Airflow UI) and ``shots`` (numbered
screenshots under ``.artifacts/e2e/screenshots/<test>/``; a failing test also gets one of its last page).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e_harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    DAG_PARSED_TIMEOUT,
    HEALTH_TIMEOUT,
    SCREENSHOTS,
    UI_TIMEOUT_MS,
    AirflowCluster,
    Sandboxes,
    Shots,
    airflow_env,
    free_port,
    loopback_only,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[Sandboxes]:
    """Both sandboxes with their default demo catalogue, for the whole e2e session."""
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

    with DataKitchenSandbox(port=0) as dk, EzCaterSandbox(port=0) as ez:
        yield Sandboxes(dk, ez)


@pytest.fixture(scope="session")
def e2e_artifacts() -> Path:
    """``.artifacts/e2e/``, emptied at the start of the session (git-ignored)."""
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    SCREENSHOTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def airflow(e2e_artifacts: Path, sandboxes: Sandboxes) -> Iterator[AirflowCluster]:
    """A running Airflow with example_order_pipeline parsed; torn down by process group at the end."""
    home = Path(tempfile.mkdtemp(prefix="orders-e2e-airflow-home-"))
    port = free_port()
    cluster = AirflowCluster(home=home, port=port, env=airflow_env(home, port, sandboxes))
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        cluster.migrate()
        timings["db_migrate"] = time.monotonic() - started
        cluster.start()
        wait_until(
            f"Airflow to report healthy on {cluster.base_url}/api/v2/monitor/health",
            cluster.healthy,
            HEALTH_TIMEOUT,
            describe=lambda: "Component logs: " + ", ".join(str(p.log_path) for p in cluster.processes),
        )
        timings["healthy"] = time.monotonic() - started
        wait_until(
            "the dag-processor to parse example_order_pipeline",
            lambda: cluster.dag("example_order_pipeline"),
            DAG_PARSED_TIMEOUT,
            describe=lambda: f"Import errors: {cluster.import_errors()}",
        )
        timings["dag_parsed"] = time.monotonic() - started
        (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
        yield cluster
    finally:
        stopping = time.monotonic()
        leftovers = cluster.stop()
        timings["stop"] = time.monotonic() - stopping
        timings["total"] = time.monotonic() - started
        (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
        with contextlib.suppress(OSError):
            shutil.copytree(home / "logs", ARTIFACTS / "airflow-logs", dirs_exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        if leftovers:
            pytest.fail(f"Airflow processes survived SIGKILL: {leftovers}")


# ---------------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: install Debian's browser (`apt-get install -y chromium`) or set "
            "E2E_CHROMIUM to a Chromium binary. Playwright's own browser download is not used."
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)  # the UI of an Airflow on two busy cores can be slow
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(
    request: pytest.FixtureRequest, browser: Browser, airflow: AirflowCluster, shots: Shots
) -> Iterator[Page]:
    """A fresh browser context on the Airflow UI (relative URLs work); a failing test's last page is saved."""
    context = browser.new_context(base_url=airflow.base_url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.route("**/*", loopback_only)
    page = context.new_page()
    shots.page = page
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            with contextlib.suppress(Exception):
                shots("FAILED-last-page")
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def shots(request: pytest.FixtureRequest, e2e_artifacts: Path) -> Shots:
    return Shots(SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name))
