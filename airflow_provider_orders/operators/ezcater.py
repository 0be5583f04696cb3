"""Accept or reject an ezCater catering order.

Cheap to import: ``airflow.sdk`` and this package's light modules only; the hook (gql) is imported inside
the methods that use it.

Safe retries: before sending the mutation, the operator writes "try N of this task sent <mutation> for
order X" to the task state store (``context["task_state_store"]``). When a later try meets an
INVALID_STATE_TRANSITION on an order that is now in the mutation's target state, that record is what lets
it count the state as its own (an earlier try was killed mid-request, or its answer was lost after the
mutation applied). The record proves only what this attempt sent:

- it must come from a try of the current attempt: a cleared task starts clean, so after a clear an order
  that is already accepted fails with ezCater's refusal (it may carry a modification nobody accepted);
- it must be for the same order and the same mutation (``accept_modification`` included);
- a send the hook proves never reached ezCater is recorded as not sent;
- it is deleted once the mutation succeeded;
- a reject counts only ``rejected``: a customer's cancellation is not this task's doing.

Without such a record the same answer is a real refusal and fails with the API's message. What remains: a
customer who modifies the order between a killed try's accept and the retry's would have that
modification counted as accepted (ezCater does not show pending modifications in the order's state).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_orders._arguments import rendered_flag, rendered_id
from airflow_provider_orders._task_state import delete_record, try_number, written_this_attempt
from airflow_provider_orders.exceptions import (
    InvalidStateTransitionError,
    OrdersProviderError,
    PermanentOrdersError,
)
from airflow_provider_orders.models.ezcater import (
    OrderLifecycleState,
    lifecycle_state_of,
    normalize_lifecycle_state,
)
from airflow_provider_orders.version_compat import warn_missing_once

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

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
        """What this try is about to send (compared field by field with a later try's)."""
        return {"order_id": order_id, "try_number": try_number(context), "sent": True}

    def _counts(self, previous: Any, record: Mapping[str, Any], context: Context) -> bool:
        """Whether ``previous`` (an earlier try's record) proves this attempt sent this same mutation."""
        if not isinstance(previous, Mapping) or previous.get("sent") is False:
            return False
        same = all(previous.get(k) == v for k, v in record.items() if k not in ("try_number", "sent"))
        return same and written_this_attempt(previous, context, self.retries)

    def execute(self, context: Context) -> dict[str, Any]:
        order_id = rendered_id(self.order_id, "order_id", self.task_id, required=True)
        assert order_id is not None
        self._check()
        store = context.get("task_state_store")
        record = self._record(order_id, context)
        sent_earlier: Mapping[str, Any] | None = None
        before_clear: Mapping[str, Any] | None = None
        if store is None:
            warn_missing_once("task_state_store", self.log, f"task {self.task_id}")
        else:
            previous = store.get(self.state_key)
            if self._counts(previous, record, context):
                assert isinstance(previous, Mapping)
                sent_earlier = previous
            elif (
                isinstance(previous, Mapping)
                and previous.get("order_id") == order_id
                and not written_this_attempt(previous, context, self.retries)
            ):
                before_clear = previous
            # Written before sending: if the answer gets lost, the next try knows this task sent it.
            store.set(self.state_key, record)
        try:
            order = self._send(order_id)
        except InvalidStateTransitionError as exc:
            state = normalize_lifecycle_state(exc.order_state)
            if sent_earlier is None or state not in self.done_states:
                if before_clear is not None and before_clear.get("sent") and state in self.done_states:
                    raise InvalidStateTransitionError(
                        f"{exc.message} Try {before_clear.get('try_number', '?')} of this task sent the "
                        f"{self.verb} mutation before the task was cleared; a cleared task does not count "
                        "that as its own (the order may have changed since). If that earlier "
                        f"{self.verb} is what you wanted, mark this task successful.",
                        order_state=exc.order_state,
                        api_message=exc.api_message,
                        http_status=exc.http_status,
                        code=exc.code,
                    ) from exc
                raise
            self.log.warning(
                "ezCater refused to %s order %s because it is already %s. Try %s of this task sent the "
                "%s mutation (killed, or its answer was lost), so that is this task's own doing: "
                "succeeding.",
                self.verb,
                order_id,
                state,
                sent_earlier.get("try_number", "?"),
                self.verb,
            )
            order = self.hook.get_order(order_id)
        except OrdersProviderError as exc:
            if store is not None and exc.reached_api is False:
                # The hook proves no attempt reached ezCater: the record must not vouch for a later
                # accept by someone else.
                store.set(self.state_key, {**record, "sent": False})
            raise
        if store is not None:
            delete_record(store, self.state_key, log=self.log)
        self.log.info(
            "ezCater order %s is now %s", order_id, lifecycle_state_of(order) or "in an unknown state"
        )
        return order


class AcceptOrderOperator(_OrderMutationOperator):
    """Accept an ezCater order (``acceptOrder``); returns the accepted order (``uuid``, ``lifecycle``).

    :param order_id: the order's id (templated: conf, params, an upstream XCom, or mapped with
        ``.partial(...).expand(order_id=[...])``).
    :param accept_modification: accept the pending modification of an already accepted order
        (templated: ``"{{ dag_run.conf.get('accept_modification', False) }}"`` renders to text, read as
        true / false).
    :param ezcater_conn_id: connection of type ``ezcater``.

    Not found, not authorized, feature not enabled, and an order that is cancelled, rejected or already
    accepted (unless this task's earlier try did it, see the module doc) fail the task with the API's
    message and without using its retries.
    """

    template_fields: Sequence[str] = ("order_id", "accept_modification")
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

    def _check(self) -> None:
        self.accept_modification = rendered_flag(
            self.accept_modification, "accept_modification", self.task_id
        )

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
    done_states = frozenset({OrderLifecycleState.REJECTED.value})
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
