"""The example DAGs: they parse cheaply and offline, and the pipeline runs end to end on the sandboxes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

EXAMPLE_DAGS = Path(__file__).resolve().parents[1] / "example_dags"
#: The `make demo` / `make airflow` driver: a script of the checkout, not a module of the package.
DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "dev" / "demo.py"
EXAMPLE_DAG_IDS = {
    "example_order_pipeline",
    "example_accept_orders_from_conf",
    "example_reject_order",
    "example_accept_notified_orders",
    "example_record_cancelled_orders",
    "example_run_after_datakitchen_recipe",
}
#: example_order_pipeline's per-order tasks: a mapped task group, one wait → accept pair per catering order.
WAIT = "catering_order.wait_until_submitted"
ACCEPT = "catering_order.accept"

# Run in a fresh interpreter: any network call fails, the connection lookups are counted, and the
# modules the example folder imports are reported (beyond what Airflow itself already loaded).
_PARSE_PROBE = textwrap.dedent(
    """
    import json, socket, sys

    attempts = []

    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(repr(address))
            raise OSError("network call at DAG parse time: " + repr(address))
        return _connect(self, address, *args, **kwargs)

    _connect = socket.socket.connect
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse

    import airflow.sdk
    try:
        from airflow.dag_processing.dagbag import DagBag  # 3.2+
    except ImportError:
        from airflow.models.dagbag import DagBag
    from airflow.providers.common.compat.sdk import BaseHook, Connection

    lookups = []

    def no_lookup(cls, conn_id, *args, **kwargs):
        lookups.append(conn_id)
        raise RuntimeError("connection lookup at DAG parse time: " + conn_id)

    BaseHook.get_connection = classmethod(no_lookup)
    Connection.get = classmethod(no_lookup)

    # what Airflow itself imports to parse any DAG (Airflow 3.0's DagBag pulls in httpx) is not ours
    import pathlib, tempfile
    warm = pathlib.Path(tempfile.mkdtemp())
    (warm / "warm.py").write_text("from airflow.sdk import DAG\\nwith DAG('warm', schedule=None):\\n    pass\\n")
    DagBag(dag_folder=str(warm))

    before = set(sys.modules)
    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "new_modules": sorted(set(sys.modules) - before),
        "network_attempts": attempts,
        "connection_lookups": lookups,
    }))
    """
)


def _demo_module() -> Any:
    """``dev/demo.py``, loaded from its path: it is a script of the checkout, not part of the package."""
    spec = importlib.util.spec_from_file_location("orders_dev_demo", DEMO_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # before running it: its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_example_dags_import_without_errors() -> None:
    from airflow_versions import dagbag_class

    DagBag = dagbag_class()

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_DAG_IDS
    pipeline = bag.dags["example_order_pipeline"]
    assert pipeline.schedule is None
    # The trigger form: every field has a title and a description, and the defaults are valid.
    form = pipeline.params
    assert set(form.keys()) == {"kitchen", "recipe", "variation", "overrides", "ezcater_order_ids"}
    for name in form:
        param = form.get_param(name)
        assert param.schema.get("title"), name
        assert param.description, name
    form.validate()
    assert form.get_param("overrides").schema["type"] == "object"
    assert form.get_param("ezcater_order_ids").schema["type"] == "array"
    # The defaults are the ezCater sandbox's demo orders that `make demo` seeds.
    demo = _demo_module()

    assert form["ezcater_order_ids"] == list(demo.DEMO_EZCATER_ORDER_IDS)


def test_example_dags_map_per_order_work_as_a_group_not_all_to_all() -> None:
    """No example chains two mapped tasks directly: Airflow would make every instance of the downstream
    task wait for every instance of the upstream one. Per-order steps live in a mapped task group."""
    from airflow_versions import dagbag_class

    DagBag = dagbag_class()
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    def is_mapped(task: Any) -> bool:
        return isinstance(task, MappedOperator) or isinstance(task.task_group, MappedTaskGroup)

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    for dag in bag.dags.values():
        for task in dag.tasks:
            if not is_mapped(task):
                continue  # a plain task after mapped ones (a fan-in) is meant to wait for all of them
            all_to_all = [
                up.task_id
                for up in task.upstream_list
                if is_mapped(up)
                and not (isinstance(task.task_group, MappedTaskGroup) and up.task_group is task.task_group)
            ]
            assert all_to_all == [], (
                f"{dag.dag_id}: mapped {task.task_id} depends on mapped {all_to_all} outside a shared mapped "
                "task group, so each of its instances waits for all of theirs"
            )
    pipeline = bag.dags["example_order_pipeline"]
    wait, accept = pipeline.task_dict[WAIT], pipeline.task_dict[ACCEPT]
    assert isinstance(accept.task_group, MappedTaskGroup)
    assert accept.task_group is wait.task_group
    assert WAIT in accept.upstream_task_ids


def test_parsing_example_folder_is_offline_and_cheap() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_PROBE, str(EXAMPLE_DAGS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["import_errors"] == {}
    assert set(report["dag_ids"]) == EXAMPLE_DAG_IDS
    assert report["network_attempts"] == []
    assert report["connection_lookups"] == []
    heavy = ("gql", "graphql", "httpx", "requests", "tenacity", "airflow_provider_orders.hooks")
    pulled_in = [m for m in report["new_modules"] if m.split(".")[0] in heavy or m.startswith(heavy)]
    assert pulled_in == [], f"parsing the example DAGs imported {pulled_in}"


def _load_pipeline(dags_folder: Path) -> Any:
    """The pipeline DAG from the session's dags folder (dag.test() needs its file in that folder)."""
    from airflow_versions import dagbag_class

    DagBag = dagbag_class()

    target = dags_folder / "example_order_pipeline.py"
    shutil.copyfile(EXAMPLE_DAGS / "example_order_pipeline.py", target)
    bag = DagBag(dag_folder=str(target))
    assert bag.import_errors == {}
    return bag.dags["example_order_pipeline"]


