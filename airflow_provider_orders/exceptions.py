"""The error taxonomy shared by hooks, operators, sensors and triggers.

Two families, and the family decides what Airflow does with a failed task:

* :class:`PermanentOrdersError` subclasses :class:`AirflowFailException`: the task fails at once and
  does not use its retries. These are the errors a retry cannot heal: a rejected request, bad
  credentials, an unknown order, a missing permission, a remote run that failed, an order whose creation
  may or may not have happened (a blind retry could create a second one).
* :class:`TransientOrdersError` subclasses plain :class:`AirflowException`: the hook already retried it
  with backoff and gave up; Airflow's own task retries may try again later.

Every message is written for the DAG author: it names the kitchen / recipe / variation or the order id,
and quotes the API's own text. No message ever contains a password, a JWT or an API token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_orders.models.datakitchen import describe_order

if TYPE_CHECKING:
    from airflow_provider_orders.models.datakitchen import OrderRun


class OrdersProviderError(AirflowException):
    """Base class of every error raised by ``airflow_provider_orders``.

    :param message: the user-facing message.
    :param api_message: the API's own error message, verbatim, when it sent one.
    :param api_detail: the API's detail (a string, or DataKitchen's list of issues), when it sent one.
    :param http_status: the HTTP status code, when there was an HTTP answer.
    :param code: the API's error code (ezCater ``extensions.code``; DataKitchen ``code``), when present.
    """

    def __init__(
        self,
        message: str,
        *,
        api_message: str | None = None,
        api_detail: Any = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.api_message = api_message
        self.api_detail = api_detail
        self.http_status = http_status
        self.code = code
        #: For a mutation: False when the hook proves that no attempt reached the API (the connection was
        #: never established), True when one may have; None when the hook does not say.
        self.reached_api: bool | None = None

    def __str__(self) -> str:
        return self.message


class PermanentOrdersError(OrdersProviderError, AirflowFailException):
    """An error a retry cannot heal: the task fails without consuming its retries."""


class TransientOrdersError(OrdersProviderError):
    """A failure that may heal by itself (429, 5xx, connection error, timeout).

    Raised only after the hook's own bounded retries are spent; Airflow task retries apply.
    """


class RequestRejectedError(PermanentOrdersError):
    """The API refused the request as malformed or impossible (DataKitchen 400 / 412 / 417, other 4xx)."""


class AuthenticationFailedError(PermanentOrdersError):
    """The credentials (DataKitchen username/password, ezCater API token) were refused."""


class OrderNotFoundError(PermanentOrdersError):
    """The order (or order run) does not exist (ezCater 404 ``Couldn't find Order``)."""


class NotAuthorizedError(PermanentOrdersError):
    """The user or token may not act on this resource (403)."""


class FeatureNotEnabledError(PermanentOrdersError):
    """ezCater: the accept/reject API feature is not enabled for the order's caterer."""


class InvalidStateTransitionError(PermanentOrdersError):
    """ezCater: the order is not in a state that allows the mutation.

    :param order_state: the order's ``lifecycle.orderIsCurrently`` when the caller looked it up.
    """

    def __init__(self, message: str, *, order_state: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.order_state = order_state


class OrderRunFailedError(PermanentOrdersError):
    """DataKitchen: the order run ended in SERVING_ERROR or STOPPED_SERVING (or timed out and was stopped).

    :param status: the run's ``status`` (e.g. ``SERVING_ERROR``).
    :param orderrun_status: the API's ``orderrun_status`` text for the run.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str | None = None,
        orderrun_status: str | None = None,
        order_run_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.status = status
        self.orderrun_status = orderrun_status
        self.order_run_id = order_run_id

    @classmethod
    def ended(
        cls,
        run: OrderRun,
        *,
        kitchen: str,
        order_id: str | None,
        recipe: str | None = None,
        variation: str | None = None,
        headline: str | None = None,
        note: str | None = None,
    ) -> OrderRunFailedError:
        """The error for a run that ended in SERVING_ERROR / STOPPED_SERVING, quoting DataKitchen's text.

        :param headline: what the run's report says failed (node, first failed test), put first.
        :param note: what to do next, put last.
        """
        where = describe_order(kitchen, order_id, recipe=recipe, variation=variation, order_run_id=run.id)
        api = f": {run.message}" if run.message else ""
        lead = f" ({headline})" if headline else ""
        tail = f". {note}" if note else ""
        return cls(
            f"{where} ended with status {run.status_text}{api}{lead}{tail}",
            status=run.status_text,
            orderrun_status=run.message,
            order_run_id=run.id,
            api_message=run.message,
        )

    @classmethod
    def timed_out(
        cls, where: str, *, timeout: float, run: OrderRun | None, stopped: str
    ) -> OrderRunFailedError:
        """The error for a wait that passed its ``timeout``; ``stopped`` says what was stopped."""
        status = run.status_text if run is not None else None
        return cls(
            f"{where} did not finish within timeout={timeout:g}s (last status: "
            f"{status or 'no run yet'}); {stopped}.",
            status=status,
            order_run_id=run.id if run is not None else None,
        )


class OrderOutcomeUnknownError(PermanentOrdersError):
    """DataKitchen: the create-order request may have reached the server but its answer was lost.

    Retrying blindly could create a second order, so the task fails; the message says how to find the
    order that may exist.
    """


__all__ = [
    "AuthenticationFailedError",
    "FeatureNotEnabledError",
    "InvalidStateTransitionError",
    "NotAuthorizedError",
    "OrderNotFoundError",
    "OrderOutcomeUnknownError",
    "OrderRunFailedError",
    "OrdersProviderError",
    "PermanentOrdersError",
    "RequestRejectedError",
    "TransientOrdersError",
]
