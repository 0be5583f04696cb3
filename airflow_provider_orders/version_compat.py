"""Which Airflow 3 release this provider runs on, and what it does where a feature is missing.

The flags are common-compat's own (``airflow.providers.common.compat.version_compat``), re-exported so the
package reads them from one module; imports that moved between releases also come from
``airflow.providers.common.compat`` (the ecosystem's bridge), not from probes of our own.

What Airflow 3.3 added and the provider uses, and what it does on 3.0-3.2 (the README's table
"Airflow versions" says the same to users):

- ``task_state_store`` (a task's records that survive its tries): the operators write "order X sent by
  try N" there, so a retry reattaches instead of ordering again. Without it,
  ``SubmitRecipeOrderOperator(reference_variable=...)`` finds the earlier try's order in DataKitchen's
  order list; without that either, and for the ezCater accept/reject operators, a retry cannot tell
  that its earlier try already acted: warned once per process.
- ``asset_state_store`` (an event trigger's watermark across triggerer restarts): without it the
  DataKitchen finished-runs watcher keeps its watermark in memory, so runs that finish while the
  triggerer is down are not announced: warned once per process.
- trigger ``on_kill`` (a deferred task killed, cleared or marked by a user): without it the remote run
  a deferred task waits on keeps going when the task is cleared or marked: warned once per process,
  when a task defers.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.version_compat import (
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
    get_base_airflow_version_tuple,
)

if TYPE_CHECKING:
    import logging

#: The running Airflow's (major, minor, micro), for the warnings.
AIRFLOW_VERSION = get_base_airflow_version_tuple()

#: Airflow 3.3 features the provider degrades without: feature -> what the user loses, in their terms.
MISSING_FEATURE_EFFECTS: dict[str, str] = {
    "task_state_store": (
        "a retry of this task cannot see what its earlier try sent, so a try that failed after sending "
        "may be followed by a second order or mutation (SubmitRecipeOrderOperator: set "
        "reference_variable= to let a retry find its order in DataKitchen instead)"
    ),
    "asset_state_store": (
        "the watcher's watermark lives in the triggerer's memory: DataKitchen runs that finish while "
        "the triggerer is down are not announced"
    ),
    "trigger_on_kill": (
        "clearing or marking a deferred task does not stop the remote run it waits on; stop it in DataKitchen"
    ),
}

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_missing_once(feature: str, log: logging.Logger | Any, subject: str = "") -> bool:
    """Log, once per process, that ``feature`` (a key of :data:`MISSING_FEATURE_EFFECTS`) is missing
    on this Airflow and what follows from it. Returns whether this call logged.

    ``subject`` names what is affected (a task, an asset) in the one line that is logged.
    """
    with _warned_lock:
        if feature in _warned:
            return False
        _warned.add(feature)
    version = ".".join(str(part) for part in AIRFLOW_VERSION)
    log.warning(
        "Airflow %s gives no %s (Airflow 3.3 does)%s: %s. This is said once per process; see the "
        "README's 'Airflow versions' table.",
        version,
        feature,
        f" for {subject}" if subject else "",
        MISSING_FEATURE_EFFECTS[feature],
    )
    return True


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "MISSING_FEATURE_EFFECTS",
    "get_base_airflow_version_tuple",
    "warn_missing_once",
]
