"""Trigger example_order_pipeline from the Airflow UI in a real browser, as a user would.

The harness (conftest.py) runs a real Airflow (api-server, scheduler, dag-processor, triggerer) against
the two sandboxes; these tests drive its UI with headless Chromium and check the outcome where a user
would look (the UI) and where the orders land (the sandboxes). Screenshots: .artifacts/e2e/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import pytest
from e2e_harness import wait_until
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

if TYPE_CHECKING:
    from e2e_harness import AirflowCluster, Sandboxes, Shots
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "example_order_pipeline"
SUBMIT = "submit_recipe_order"
# Per catering order, a mapped task group runs wait → accept; its tasks' ids carry the group's id.
WAIT = "catering_order.wait_until_submitted"
ACCEPT = "catering_order.accept"
TRIGGER_CLASS = "airflow_provider_orders.triggers.datakitchen.OrderRunTrigger"
EZ_TRIGGER_CLASS = "airflow_provider_orders.triggers.ezcater.OrderLifecycleTrigger"

# Form values that differ from every default of the DAG's params, so the order the sandbox receives
# proves the form was read.
KITCHEN = "e2e-kitchen"
RECIPE = "nightly-orders"
VARIATION = "ui-success"
FAILING_VARIATION = "ui-fails"
FAILURE_TEXT = "Node load_orders failed: 3 rows violate unique constraint orders_pk"
OVERRIDES = {"run_date": "2025-01-31", "batch_size": 500, "dry_run": False}
# The order runs last ~11 s: the submit task surely defers (its first status read is not final), and
# the trigger fires only after the scheduler has taken note of the deferral. A trigger that fires
# sooner hits apache/airflow#72716 (3.3.2): the scheduler retries the resumed task (see docs/e2e.md).
RUN_SECONDS = {"planned_seconds": 1.0, "active_seconds": 10.0}

RUN_TIMEOUT = 300.0  # a whole pipeline run, from the trigger click to a final state
DEFER_TIMEOUT = 180.0  # from the trigger click until the sensors wait in the triggerer


# ---------------------------------------------------------------------------------------------- UI steps
def open_trigger_form(page: Page, shots: Shots, airflow: AirflowCluster) -> Locator:
    """DAG list → example_order_pipeline → Trigger: the trigger dialog with the params form."""
    page.goto("/dags")
    dag_link = page.get_by_role("link", name=DAG_ID, exact=True)
    expect(dag_link).to_be_visible()
    shots("dag-list")
    dag_link.click()
    expect(page).to_have_url(re.compile(rf"/dags/{DAG_ID}(/|$)"))
    # The DAG's own page, not the list still fading out (whose cards each have a trigger button).
    expect(page.get_by_role("heading", name=DAG_ID, exact=True, level=2)).to_be_visible()
    expect(page.get_by_role("button", name="Trigger Dag", exact=True)).to_have_count(1)
    dialog = page.get_by_role("dialog")
    heading = dialog.get_by_role("heading", name=f"Trigger Dag - {DAG_ID}")
    click_until_visible(page.get_by_role("button", name="Trigger Dag", exact=True), heading)
    unpause = dialog.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger")
    if airflow.dag(DAG_ID)["is_paused"]:  # new DAGs start paused; the dialog unpauses them by default
        expect(unpause).to_be_checked()
    else:
        expect(unpause).to_have_count(0)
    return dialog


def click_until_visible(button: Locator, target: Locator, timeout: float = 60.0) -> None:
    """Click ``button`` until ``target`` shows: a click that lands while the page is still rendering
    (the button already there, its handler not yet) is lost, and a person would just click again."""
    deadline = time.monotonic() + timeout
    while True:
        if not target.is_visible():
            with contextlib.suppress(PlaywrightTimeoutError):
                button.click(timeout=5_000)
        try:
            expect(target).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def param_field(dialog: Locator, label: str) -> Locator:
    """The form row (role group) whose label is ``label`` (a required field's label ends with '*')."""
    label_re = re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$")
    return dialog.get_by_role("group").filter(has=dialog.page.locator("label").filter(has_text=label_re))


def fill_json_editor(field: Locator, value: Any) -> None:
    """Replace the content of a param's JSON editor (Monaco) as typed/pasted by a person."""
    page = field.page
    field.locator(".monaco-editor .view-lines").click()
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(value))
    # Monaco auto-closes brackets and quotes: drop whatever it added after the cursor.
    page.keyboard.press("ControlOrMeta+Shift+End")
    page.keyboard.press("Delete")
    expect(field.get_by_text(re.compile("SyntaxError"))).to_have_count(0)