def test_order_pipeline_submits_one_order_and_accepts_the_catering_orders(
    airflow_db: Path,
    datakitchen_sandbox: DataKitchenSandbox,
    ezcater_sandbox: EzCaterSandbox,
) -> None:
    from airflow.utils.state import DagRunState, TaskInstanceState

    catering = [
        ezcater_sandbox.add_order(state="draft", transitions=[("submitted", 1.0)]),
        ezcater_sandbox.add_order(state="submitted"),
    ]
    dag = _load_pipeline(airflow_db / "dags")

    run = dag.test(
        run_conf={
            "kitchen": "demo-kitchen",
            "recipe": "demo-recipe",
            "variation": "success",
            "overrides": {"run_date": "2025-01-31", "batch_size": 500},
            "ezcater_order_ids": catering,
        }
    )

    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.SUCCESS, states
    assert states == {
        ("submit_recipe_order", -1): TaskInstanceState.SUCCESS,
        ("ezcater_order_ids", -1): TaskInstanceState.SUCCESS,
        (WAIT, 0): TaskInstanceState.SUCCESS,
        (WAIT, 1): TaskInstanceState.SUCCESS,
        (ACCEPT, 0): TaskInstanceState.SUCCESS,
        (ACCEPT, 1): TaskInstanceState.SUCCESS,
    }
    # Exactly one DataKitchen order, for the form's recipe, with the overrides' JSON types intact.
    assert datakitchen_sandbox.count(route="create_order") == 1
    ((order_id, order),) = datakitchen_sandbox.orders.items()
    assert (order.kitchen, order.recipe, order.variation) == ("demo-kitchen", "demo-recipe", "success")
    assert order.parameters == {"run_date": "2025-01-31", "batch_size": 500}
    submit = next(ti for ti in run.get_task_instances() if ti.task_id == "submit_recipe_order")
    assert submit.xcom_pull(task_ids="submit_recipe_order") == order_id
    # Both catering orders accepted, each exactly once.
    assert [ezcater_sandbox.order_state(uuid) for uuid in catering] == ["accepted", "accepted"]
    assert ezcater_sandbox.count(route="acceptOrder") == 2


