"""What both triggers share: poll a read until it decides the wait, or until the deadline, then yield
exactly one :class:`~airflow_provider_orders.triggers.events.WaitEvent`.

Triggers only read (never create or mutate: a triggerer restart replays ``run()`` from the start).
The first read comes one poll interval after the start: the worker read the same thing just before
deferring, so this saves a request, and it keeps an event from firing within seconds of the deferral,
which Airflow 3.3.2's scheduler can turn into a spurious task retry (apache/airflow#72716).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger

from airflow_provider_orders.triggers.events import WaitEvent, WaitOutcome

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow.triggers.base import TriggerEvent


#: The shortest pause between two reads of a trigger.
MIN_POLL_INTERVAL = 0.1


class PollingTrigger(BaseTrigger):
    """Base of the provider's triggers: the loop, the deadline and the one event.

    Subclasses implement :meth:`poll` (one read: a decisive event, or None to keep waiting),
    :meth:`event_fields` (the API fields every event carries) and :meth:`describe` (the awaited thing,
    for messages).

    :param poll_interval: seconds between two reads; at least :data:`MIN_POLL_INTERVAL` (operators and
        sensors refuse 0; a smaller value from an older serialized trigger is raised to it, never a busy
        loop on the triggerer's event loop).
    :param end_time: epoch seconds after which a ``timeout`` event is sent (None: no limit). Tasks defer
        with ``timeout=None`` so that the timeout reaches ``execute_complete``, which acts on it.
    """

    def __init__(self, *, poll_interval: float, end_time: float | None) -> None:
        super().__init__()
        self.poll_interval = max(float(poll_interval), MIN_POLL_INTERVAL)
        self.end_time = float(end_time) if end_time is not None else None

    def describe(self) -> str:
        raise NotImplementedError

    def event_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    async def poll(self) -> WaitEvent | None:
        raise NotImplementedError

    def timeout_message(self) -> str:
        return f"{self.describe()} did not finish before the deadline"

    def error_message(self, exc: BaseException) -> str:
        return f"{self.describe()}: {exc}"

    def event(self, outcome: WaitOutcome, message: str) -> WaitEvent:
        return WaitEvent(outcome, message, self.event_fields())

    async def _pause(self) -> None:
        """Sleep one poll interval, or less when the deadline comes first."""
        pause = self.poll_interval
        if self.end_time is not None:
            pause = max(0.0, min(pause, self.end_time - time.time()))
        await asyncio.sleep(pause)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_orders.hooks._http import (  # not at DAG parse time
            pending_cancellations,
            reraise_swallowed_cancellation,
        )

        cancellations = pending_cancellations()
        try:
            self.log.info("Waiting for %s (every %g s)", self.describe(), self.poll_interval)
            while True:
                await self._pause()
                decided = await self.poll()
                # A cancelled trigger never polls on nor fires, even if a library swallowed the cancel.
                reraise_swallowed_cancellation(cancellations)
                if decided is not None:
                    yield decided.trigger_event()
                    return
                if self.end_time is not None and time.time() >= self.end_time:
                    yield self.event(WaitOutcome.TIMEOUT, self.timeout_message()).trigger_event()
                    return
        except Exception as exc:
            reraise_swallowed_cancellation(cancellations)  # no error event from a cancelled trigger
            self.log.exception("%s failed while waiting for %s", type(self).__name__, self.describe())
            yield WaitEvent.from_exception(
                exc, self.error_message(exc), **self.event_fields()
            ).trigger_event()


__all__ = ["MIN_POLL_INTERVAL", "PollingTrigger"]