def fill_trigger_form(
    dialog: Locator,
    *,
    kitchen: str,
    recipe: str,
    variation: str,
    overrides: dict[str, Any],
    order_ids: list[str],
) -> None:
    param_field(dialog, "Kitchen").get_by_role("textbox").fill(kitchen)
    param_field(dialog, "Recipe").get_by_role("textbox").fill(recipe)
    param_field(dialog, "Variation").get_by_role("combobox").fill(variation)
    fill_json_editor(param_field(dialog, "Variable overrides"), overrides)
    param_field(dialog, "ezCater order ids").get_by_role("textbox").fill("\n".join(order_ids))


def submit_trigger_form(page: Page, dialog: Locator) -> str:
    """Click Trigger in the dialog; the UI opens the new run's page. Return its run id."""
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/?#]+"))
    match = re.search(rf"/dags/{DAG_ID}/runs/([^/?#]+)", page.url)
    assert match, page.url
    return urllib.parse.unquote(match.group(1))


def run_url(run_id: str, task_id: str | None = None, map_index: int | None = None) -> str:
    url = f"/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}"
    if task_id:
        url += f"/tasks/{task_id}"
        if map_index is not None and map_index >= 0:
            url += f"/mapped/{map_index}"
    return url


def expect_run_state_in_ui(page: Page, run_id: str, state: str) -> None:
    """The run page's header shows ``state`` (e.g. 'Success'); the UI refreshes itself while we wait."""
    page.goto(run_url(run_id))
    header = page.get_by_role("heading", name=run_id, level=2).locator("xpath=..")
    expect(header).to_contain_text(state, timeout=90_000)


def expect_task_rows_in_ui(page: Page, expected: dict[str, str]) -> None:
    """On the run page's task instance table every row of ``task_id`` shows the expected state."""
    for task_id, state in expected.items():
        rows = page.get_by_role("row").filter(has=page.get_by_role("link", name=task_id, exact=True))
        expect(rows.first).to_be_visible()
        for i in range(rows.count()):
            expect(rows.nth(i)).to_contain_text(state)


# ---------------------------------------------------------------------------------------------- REST waits
class RunWatcher:
    """Polls the run's task instances, remembering every state each one was seen in."""

    def __init__(self, airflow: AirflowCluster, run_id: str) -> None:
        self.airflow = airflow
        self.run_id = run_id
        self.seen: dict[tuple[str, int], list[str]] = {}
        self.last: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        self.last = self.airflow.task_instances(DAG_ID, self.run_id)
        for ti in self.last:
            states = self.seen.setdefault((ti["task_id"], ti["map_index"]), [])
            if not states or states[-1] != ti["state"]:
                states.append(ti["state"])
        return self.last

    def states(self, task_id: str) -> dict[int, str | None]:
        return {ti["map_index"]: ti["state"] for ti in self.last if ti["task_id"] == task_id}

    def describe(self) -> str:
        run = self.airflow.dag_run(DAG_ID, self.run_id)
        tis = ", ".join(
            f"{t}[{m}]: {' → '.join(str(s) for s in ss)}" for (t, m), ss in sorted(self.seen.items())
        )
        return f"Run {self.run_id} is {run['state']}; task states seen: {tis or 'none'}."

    def wait_for_final_state(self) -> str:
        def final() -> str | None:
            self.poll()
            state = self.airflow.dag_run(DAG_ID, self.run_id)["state"]
            return state if state in ("success", "failed") else None

        return wait_until(f"run {self.run_id} to finish", final, RUN_TIMEOUT, describe=self.describe)


def assert_ran_in_triggerer(
    airflow: AirflowCluster, run_id: str, task_id: str, trigger_class: str, map_index: int = -1
) -> str:
    """Fail unless ``trigger_class`` ran for this task in the triggerer process; return the task log.

    The triggerer writes what a trigger logs to ``<task log>.trigger.<triggerer job id>.log``, which the
    UI shows among the task's log sources. Here only our triggerer process runs TriggererJob jobs.
    """
    triggerer_jobs = {job["id"] for job in airflow.jobs("TriggererJob")}
    lines = airflow.task_log(DAG_ID, run_id, task_id, map_index=map_index)
    text = "\n".join(str(line.get("event", "")) for line in lines)
    where = f"{task_id}[{map_index}]"
    written_by = {int(job_id) for job_id in re.findall(r"\.log\.trigger\.(\d+)\.log", text)}
    assert written_by, f"{where}: no trigger log among the task's log sources:\n{text[:3000]}"
    assert written_by <= triggerer_jobs, f"{where}: trigger log of {written_by}, not of {triggerer_jobs}"
    from_trigger = [line for line in lines if line.get("logger") == trigger_class]
    assert from_trigger, f"{where}: no log line of {trigger_class} in:\n{text[:3000]}"
    assert "Trigger fired event" in text, f"{where}: the trigger never fired:\n{text[:3000]}"
    return text


