"""What the tests need from Airflow's internals, on every supported release (3.0 to 3.3).

The provider bridges versions through common-compat; the tests also reach into Airflow's own parsing and
DB layer (to register a DAG as the dag-processor would), which moved between releases. Everything a test
needs of that layer comes from here, chosen by the provider's own version flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_orders.version_compat import (
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
    AIRFLOW_VERSION,
)

if TYPE_CHECKING:
    from pathlib import Path

BUNDLE = "dags-folder"

#: Marks a test of a guarantee that rests on an Airflow 3.3 feature (task_state_store, asset_state_store,
#: trigger on_kill); on older releases the degraded behaviour has tests of its own.
needs_airflow_3_3 = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason=f"rests on an Airflow 3.3 feature; Airflow {'.'.join(map(str, AIRFLOW_VERSION))} "
    "degrades it (README: Airflow versions)",
)


#: Marks a dag.test() test that reads a failed task's exception text in the captured output: Airflow 3.0's
#: dag.test() does not show it there (the states and remote effects are checked by other tests on 3.0).
reads_task_exceptions = pytest.mark.skipif(
    not AIRFLOW_V_3_1_PLUS,
    reason="Airflow 3.0's dag.test() does not show a failed task's exception in its output, which this test reads",
)


def import_string(path: str) -> Any:
    """``module.Name`` imported, as the triggerer imports a trigger from its classpath."""
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def dagbag_class() -> Any:
    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag


def dag_bag(folder: Path | str, **kwargs: Any) -> Any:
    """A DagBag of ``folder`` without Airflow's own examples."""
    return dagbag_class()(dag_folder=str(folder), include_examples=False, **kwargs)


def _sync_bundles(session: Any) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db(session=session)


def register_dag(dag: Any) -> None:
    """Write a DAG built in a test to the metadata DB the way the dag-processor would (bundle
    ``dags-folder``): ``dag.test()`` only runs serialized DAGs."""
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        _sync_bundles(session)
    with create_session() as session:
        if AIRFLOW_V_3_1_PLUS:
            update_dag_parsing_results_in_db(
                BUNDLE, None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
            )
        else:  # 3.0: no parse duration, no LazyDeserializedDAG.from_dag (as DagBag.sync_to_db does it)
            from airflow.serialization.serialized_objects import SerializedDAG

            if getattr(dag, "relative_fileloc", None) is None:  # what the 3.0 DagBag sets while parsing
                dag.relative_fileloc = dag.fileloc
            lazy = LazyDeserializedDAG(data=SerializedDAG.to_dict(dag))
            update_dag_parsing_results_in_db(BUNDLE, None, [lazy], {}, set(), session=session)


def sync_dags_folder(folder: Path) -> None:
    """Parse every DAG file of ``folder`` (the dags folder) into the metadata DB, as the dag-processor
    does; fails on an import error."""
    from airflow.utils.session import create_session

    with create_session() as session:
        _sync_bundles(session)
    if AIRFLOW_V_3_1_PLUS:
        if AIRFLOW_V_3_2_PLUS:
            from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
        else:
            from airflow.models.dagbag import BundleDagBag, sync_bag_to_db  # type: ignore[no-redef]
        named = {"bundle_name": BUNDLE} if AIRFLOW_V_3_2_PLUS else {}  # 3.1's takes no bundle name
        bag = BundleDagBag(dag_folder=folder, bundle_path=folder, **named)
        assert not bag.import_errors, bag.import_errors
        sync_bag_to_db(bag, BUNDLE, None)
    else:
        bag = dag_bag(folder)
        assert not bag.import_errors, bag.import_errors
        bag.sync_to_db(BUNDLE, None)
