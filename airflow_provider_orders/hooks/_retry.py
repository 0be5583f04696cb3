"""The retry policy shared by both hooks (tenacity).

One attempt of an API call either succeeds, raises a permanent :mod:`~airflow_provider_orders.exceptions`
error (never retried), or raises :class:`RetryableError` (429, 5xx, connection error, timeout) which
is retried with exponential backoff and jitter, up to ``max_retries`` more attempts. A ``Retry-After``
header is honoured (capped at :data:`MAX_WAIT_SECONDS`). When the budget is spent the caller gets a
:class:`~airflow_provider_orders.exceptions.TransientOrdersError` that names the call and the last
failure.

Which failures are retryable is decided by the hooks, not here: order creation on DataKitchen is not
idempotent, so only failures where the server certainly did not act reach this module as retryable.
"""

from __future__ import annotations

import email.utils
import inspect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import tenacity

from airflow_provider_orders.exceptions import TransientOrdersError

if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable

T = TypeVar("T")
#: tenacity 9.2 renamed wait_exponential_jitter's ``initial`` to ``multiplier`` (the old name warns on
#: every call, into task logs and the CLI's output); 8.x knows only ``initial``.
_BACKOFF_BASE_ARG = (
    "multiplier"
    if "multiplier" in inspect.signature(tenacity.wait_exponential_jitter.__init__).parameters
    else "initial"
)

#: Upper bound of one wait between attempts, whether from backoff or from ``Retry-After``.
MAX_WAIT_SECONDS = 60.0


class RetryableError(Exception):
    """Internal: one attempt failed in a way that may heal by itself.

    :param reason: what went wrong, in the user's terms (no secrets).
    :param retry_after: seconds the server asked us to wait (``Retry-After``), if it did.
    :param http_status: the HTTP status, when there was an answer.
    :param api_message: the API's own error text, when it sent one.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        http_status: int | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.http_status = http_status
        self.api_message = api_message


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_retries`` extra attempts, backoff ``retry_delay * 2**n`` plus jitter."""

    max_retries: int = 5
    retry_delay: float = 1.0
    max_wait: float = MAX_WAIT_SECONDS

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        """Retry-After when the server sent one (capped), else exponential backoff with jitter."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return min(error.retry_after, self.max_wait)
        first = {_BACKOFF_BASE_ARG: self.retry_delay}
        backoff = tenacity.wait_exponential_jitter(max=self.max_wait, jitter=self.retry_delay, **first)
        return float(backoff(retry_state))

    def _tenacity_kwargs(self, what: str, log: logging.Logger | Any) -> dict[str, Any]:
        def before_sleep(retry_state: tenacity.RetryCallState) -> None:
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
            log.warning(
                "%s: %s; retrying in %.2f s (attempt %d of %d)",
                what,
                getattr(error, "reason", error),
                delay,
                retry_state.attempt_number + 1,
                self.attempts,
            )

        return {
            "stop": tenacity.stop_after_attempt(self.attempts),
            "wait": self._wait,
            "retry": tenacity.retry_if_exception_type(RetryableError),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _exhausted(self, what: str, error: RetryableError) -> TransientOrdersError:
        return TransientOrdersError(
            f"{what} failed after {self.attempts} attempt(s): {error.reason}",
            http_status=error.http_status,
            api_message=error.api_message,
        )

    def call(self, fn: Callable[[], T], *, what: str, log: logging.Logger | Any) -> T:
        """Run ``fn`` with this policy; a spent budget raises TransientOrdersError.

        The first attempt runs directly: the tenacity machinery (a ``Retrying`` object, its thread-local
        state and reference cycles) is only built once an attempt has failed, not on every call.
        """
        try:
            return fn()
        except RetryableError as error:
            first = error
        retrying = tenacity.Retrying(**self._tenacity_kwargs(what, log))
        try:
            return retrying(_replay_first_failure(first, fn))
        except RetryableError as error:
            raise self._exhausted(what, error) from error

    async def acall(self, fn: Callable[[], Awaitable[T]], *, what: str, log: logging.Logger | Any) -> T:
        """Async twin of :meth:`call` (tenacity ``AsyncRetrying``, non-blocking sleeps)."""
        try:
            return await fn()
        except RetryableError as error:
            first = error
        retrying = tenacity.AsyncRetrying(**self._tenacity_kwargs(what, log))
        try:
            return await retrying(_areplay_first_failure(first, fn))
        except RetryableError as error:
            raise self._exhausted(what, error) from error


def _replay_first_failure(first: RetryableError, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` for tenacity, whose attempt 1 is the failure already seen (re-raised, not re-run)."""
    pending = [first]

    def attempt() -> T:
        if pending:
            raise pending.pop()
        return fn()

    return attempt


def _areplay_first_failure(
    first: RetryableError, fn: Callable[[], Awaitable[T]]
) -> Callable[[], Awaitable[T]]:
    """Async :func:`_replay_first_failure`."""
    pending = [first]

    async def attempt() -> T:
        if pending:
            raise pending.pop()
        return await fn()

    return attempt


__all__ = ["MAX_WAIT_SECONDS", "RetryPolicy", "RetryableError", "parse_retry_after"]
