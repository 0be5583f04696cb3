"""Accept or reject an ezCater catering order.

Cheap to import: ``airflow.sdk`` and this package's light modules only; the hook (gql) is imported inside
the methods that use it.

Safe retries: before sending the mutation, the operator writes "this task sent <mutation> for order X" to
the task state store (``context["task_state_store"]``). When a later try meets an INVALID_STATE_TRANSITION
on an order that is now in the mutation's target state, that record is what allows it to count the state
as its own (an earlier try's answer was lost, e.g. a 502 after the mutation applied). Without the record,
the same answer is a real refusal: an order accepted before this task sent anything (say, one with a
pending modification and ``accept_modification=False``) fails with the API's message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_orders._arguments import rendered_id
from airflow_provider_orders.exceptions import InvalidStateTransitionError, PermanentOrdersError
from airflow_provider_orders.models.ezcater import (
    OrderLifecycleState,
    lifecycle_state_of,
    normalize_lifecycle_state,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_orders.hooks.ezcater import EzCaterHook

#: task_state_store keys recording that a try of this task sent the mutation.
ACCEPT_STATE_KEY = "ezcater_accept_sent"
REJECT_STATE_KEY = "ezcater_reject_sent"


class _OrderMutationOperator(BaseOperator):
    """Shared flow: validate the id, record the send, call the hook, heal a lost answer."""

    template_fields: Sequence[str] = ("order_id",)
    ui_color = "#fde9d9"

    #: task_state_store key of the "sent" record.
    state_key: str = ""
    #: lifecycle states that mean "the mutation took effect".
    done_states: frozenset[str] = frozenset()
    #: for messages: "accept" / "reject".
    verb: str = ""

    def __init__(self, *, order_id: str, ezcater_conn_id: str = "ezcater_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.order_id = order_id
        self.ezcater_conn_id = ezcater_conn_id

    @cached_property
    def hook(self) -> EzCaterHook:
        from airflow_provider_orders.hooks.ezcater import EzCaterHook

        return EzCaterHook(ezcater_conn_id=self.ezcater_conn_id)

    def _check(self) -> None:
        """Validate the other rendered arguments (before anything is recorded or sent)."""

    def _send(self, order_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def _record(self, order_id: str, context: Context) -> dict[str, Any]:
        return {"order_id": order_id, "try_number": context["ti"].try_number}

    def execute(self, context: Context) -> dict[str, Any]:
        order_id = rendered_id(self.order_id, "order_id", self.task_id, required=True)
        assert order_id is not None
        self._check()
        store = context.get("task_state_store")
        sent_earlier: Mapping[str, Any] | None = None
        if store is None:
            self.log.warning(
                "No task_state_store in the context (Airflow < 3.3?): a retry of this task cannot "
                "recognise an order its earlier try already %sed.",
                self.verb,
            )
        else:
            previous = store.get(self.state_key)
            if isinstance(previous, Mapping) and previous.get("order_id") == order_id:
                sent_earlier = previous
            # Written before sending: if the answer gets lost, the next try knows this task sent it.
            store.set(self.state_key, self._record(order_id, context))
        try:
            order = self._send(order_id)
        except InvalidStateTransitionError as exc:
            state = normalize_lifecycle_state(exc.order_state)
            if sent_earlier is None or state not in self.done_states:
                raise
            self.log.warning(
                "ezCater refused to %s order %s because it is already %s. Try %s of this task sent the "
                "%s mutation and its answer was lost, so that is this task's own doing: succeeding.",
                self.verb,
                order_id,
                state,
                sent_earlier.get("try_number", "?"),
                self.verb,
            )
            order = self.hook.get_order(order_id)
        self.log.info(
            "ezCater order %s is now %s", order_id, lifecycle_state_of(order) or "in an unknown state"
        )
        return order


class AcceptOrderOperator(_OrderMutationOperator):
    """Accept an ezCater order (``acceptOrder``); returns the accepted order (``uuid``, ``lifecycle``).

    :param order_id: the order's id (templated: conf, params, an upstream XCom, or mapped with
        ``.partial(...).expand(order_id=[...])``).
    :param accept_modification: accept the pending modification of an already accepted order.
    :param ezcater_conn_id: connection of type ``ezcater``.

    Not found, not authorized, feature not enabled, and an order that is cancelled, rejected or already
    accepted (unless this task's earlier try did it, see the module doc) fail the task with the API's
    message and without using its retries.
    """

    state_key = ACCEPT_STATE_KEY
    done_states = frozenset({OrderLifecycleState.ACCEPTED.value})
    verb = "accept"

    def __init__(
        self,
        *,
        order_id: str,
        accept_modification: bool = False,
        ezcater_conn_id: str = "ezcater_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(order_id=order_id, ezcater_conn_id=ezcater_conn_id, **kwargs)
        self.accept_modification = accept_modification

    def _record(self, order_id: str, context: Context) -> dict[str, Any]:
        return {**super()._record(order_id, context), "accept_modification": bool(self.accept_modification)}

    def _send(self, order_id: str) -> dict[str, Any]:
        self.log.info(
            "Accepting ezCater order %s%s",
            order_id,
            " (its modification)" if self.accept_modification else "",
        )
        return self.hook.accept_order(order_id, accept_modification=bool(self.accept_modification))


class RejectOrderOperator(_OrderMutationOperator):
    """Reject an ezCater order (``rejectOrder``); returns the order (``uuid``, ``lifecycle``).

    :param order_id: the order's id (templated).
    :param reason: the reject reason, e.g. ``AT_DAILY_CAPACITY``, ``STAFF_SHORTAGE`` (templated).
    :param explanation: optional free text for the customer (templated).
    :param ezcater_conn_id: connection of type ``ezcater``.
    """

    template_fields: Sequence[str] = ("order_id", "reason", "explanation")
    state_key = REJECT_STATE_KEY
    done_states = frozenset({OrderLifecycleState.REJECTED.value, OrderLifecycleState.CANCELLED.value})
    verb = "reject"

    def __init__(
        self,
        *,
        order_id: str,
        reason: str,
        explanation: str | None = None,
        ezcater_conn_id: str = "ezcater_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(order_id=order_id, ezcater_conn_id=ezcater_conn_id, **kwargs)
        self.reason = reason
        self.explanation = explanation

    def _check(self) -> None:
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise PermanentOrdersError(
                f"Task '{self.task_id}': reason must be a reject reason such as 'AT_DAILY_CAPACITY', "
                f"got {self.reason!r}."
            )

    def _send(self, order_id: str) -> dict[str, Any]:
        explanation = self.explanation.strip() if isinstance(self.explanation, str) else None
        self.log.info("Rejecting ezCater order %s (%s)", order_id, self.reason.strip())
        return self.hook.reject_order(order_id, self.reason.strip(), explanation or None)


__all__ = ["ACCEPT_STATE_KEY", "REJECT_STATE_KEY", "AcceptOrderOperator", "RejectOrderOperator"]