# ---------------------------------------------------------------------------------------------- tests
def test_trigger_from_ui_runs_the_pipeline_through_the_triggerer(
    airflow: AirflowCluster, sandboxes: Sandboxes, page: Page, shots: Shots
) -> None:
    dk, ez = sandboxes.datakitchen, sandboxes.ezcater
    dk.add_variation(KITCHEN, RECIPE, VARIATION, outcome="COMPLETED_SERVING", **RUN_SECONDS)
    # Draft orders: the sensors must wait (deferred, in the triggerer) until we submit them below.
    catering = [ez.add_order(state="draft") for _ in range(2)]
    orders_before = set(dk.orders)

    dialog = open_trigger_form(page, shots, airflow)
    fill_trigger_form(
        dialog, kitchen=KITCHEN, recipe=RECIPE, variation=VARIATION, overrides=OVERRIDES, order_ids=catering
    )
    shots("trigger-form-filled")
    run_id = submit_trigger_form(page, dialog)
    shots("run-page-after-trigger")

    # What the form sent is what the run got.
    conf = airflow.dag_run(DAG_ID, run_id)["conf"]
    assert conf == {
        "kitchen": KITCHEN,
        "recipe": RECIPE,
        "variation": VARIATION,
        "overrides": OVERRIDES,
        "ezcater_order_ids": catering,
    }

    # Both catering orders are still drafts: their sensors must now be deferred, i.e. handed to the
    # triggerer (no worker holds them), one per order id from the form.
    watcher = RunWatcher(airflow, run_id)

    def sensors_deferred() -> bool:
        watcher.poll()
        states = watcher.states(WAIT)
        return len(states) == len(catering) and set(states.values()) == {"deferred"}

    wait_until(f"both {WAIT} sensors to defer", sensors_deferred, DEFER_TIMEOUT, describe=watcher.describe)
    page.goto(run_url(run_id))
    expect(page.get_by_role("row").filter(has_text=WAIT).first).to_contain_text("Deferred")
    shots("sensors-deferred")
    assert {ez.order_state(uuid) for uuid in catering} == {"draft"}
    wait_until(
        "the scheduler to process the sensors' deferral (apache/airflow#72716)",
        lambda: all(airflow.scheduler_saw_deferral(DAG_ID, run_id, WAIT, i) for i in range(len(catering))),
        DEFER_TIMEOUT,
    )

    # The customer submits the orders; the triggerer notices, the sensors finish, the orders get accepted.
    for uuid in catering:
        ez.update_order(uuid, state="submitted")
    final = watcher.wait_for_final_state()
    assert final == "success", watcher.describe()

    expect_run_state_in_ui(page, run_id, "Success")
    expect_task_rows_in_ui(page, {SUBMIT: "Success", WAIT: "Success", ACCEPT: "Success"})
    shots("run-succeeded")

    # The DataKitchen sandbox got exactly one order, with the form's values, and its run completed.
    new_orders = [order for order_id, order in dk.orders.items() if order_id not in orders_before]
    assert len(new_orders) == 1, f"expected one DataKitchen order, got {len(new_orders)}"
    order = new_orders[0]
    assert (order.kitchen, order.recipe, order.variation) == (KITCHEN, RECIPE, VARIATION)
    assert order.parameters == OVERRIDES
    assert len(order.runs) == 1
    order_run = order.runs[0]
    assert order_run.status(time.time()) == "COMPLETED_SERVING"
    # The catering orders went draft → submitted → accepted.
    assert {uuid: ez.order_state(uuid) for uuid in catering} == dict.fromkeys(catering, "accepted")

    # The deferred waits ran in the triggerer process: the trigger logs are the triggerer's.
    assert_ran_in_triggerer(airflow, run_id, SUBMIT, TRIGGER_CLASS)
    for map_index in range(len(catering)):
        assert_ran_in_triggerer(airflow, run_id, WAIT, EZ_TRIGGER_CLASS, map_index=map_index)

    # The submit task's "DataKitchen order run" link opens this run in the DataKitchen web app.
    expected_url = f"{dk.url}/#/orders/{dk.customer}/{KITCHEN}/runs/{order_run.hid}"
    links = airflow.task_links(DAG_ID, run_id, SUBMIT)
    assert links.get("DataKitchen order run") == expected_url, links
    page.goto(run_url(run_id, SUBMIT))
    page.get_by_role("link", name="Details", exact=True).click()  # the task's Details tab lists its links
    expect(page).to_have_url(re.compile(r"/tasks/submit_recipe_order/details$"))
    link = page.get_by_role("link", name="DataKitchen order run", exact=True)
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", expected_url)
    shots("submit-task-extra-link")
    with page.context.expect_page() as new_tab:
        link.click()
    web_app = new_tab.value
    web_app.wait_for_load_state()
    focused = web_app.locator("tr.focus")
    expect(focused).to_have_count(1)
    expect(focused).to_contain_text(order_run.hid)
    expect(focused).to_contain_text("COMPLETED_SERVING")
    shots("datakitchen-order-run-page", web_app)
    web_app.close()