def test_order_pipeline_fails_fast_on_a_catering_order_accepted_elsewhere(
    airflow_db: Path,
    datakitchen_sandbox: DataKitchenSandbox,
    ezcater_sandbox: EzCaterSandbox,
) -> None:
    """An order that is already accepted does not leave the sensor waiting for its hour-long timeout:
    its accept task fails with ezCater's message, and the other order is still accepted."""
    from airflow.utils.state import DagRunState, TaskInstanceState

    taken = ezcater_sandbox.add_order(state="accepted")
    fresh = ezcater_sandbox.add_order(state="submitted")
    dag = _load_pipeline(airflow_db / "dags")

    run = dag.test(run_conf={"ezcater_order_ids": [taken, fresh]})

    accepts = {ti.map_index: ti.state for ti in run.get_task_instances() if ti.task_id == ACCEPT}
    assert run.state == DagRunState.FAILED
    assert accepts == {0: TaskInstanceState.FAILED, 1: TaskInstanceState.SUCCESS}
    assert ezcater_sandbox.order_state(fresh) == "accepted"
    # A permanent error: the accept of the taken order was sent once, not once per task retry.
    accept_bodies = [r.body for r in ezcater_sandbox.requests if r.route == "acceptOrder"]
    assert sum(taken in body for body in accept_bodies) == 1
    assert datakitchen_sandbox.count(route="create_order") == 1


def test_order_pipeline_accepts_each_catering_order_after_its_own_wait_only(
    airflow_db: Path,
    datakitchen_sandbox: DataKitchenSandbox,
    ezcater_sandbox: EzCaterSandbox,
) -> None:
    """Wait and accept are per order (a mapped task group), not two mapped tasks wired all-to-all:
    a cancelled order fails its own wait and skips its own accept, the good order is still accepted."""
    from airflow.utils.state import DagRunState, TaskInstanceState

    good = ezcater_sandbox.add_order(state="submitted")
    cancelled = ezcater_sandbox.add_order(state="cancelled")
    dag = _load_pipeline(airflow_db / "dags")

    run = dag.test(run_conf={"ezcater_order_ids": [good, cancelled]})

    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.FAILED, states
    assert states.get((WAIT, 0)) == TaskInstanceState.SUCCESS, states
    assert states.get((WAIT, 1)) == TaskInstanceState.FAILED, states
    assert states.get((ACCEPT, 0)) == TaskInstanceState.SUCCESS, states
    assert states.get((ACCEPT, 1)) == TaskInstanceState.UPSTREAM_FAILED, states
    # The sandbox agrees: the good order was accepted once, the cancelled one was never sent an accept.
    assert ezcater_sandbox.order_state(good) == "accepted"
    assert ezcater_sandbox.order_state(cancelled) == "cancelled"
    accept_bodies = [r.body for r in ezcater_sandbox.requests if r.route == "acceptOrder"]
    assert len(accept_bodies) == 1
    assert good in accept_bodies[0]
    assert datakitchen_sandbox.count(route="create_order") == 1


@pytest.mark.parametrize("conf", [{}, {"order_ids": []}, {"order_ids": ["  "]}, {"order_ids": {"a": 1}}])
def test_accept_from_conf_says_what_the_conf_must_look_like(conf: dict[str, Any]) -> None:
    from airflow_versions import dagbag_class

    DagBag = dagbag_class()
    from airflow.providers.common.compat.sdk import AirflowFailException

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / "example_accept_orders_from_conf.py"))
    read_conf: Any = bag.dags["example_accept_orders_from_conf"].task_dict["order_ids_from_conf"]

    class _Run:
        pass

    run = _Run()
    run.conf = conf  # type: ignore[attr-defined]
    with pytest.raises(AirflowFailException, match=r'dag_run.conf\["order_ids"\] must be a non-empty list'):
        read_conf.python_callable(dag_run=run)


def test_demo_driver_is_a_script_of_the_checkout_not_a_module_of_the_package() -> None:
    import airflow_provider_orders.sandbox

    assert DEMO_SCRIPT.is_file()
    sandbox_dir = Path(airflow_provider_orders.sandbox.__file__).parent
    assert not (sandbox_dir / "demo.py").exists()
    assert importlib.util.find_spec("airflow_provider_orders.sandbox.demo") is None
    # It finds the example DAGs relative to itself (dev/..), wherever it is started from.
    assert _demo_module().find_project_dir() == EXAMPLE_DAGS.parent


def test_demo_driver_runs_airflow_only_in_subprocesses() -> None:
    """`make demo` imports the driver before Airflow is set up: it must not import Airflow itself."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import demo; "
        "demo.EzCaterSandbox; "  # the lazily imported ezCater sandbox too
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'gql', 'requests', 'httpx')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(DEMO_SCRIPT.parent)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
