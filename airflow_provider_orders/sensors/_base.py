"""What both sensors share: the deferrable flow (one poke on the worker, then the triggerer) and the
reading of the trigger's event back on the worker.

``mode="poke"`` / ``"reschedule"`` run :class:`BaseSensorOperator`'s own loop over :meth:`poke`. With
``deferrable=True`` the sensor pokes once on the worker (so a state reached already costs no deferral),
then defers to the trigger built by :meth:`make_trigger` with the sensor's ``timeout`` as the trigger's
deadline; :meth:`execute_complete` turns the trigger's one event into the sensor's result.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_orders.triggers._polling import PollingTrigger


class DeferrableOrderSensor(BaseSensorOperator):
    """Base of ``RecipeOrderRunSensor`` and ``OrderLifecycleSensor``.

    Subclasses implement :meth:`poke`, :meth:`make_trigger`, :meth:`on_success` and
    :meth:`failure_error`.

    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``); the deadline
        is the sensor's ``timeout``.
    """

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.poke_interval <= 0:
            raise ValueError(
                f"{type(self).__name__} '{self.task_id}': poke_interval must be > 0 seconds, got "
                f"{self.poke_interval!r} (0 would read the API in a busy loop)."
            )
        self.deferrable = deferrable

    def make_trigger(self, end_time: float) -> PollingTrigger:
        """The trigger that waits for what :meth:`poke` checks, until ``end_time`` (epoch seconds)."""
        raise NotImplementedError

    def on_event(self, context: Context, event: WaitEvent) -> None:
        """Called first for every event, whatever its outcome (e.g. to push what it reports)."""

    def on_success(self, context: Context, event: WaitEvent) -> Any:
        """The sensor's return value for a ``success`` event."""
        raise NotImplementedError

    def failure_error(self, context: Context, event: WaitEvent) -> Exception:
        """The permanent error for a ``failed`` event (a state that will not lead to success)."""
        raise NotImplementedError

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        end_time = time.time() + self.timeout
        done = self._first_poke(context)
        if isinstance(done, PokeReturnValue) and done:
            return done.xcom_value
        trigger = self.make_trigger(end_time)
        self.log.info("Deferring: the triggerer waits for %s", trigger.describe())
        self.defer(trigger=trigger, method_name="execute_complete", timeout=None)

    def _first_poke(self, context: Context) -> bool | PokeReturnValue:
        """One poke under BaseSensorOperator's soft_fail / never_fail / silent_fail rules.

        A deferrable sensor overrides ``execute`` to poke once before deferring, so it applies those rules
        itself, exactly as ``BaseSensorOperator.execute`` does for every poke. (After the deferral,
        Airflow applies them to what ``execute_complete`` raises.)
        """
        try:
            return self.poke(context)
        except AirflowSkipException:
            raise
        except (AirflowSensorTimeout, AirflowFailException) as exc:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping: {exc}") from exc
            raise
        except Exception as exc:
            if self.never_fail:
                raise AirflowSkipException(f"Skipping: {exc}") from exc
            if self.silent_fail:
                self.log.exception("Sensor poke failed; silent_fail is set, so waiting on")
                return False
            raise

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        """Resume after the trigger fired."""
        wait = WaitEvent.from_payload(event)
        self.on_event(context, wait)
        if wait.outcome is WaitOutcome.SUCCESS:
            return self.on_success(context, wait)
        if wait.outcome is WaitOutcome.FAILED:
            raise self.failure_error(context, wait)
        if wait.outcome is WaitOutcome.TIMEOUT:
            raise AirflowSensorTimeout(f"Sensor timed out after {self.timeout:g}s: {wait.message}")
        raise wait.error()


__all__ = ["DeferrableOrderSensor"]
