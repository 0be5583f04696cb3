"""What both sensors share: the first poke a deferrable sensor makes on the worker before deferring."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import BaseSensorOperator, PokeReturnValue


def guarded_poke(
    sensor: BaseSensorOperator, poke: Callable[[], bool | PokeReturnValue]
) -> bool | PokeReturnValue:
    """One poke under BaseSensorOperator's soft_fail / never_fail / silent_fail rules.

    A deferrable sensor overrides ``execute`` to poke once before deferring, so it has to apply those
    rules itself, exactly as ``BaseSensorOperator.execute`` does for every poke.
    """
    try:
        return poke()
    except AirflowSkipException:
        raise
    except (AirflowSensorTimeout, AirflowFailException) as exc:
        if sensor.soft_fail or sensor.never_fail:
            raise AirflowSkipException(f"Skipping: {exc}") from exc
        raise
    except Exception as exc:
        if sensor.never_fail:
            raise AirflowSkipException(f"Skipping: {exc}") from exc
        if sensor.silent_fail:
            sensor.log.exception("Sensor poke failed; silent_fail is set, so waiting on")
            return False
        raise
