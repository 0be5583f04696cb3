"""What a DataKitchen answer or client failure means: a result, a permanent error, or a retry.

Pure functions of (the call's description, the connection's facts, status, headers, body text): no I/O
and no hook instance. The hook sends; these decide. Also here: readers of DataKitchen's error bodies
(its several shapes of ``message`` / ``error`` / ``detail``) and the "order may have been created"
message for a create whose outcome is unknown.

Which failures are retried: a status after which the server certainly did not act
(:data:`~airflow_provider_orders.hooks._http.NOT_ACTED_STATUSES`) always; any other transient failure
(5xx, a connection lost after sending) only when the call does not create an order, which is not
idempotent. A create that may have reached the server raises :class:`OrderOutcomeUnknownError`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    NotAuthorizedError,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    RequestRejectedError,
)
from airflow_provider_orders.hooks._http import (
    NOT_ACTED_STATUSES,
    configuration_failure,
    describe_client_error,
    is_transient_status,
    never_sent,
    quote_segment,
)
from airflow_provider_orders.hooks._retry import RetryableError, parse_retry_after
from airflow_provider_orders.models.datakitchen import created_order_id

if TYPE_CHECKING:
    from collections.abc import Mapping


class ConnectionFacts(Protocol):
    """What error messages say about the connection (the hook's parsed connection has these)."""

    @property
    def conn_id(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str:
        """Only to scrub it from quoted API text, should the API ever echo it."""
        ...


class CallFacts(Protocol):
    """What error messages say about the call (the hook's request description has these)."""

    @property
    def action(self) -> str:
        """What the call does, to follow "to": ``read order run 'x' in kitchen 'k'``."""
        ...

    @property
    def creates_order(self) -> bool: ...
    @property
    def kitchen(self) -> str: ...
    @property
    def target(self) -> str:
        """For a create: what the order asks to run (``kitchen 'k', recipe 'r', variation 'v'``)."""
        ...


# --------------------------------------------------------------------------------------------------
# DataKitchen's error bodies
# --------------------------------------------------------------------------------------------------


def json_or_none(text: str) -> Any:
    """The JSON value of ``text``, or None when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def format_detail(detail: Any) -> str:
    """DataKitchen ``detail``: a string, or a list of ``{severity, file, description}`` issues."""
    if detail is None or detail == "":
        return ""
    if isinstance(detail, list):
        items = []
        for issue in detail:
            if isinstance(issue, dict):
                where = " ".join(str(issue[k]) for k in ("severity", "file") if issue.get(k))
                desc = str(issue.get("description") or issue.get("message") or "")
                items.append(f"{where}: {desc}" if where else desc)
            else:
                items.append(str(issue))
        return "; ".join(i for i in items if i)
    if isinstance(detail, dict):
        return json.dumps(detail, sort_keys=True)
    return str(detail)


def api_error(body: Any, text: str) -> tuple[str | None, Any, str | None]:
    """(message, detail, code) from any of DataKitchen's error shapes, or the raw text."""
    message: str | None = None
    detail: Any = None
    code: str | None = None
    if isinstance(body, dict):
        code = str(body["code"]) if body.get("code") else None
        outer = body.get("message")
        err = body.get("error")
        if isinstance(outer, dict):
            err = outer.get("error", err)
            if err is None and outer.get("message"):
                message = str(outer["message"])
        elif isinstance(outer, str) and outer:
            message = outer
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("description") or message or "") or None
            detail = err.get("detail")
        elif isinstance(err, str) and err:
            message = err if message is None else f"{message}: {err}"
        if message is None and body.get("description"):
            message = str(body["description"])
    elif text and text.strip():
        message = text.strip()[:500]
    return message, detail, code


def quote_api(conn: ConnectionFacts, message: str | None, detail: Any) -> str:
    """``: <API message> — <detail>``, with the password scrubbed should the API ever echo it."""
    parts = [p for p in (message, format_detail(detail)) if p]
    if not parts:
        return ""
    text = ": " + " — ".join(parts)
    return text.replace(conn.password, "***") if conn.password else text


def unknown_outcome_message(conn: ConnectionFacts, call: CallFacts, what_happened: str) -> str:
    """Why a create's outcome is unknown, and where to look for the order that may exist."""
    kitchen = quote_segment(call.kitchen)
    if call.action.startswith("resume "):
        return (
            f"DataKitchen may have resumed {call.target}: {what_happened}. It was not sent again, "
            "because a resume that arrived twice is refused or starts a second run. Read the order's "
            "runs: a resumed run shows SERVING_RERAN and the order has a newer run."
        )
    return (
        f"The order for {call.target} may have been created: {what_happened}. It was not retried, "
        "because a "
        "second attempt could create a second order. Before re-running, look for it on the "
        f"DataKitchen UI's Orders page of kitchen '{call.kitchen}' or with "
        f"GET {conn.base_url}/v2/order/status/{kitchen}."
    )


# --------------------------------------------------------------------------------------------------
# API calls
# --------------------------------------------------------------------------------------------------


def client_failure(conn: ConnectionFacts, call: CallFacts, exc: BaseException) -> Exception:
    """What a requests/httpx exception raised while sending ``call`` means (returned, to be raised)."""
    permanent = configuration_failure(exc, f"DataKitchen at {conn.base_url}", conn.conn_id)
    if permanent is not None:
        return permanent
    described = describe_client_error(exc)
    if never_sent(exc):
        return RetryableError(f"could not connect to DataKitchen at {conn.base_url} ({described})")
    if call.creates_order:
        return OrderOutcomeUnknownError(
            unknown_outcome_message(conn, call, f"the request was sent but no answer came back ({described})")
        )
    return RetryableError(f"the connection to DataKitchen at {conn.base_url} failed ({described})")


def interpret_answer(
    conn: ConnectionFacts, call: CallFacts, status: int, headers: Mapping[str, str], text: str
) -> Any:
    """The parsed body of a 2xx answer; otherwise raise the permanent error or RetryableError it means.

    A 401 reaching this function is final: the caller already logged in again once.
    """
    body = json_or_none(text)
    if 200 <= status < 300:
        if body is not None:
            return body
        reason = f"DataKitchen answered HTTP {status} with a body that is not JSON"
        if call.creates_order:
            raise OrderOutcomeUnknownError(unknown_outcome_message(conn, call, reason), http_status=status)
        raise RetryableError(reason, http_status=status)
    message, detail, code = api_error(body, text)
    quoted = quote_api(conn, message, detail)
    if status in NOT_ACTED_STATUSES or (is_transient_status(status) and not call.creates_order):
        raise RetryableError(
            f"DataKitchen answered HTTP {status}{quoted}",
            retry_after=parse_retry_after(headers.get("Retry-After")),
            http_status=status,
            api_message=message,
        )
    errors = {"api_message": message, "api_detail": detail, "http_status": status, "code": code}
    if status >= 500:
        raise OrderOutcomeUnknownError(
            unknown_outcome_message(conn, call, f"DataKitchen answered HTTP {status}{quoted}"), **errors
        )
    if status == 401:
        raise AuthenticationFailedError(
            f"DataKitchen at {conn.base_url} refused the token of user '{conn.username}' to "
            f"{call.action}, even right after a fresh login (HTTP 401){quoted}",
            **errors,
        )
    if status == 403:
        raise NotAuthorizedError(
            f"DataKitchen user '{conn.username}' is not authorized to {call.action} (HTTP 403){quoted}",
            **errors,
        )
    if status == 404:
        raise OrderNotFoundError(f"DataKitchen found nothing to {call.action} (HTTP 404){quoted}", **errors)
    raise RequestRejectedError(
        f"DataKitchen rejected the request to {call.action} (HTTP {status}){quoted}", **errors
    )


def created_order(conn: ConnectionFacts, call: CallFacts, body: Any) -> str:
    """The new order's id from a create's 2xx body, or the error the body means.

    :raises RequestRejectedError: the body says the order was not created (``error``, or a ``status``
        other than ``success``).
    :raises OrderOutcomeUnknownError: the body is not an object, or names no order.
    """
    if not isinstance(body, dict):
        raise OrderOutcomeUnknownError(
            unknown_outcome_message(conn, call, "DataKitchen's answer was not a JSON object")
        )
    status = body.get("status")
    if body.get("error") or (status is not None and str(status).lower() != "success"):
        message, detail, code = api_error(body, "")
        raise RequestRejectedError(
            f"DataKitchen did not create the order for {call.target} "
            f"(status {status!r}){quote_api(conn, message, detail)}",
            api_message=message,
            api_detail=detail,
            http_status=200,
            code=code,
        )
    order_id = created_order_id(body)
    if not order_id:
        raise OrderOutcomeUnknownError(
            unknown_outcome_message(conn, call, "DataKitchen answered success without an order id")
        )
    return order_id


# --------------------------------------------------------------------------------------------------
# Login
# --------------------------------------------------------------------------------------------------


def login_answer(conn: ConnectionFacts, status: int, headers: Mapping[str, str], text: str) -> str:
    """The JWT from a ``POST /v2/login`` answer, or the error it means. Does not register the JWT."""
    if 200 <= status < 300:
        token = text.strip().strip('"').strip()
        if not token:
            raise AuthenticationFailedError(
                f"DataKitchen at {conn.base_url} answered the login of user '{conn.username}' "
                f"with HTTP {status} but no token.",
                http_status=status,
            )
        return token
    message, detail, code = api_error(json_or_none(text), text)
    quoted = quote_api(conn, message, detail)
    if is_transient_status(status):
        raise RetryableError(
            f"DataKitchen login answered HTTP {status}{quoted}",
            retry_after=parse_retry_after(headers.get("Retry-After")),
            http_status=status,
            api_message=message,
        )
    errors = {"api_message": message, "api_detail": detail, "http_status": status, "code": code}
    if status in (400, 401, 403):
        raise AuthenticationFailedError(
            f"DataKitchen at {conn.base_url} refused the credentials of user '{conn.username}' "
            f"(HTTP {status}){quoted}. Check the login and password of connection '{conn.conn_id}'.",
            **errors,
        )
    raise RequestRejectedError(
        f"DataKitchen login at {conn.base_url}/v2/login answered HTTP {status}{quoted}; is the "
        f"host of connection '{conn.conn_id}' the DataKitchen API base URL?",
        **errors,
    )


def login_failure(conn: ConnectionFacts, exc: BaseException) -> Exception:
    """What a requests/httpx exception raised by the login means (returned, to be raised).

    Logging in changes nothing on the server, so every transient failure is retryable.
    """
    permanent = configuration_failure(exc, f"DataKitchen at {conn.base_url}", conn.conn_id)
    if permanent is not None:
        return permanent
    described = describe_client_error(exc)
    if never_sent(exc):
        return RetryableError(f"could not connect to DataKitchen at {conn.base_url} to log in ({described})")
    return RetryableError(f"DataKitchen login at {conn.base_url} failed ({described})")


__all__ = [
    "CallFacts",
    "ConnectionFacts",
    "api_error",
    "client_failure",
    "created_order",
    "format_detail",
    "interpret_answer",
    "json_or_none",
    "login_answer",
    "login_failure",
    "quote_api",
    "unknown_outcome_message",
]
