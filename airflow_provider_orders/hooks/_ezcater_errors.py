"""What an ezCater answer means: ``data``, a permanent error, or a :class:`.RetryableError`.

Pure mapping, no I/O, the same for the sync and the async path:

* :func:`interpret`: one :class:`.Answer` (HTTP status, headers, parsed body, text) → ``data``, or the
  error it means. GraphQL ``errors`` are read whatever the HTTP status (ezCater sends them with 200 and
  with 4xx/5xx); their codes are matched without regard to case, spaces or underscores
  (:func:`.normalize_code`).
* :func:`client_failure`: a request that got no answer → configuration error or retryable failure.
* A mutation that may have been acted on by the server although its answer was lost (a 5xx other than
  :data:`.NOT_ACTED_STATUSES`, a dropped connection, an answer that is not a GraphQL result) fails with
  :class:`LostAnswerError`; :class:`CallState` notes it for the whole call, so that the hook can count an
  INVALID_STATE_TRANSITION on a later attempt as that earlier attempt's success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    FeatureNotEnabledError,
    InvalidStateTransitionError,
    NotAuthorizedError,
    OrderNotFoundError,
    RequestRejectedError,
)
from airflow_provider_orders.hooks._http import (
    NOT_ACTED_STATUSES,
    configuration_failure,
    describe_client_error,
    is_transient_status,
    never_sent,
)
from airflow_provider_orders.hooks._retry import RetryableError, parse_retry_after
from airflow_provider_orders.models.ezcater import GraphQLError, normalize_code

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from airflow_provider_orders.hooks._ezcater_graphql import Answer, Operation

_INVALID_STATE = normalize_code("INVALID_STATE_TRANSITION")
_FEATURE_NOT_ENABLED = normalize_code("FEATURE_NOT_ENABLED")
_UNAUTHENTICATED = {normalize_code("UNAUTHENTICATED"), normalize_code("INVALID_TOKEN")}
_FORBIDDEN = {normalize_code("FORBIDDEN")}
_NOT_FOUND = {normalize_code("NOT_FOUND")}


class Endpoint(Protocol):
    """What the messages name: the connection, its endpoint, and the token to scrub from any text."""

    @property
    def conn_id(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def token(self) -> str: ...


class LostAnswerError(RetryableError):
    """A mutation was sent and its answer lost: the server may have acted on it. Retryable."""


class NotSentError(RetryableError):
    """The request never reached ezCater: the connection was not established."""


@dataclass
class CallState:
    """What happened across the attempts of one hook call. Wrap each attempt in ``with state:``."""

    answer_lost: bool = False  # an attempt sent a mutation and lost the answer
    reached: bool = False  # an attempt may have reached ezCater (anything but a connection never made)

    def __enter__(self) -> CallState:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, LostAnswerError):
            self.answer_lost = True
        if not isinstance(exc, NotSentError):
            self.reached = True


def _subject(order_id: str, subject: str | None) -> str:
    """What a call acts on, in messages: ``subject`` when given, else ``order '<order_id>'``."""
    return subject or f"order '{order_id}'"


def describe_call(operation: Operation, order_id: str, *, subject: str | None = None) -> str:
    """``ezCater AcceptOrder (accept order '<id>')``: the call, in retry and budget messages.

    ``subject`` names what a call that is not about an order acts on (``the subscriber of connection
    'x'``); by default it is ``order '<order_id>'``.
    """
    return f"ezCater {operation.name} ({operation.verb} {_subject(order_id, subject)})"


def scrub(endpoint: Endpoint, text: str) -> str:
    """``text`` with the API token replaced by ``***``."""
    return text.replace(endpoint.token, "***") if endpoint.token else text


def auth_error(endpoint: Endpoint, quoted: str, **kwargs: Any) -> AuthenticationFailedError:
    return AuthenticationFailedError(
        f"ezCater at {endpoint.url} refused the API token of connection '{endpoint.conn_id}': {quoted}. "
        "Check the token (ezManage shows it only once; generate a new one if lost).",
        **kwargs,
    )


def transient(
    operation: Operation, status: int, headers: Mapping[str, str], detail: str | None
) -> RetryableError:
    """A retryable failure. After a status the server may have acted on, a mutation's is a
    :class:`LostAnswerError`."""
    lost = operation.mutation and status not in NOT_ACTED_STATUSES
    return (LostAnswerError if lost else RetryableError)(
        f"ezCater answered HTTP {status}" + (f": {detail}" if detail else ""),
        retry_after=parse_retry_after(headers.get("Retry-After")),
        http_status=status,
    )


def graphql_errors(
    endpoint: Endpoint,
    operation: Operation,
    order_id: str,
    status: int | None,
    headers: Mapping[str, str],
    errors: list[Any],
    *,
    subject: str | None = None,
) -> Exception:
    """The error a GraphQL ``errors`` list means (whatever the HTTP status).

    ``subject``: what the call acts on when it is not an order (see :func:`describe_call`).
    """
    parsed = [GraphQLError.from_api(err, secret=endpoint.token) for err in errors] or [
        GraphQLError("(no message)")
    ]
    about_order = subject is None
    subject = _subject(order_id, subject)

    def pick(
        predicate: Callable[[GraphQLError], bool], http_fallback: int | None = None
    ) -> GraphQLError | None:
        found = next((e for e in parsed if predicate(e)), None)
        if found is None and http_fallback is not None and status == http_fallback:
            found = parsed[0]
        return found

    def kwargs(e: GraphQLError) -> dict[str, Any]:
        return {
            "api_message": e.message,
            "http_status": e.statuscode or status,
            "code": e.code,
            "api_detail": errors,
        }

    if e := pick(lambda e: e.normalized_code == _INVALID_STATE):
        return InvalidStateTransitionError(
            f"ezCater refused to {operation.verb} {subject}: {e.quoted}.", order_state=None, **kwargs(e)
        )
    if e := pick(lambda e: e.normalized_code == _FEATURE_NOT_ENABLED):
        hint = (
            "The accept/reject API is not enabled for the caterer's brand; ask ezCater to enable it."
            if about_order
            else "Ask ezCater to enable this feature for the API user."
        )
        return FeatureNotEnabledError(
            f"ezCater cannot {operation.verb} {subject}: {e.quoted}. {hint}", **kwargs(e)
        )
    if e := pick(lambda e: e.statuscode == 401 or e.normalized_code in _UNAUTHENTICATED, http_fallback=401):
        return auth_error(endpoint, e.quoted, **kwargs(e))
    if e := pick(
        lambda e: (
            e.statuscode == 404
            or e.normalized_code in _NOT_FOUND
            or e.message.lower().startswith("couldn't find")
        )
    ):
        return OrderNotFoundError(
            f"ezCater could not find {subject} (to {operation.verb} it): {e.quoted}.", **kwargs(e)
        )
    if e := pick(lambda e: e.statuscode == 403 or e.normalized_code in _FORBIDDEN, http_fallback=403):
        return NotAuthorizedError(
            f"The ezCater API user of connection '{endpoint.conn_id}' may not {operation.verb} "
            f"{subject}: {e.quoted}. Ask ezCater for access to "
            + ("the order's caterer." if about_order else "it."),
            **kwargs(e),
        )
    first = parsed[0]
    retry_status = first.statuscode if first.statuscode and is_transient_status(first.statuscode) else None
    if retry_status is None and status is not None and is_transient_status(status):
        retry_status = status
    if retry_status is not None:
        return transient(operation, retry_status, headers, first.quoted)
    return RequestRejectedError(
        f"ezCater rejected the request to {operation.verb} {subject}: {first.quoted}.", **kwargs(first)
    )


def interpret(
    answer: Answer, operation: Operation, order_id: str, endpoint: Endpoint, *, subject: str | None = None
) -> dict[str, Any]:
    """Map one answer to its ``data``, or raise the permanent error or RetryableError it means.

    ``subject``: what the call acts on when it is not an order (see :func:`describe_call`).
    """
    status, headers, body, text = answer.status, answer.headers, answer.body, answer.text
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        raise graphql_errors(endpoint, operation, order_id, status, headers, body["errors"], subject=subject)
    what = _subject(order_id, subject)
    if status >= 400:
        snippet = scrub(endpoint, text.strip()[:300]) if text else ""
        quoted = f": {snippet}" if snippet else ""
        kwargs: dict[str, Any] = {"http_status": status, "api_message": snippet or None}
        if status == 401:
            raise auth_error(endpoint, f"HTTP 401{quoted}", **kwargs)
        if status == 403:
            raise NotAuthorizedError(
                f"ezCater at {endpoint.url} refused the request to {operation.verb} {what} "
                f"(HTTP 403){quoted}.",
                **kwargs,
            )
        if is_transient_status(status):
            raise transient(operation, status, headers, snippet or None)
        raise RequestRejectedError(
            f"ezCater at {endpoint.url} rejected the request to {operation.verb} {what} "
            f"(HTTP {status}){quoted}. Is the connection host the GraphQL endpoint URL?",
            **kwargs,
        )
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise transient(operation, status, headers, "not a GraphQL result")
    return data


def client_failure(endpoint: Endpoint, operation: Operation, exc: BaseException) -> Exception:
    """The error of a request that got no answer (``exc`` is the HTTP client's exception)."""
    permanent = configuration_failure(exc, f"ezCater at {endpoint.url}", endpoint.conn_id)
    if permanent is not None:
        return permanent
    described = scrub(endpoint, describe_client_error(exc))
    if never_sent(exc):
        return NotSentError(f"could not connect to ezCater at {endpoint.url} ({described})")
    return (LostAnswerError if operation.mutation else RetryableError)(
        f"the connection to ezCater at {endpoint.url} failed ({described})"
    )


__all__ = [
    "CallState",
    "Endpoint",
    "LostAnswerError",
    "NotSentError",
    "auth_error",
    "client_failure",
    "describe_call",
    "graphql_errors",
    "interpret",
    "scrub",
    "transient",
]