def test_failed_recipe_run_shows_the_api_message_in_the_task_log(
    airflow: AirflowCluster, sandboxes: Sandboxes, page: Page, shots: Shots
) -> None:
    dk, ez = sandboxes.datakitchen, sandboxes.ezcater
    dk.add_variation(
        KITCHEN,
        RECIPE,
        FAILING_VARIATION,
        outcome="SERVING_ERROR",
        orderrun_status=FAILURE_TEXT,
        **RUN_SECONDS,
    )
    catering = ez.add_order(state="submitted")
    orders_before = set(dk.orders)

    dialog = open_trigger_form(page, shots, airflow)
    fill_trigger_form(
        dialog,
        kitchen=KITCHEN,
        recipe=RECIPE,
        variation=FAILING_VARIATION,
        overrides={"run_date": "2025-02-01"},
        order_ids=[catering],
    )
    shots("trigger-form-filled")
    run_id = submit_trigger_form(page, dialog)

    watcher = RunWatcher(airflow, run_id)
    final = watcher.wait_for_final_state()
    assert final == "failed", watcher.describe()
    expect_run_state_in_ui(page, run_id, "Failed")
    expect_task_rows_in_ui(page, {SUBMIT: "Failed"})
    shots("run-failed")

    # One order. The example resumes a failed run on its retry (retry_from_failure): the first run
    # was superseded by a second run of the same order, which failed too; what the API said about it
    # is in the task log.
    new_orders = [order for order_id, order in dk.orders.items() if order_id not in orders_before]
    assert len(new_orders) == 1, f"expected one DataKitchen order, got {len(new_orders)}"
    now = time.time()
    assert [r.status(now) for r in new_orders[0].runs] == ["SERVING_RERAN", "SERVING_ERROR"]
    run = new_orders[0].runs[-1]
    api_message = run.orderrun_status(time.time())
    assert api_message == FAILURE_TEXT

    page.goto(run_url(run_id, SUBMIT))
    log_view = page.get_by_role("code").first
    expect(log_view).to_contain_text("SERVING_ERROR")
    expect(log_view).to_contain_text(api_message)
    expect(log_view).to_contain_text("the task's retries are spent: the run was not resumed")
    shots("submit-task-log")
    # Try 2 resumed the run instead of ordering again; with its one retry spent the task failed, and
    # nothing was accepted.
    submit = next(ti for ti in watcher.poll() if ti["task_id"] == SUBMIT)
    assert (submit["state"], submit["try_number"]) == ("failed", 2)
    assert ez.order_state(catering) == "submitted"


@pytest.mark.parametrize(
    ("conn_type", "shown", "hidden"),
    [
        (
            "DataKitchen",
            ["API base URL", "Username", "Password"],
            ["Host", "Login", "Port", "Schema"],
        ),
        (
            "ezCater",
            ["GraphQL endpoint URL", "API token"],
            ["Host", "Login", "Username", "Password", "Port", "Schema"],
        ),
    ],
)
def test_connection_form_offers_relabelled_fields(
    page: Page, shots: Shots, conn_type: str, shown: list[str], hidden: list[str]
) -> None:
    page.goto("/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    type_box = dialog.get_by_role("combobox", name="Connection Type")
    # Control: a Generic connection shows the standard fields under their own names.
    type_box.click()
    page.get_by_role("option", name="Generic", exact=True).click()
    expect(dialog.get_by_role("textbox", name="Host", exact=True)).to_be_visible()
    type_box.click()
    page.get_by_role("option", name=conn_type, exact=True).click()
    for label in shown:
        expect(dialog.get_by_role("textbox", name=label, exact=True)).to_be_visible()
    for label in hidden:
        expect(dialog.get_by_role("textbox", name=label, exact=True)).to_have_count(0)
    shots(f"add-connection-{conn_type}-standard-fields")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for label in ("Request timeout (seconds)", "Retries inside the hook", "First retry delay (seconds)"):
        expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    shots(f"add-connection-{conn_type}-extra-fields")
