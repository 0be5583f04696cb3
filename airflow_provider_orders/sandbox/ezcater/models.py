"""ezCater sandbox state: seeded orders, their lifecycle and the accept / reject rules. No HTTP here.

Timed transitions (``transitions=[("submitted", 2.0), ("cancelled", 5.0)]``) run one after another:
each fires the given number of seconds after the previous one (the first after seeding). They are
applied lazily, whenever the order is read, from an injectable ``clock``. The pseudo-state
``"modified"`` marks a pending modification (the caterer must accept it with
``acceptModification: true``) without changing the state.
"""

from __future__ import annotations

import random
import string
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

DRAFT, SUBMITTED, ACCEPTED, REJECTED, CANCELLED = "draft", "submitted", "accepted", "rejected", "cancelled"
STATES = (DRAFT, SUBMITTED, ACCEPTED, REJECTED, CANCELLED)
#: Transition target that flags a pending modification instead of changing the state.
MODIFIED = "modified"
REJECT_REASONS = ("AT_DAILY_CAPACITY", "STAFF_SHORTAGE", "LACK_OF_INVENTORY")

DEMO_CATERER_UUID = "c0ffee00-0000-4000-8000-000000000001"
DEMO_CATERER_NAME = "Sandbox Catering Co."

#: Orders the CLI seeds (``EzCaterSandbox(demo_orders=True)``): name -> add_order() arguments.
DEMO_ORDERS: dict[str, dict[str, Any]] = {
    "submitted": {"uuid": "11111111-1111-4111-8111-111111111111", "state": SUBMITTED},
    "becomes-submitted": {
        "uuid": "22222222-2222-4222-8222-222222222222",
        "state": DRAFT,
        "transitions": [(SUBMITTED, 30.0)],
    },
    "pending-modification": {
        "uuid": "33333333-3333-4333-8333-333333333333",
        "state": ACCEPTED,
        "pending_modification": True,
    },
    "feature-not-enabled": {
        "uuid": "44444444-4444-4444-8444-444444444444",
        "state": SUBMITTED,
        "feature_enabled": False,
    },
    "to-reject": {"uuid": "55555555-5555-4555-8555-555555555555", "state": SUBMITTED},
}


class EzCaterError(Exception):
    """Base of the model's refusals; the HTTP layer renders each as the seed page's GraphQL error."""


class OrderNotFoundError(EzCaterError):
    """No order with that uuid: "Couldn't find Order"."""


class NotAuthorizedError(EzCaterError):
    """The token may not act for the order's caterer."""


class FeatureNotEnabledError(EzCaterError):
    """The accept/reject API feature is off for the caterer."""


class InvalidStateTransitionError(EzCaterError):
    """The order is not in a state that allows the mutation (``action`` is accept or reject)."""

    def __init__(self, action: str, state: str) -> None:
        super().__init__(f"cannot {action} an order that is {state}")
        self.action = action
        self.state = state


@dataclass
class EzOrder:
    """A seeded ezCater order."""

    uuid: str
    order_number: str
    state: str
    caterer_uuid: str
    caterer_name: str
    store_number: str
    feature_enabled: bool
    authorized: bool
    pending_modification: bool
    created_at: float
    event_time: datetime
    headcount: int
    items: list[tuple[str, str, int]]
    total_subunits: int
    transitions: list[tuple[str, float]] = field(default_factory=list)  # (state, absolute time)
    history: list[tuple[float, str]] = field(default_factory=list)
    rejection: dict[str, Any] | None = None
    #: every acceptOrder / rejectOrder that changed the order: (time, mutation, state it left the order in)
    mutations: list[tuple[float, str, str]] = field(default_factory=list)

    def advance(self, now: float) -> None:
        """Apply the timed transitions that are due."""
        while self.transitions and self.transitions[0][1] <= now:
            target, at = self.transitions.pop(0)
            if target == MODIFIED:
                self.pending_modification = True
                self.history.append((at, MODIFIED))
            else:
                self.state = target
                self.history.append((at, target))

    def to_graphql(self) -> dict[str, Any]:
        """The order as the GraphQL ``Order`` type (plain dicts: graphql-core's default resolvers read them)."""
        handoff = self.event_time - timedelta(minutes=45)
        return {
            "uuid": self.uuid,
            "orderNumber": self.order_number,
            "orderSourceType": "MARKETPLACE",
            "lifecycle": {"orderIsCurrently": self.state},
            "caterer": {
                "uuid": self.caterer_uuid,
                "name": self.caterer_name,
                "storeNumber": self.store_number,
            },
            "event": {
                "timestamp": self.event_time.isoformat(),
                "catererHandoffFoodTime": handoff.isoformat(),
                "timeZoneIdentifier": "America/New_York",
                "headcount": self.headcount,
                "orderType": "DELIVERY",
            },
            "totals": {"customerTotalDue": {"currency": "USD", "subunits": self.total_subunits}},
            "catererCart": {
                "orderItems": [{"uuid": u, "name": n, "quantity": q} for u, n, q in self.items],
            },
        }

    def to_admin(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "orderNumber": self.order_number,
            "state": self.state,
            "caterer_uuid": self.caterer_uuid,
            "feature_enabled": self.feature_enabled,
            "authorized": self.authorized,
            "pending_modification": self.pending_modification,
            "pending_transitions": [[s, at] for s, at in self.transitions],
            "rejection": self.rejection,
            "mutations": [{"time": t, "mutation": m, "state": st} for t, m, st in self.mutations],
        }


_MENU = (
    ("Boxed Lunch: Turkey Club", 12),
    ("Boxed Lunch: Veggie Wrap", 8),
    ("Garden Salad (serves 10)", 2),
    ("Cookie Platter", 1),
    ("Sparkling Water", 20),
)


class EzCaterModel:
    """Orders of one ezCater sandbox and the rules of acceptOrder / rejectOrder."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or time.time
        self.lock = threading.RLock()
        self.orders: dict[str, EzOrder] = {}
        self._random = random.Random()

    def reset(self) -> None:
        with self.lock:
            self.orders.clear()

    def add_order(
        self,
        uuid: str | None = None,
        state: str = SUBMITTED,
        caterer_uuid: str | None = None,
        feature_enabled: bool = True,
        authorized: bool = True,
        pending_modification: bool = False,
        transitions: Iterable[tuple[str, float]] | None = None,
    ) -> str:
        """Seed an order; returns its uuid. See the module docstring for ``transitions``."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        steps: list[tuple[str, float]] = []
        now = self.clock()
        at = now
        for step in transitions or ():
            target, delay = step
            if target not in (*STATES, MODIFIED):
                raise ValueError(
                    f"transition target must be one of {', '.join((*STATES, MODIFIED))}, got {target!r}"
                )
            if float(delay) < 0:
                raise ValueError(f"transition delay must not be negative, got {delay}")
            at += float(delay)
            steps.append((target, at))
        order_uuid = str(uuid or uuidlib.uuid4())
        with self.lock:
            if order_uuid in self.orders:
                raise ValueError(f"an order with uuid {order_uuid} already exists")
            rnd = self._random
            number = "".join(rnd.choices(string.ascii_uppercase + string.digits, k=3))
            number += "-" + "".join(rnd.choices(string.ascii_uppercase + string.digits, k=3))
            picks = rnd.sample(_MENU, k=3)
            items = [(str(uuidlib.uuid4()), name, qty) for name, qty in picks]
            event = datetime.fromtimestamp(now, tz=timezone.utc).replace(
                minute=0, second=0, microsecond=0
            ) + timedelta(days=2, hours=1)
            self.orders[order_uuid] = EzOrder(
                uuid=order_uuid,
                order_number=number,
                state=state,
                caterer_uuid=caterer_uuid or DEMO_CATERER_UUID,
                caterer_name=DEMO_CATERER_NAME
                if caterer_uuid in (None, DEMO_CATERER_UUID)
                else "Caterer " + str(caterer_uuid)[:8],
                store_number=f"{rnd.randint(100, 999)}",
                feature_enabled=feature_enabled,
                authorized=authorized,
                pending_modification=pending_modification,
                created_at=now,
                event_time=event,
                headcount=rnd.choice((12, 20, 25, 40)),
                items=items,
                total_subunits=rnd.randint(150, 900) * 100 + rnd.choice((0, 25, 50, 99)),
                transitions=steps,
                history=[(now, state)],
            )
        return order_uuid

    def update_order(
        self,
        uuid: str,
        *,
        state: str | None = None,
        pending_modification: bool | None = None,
        feature_enabled: bool | None = None,
        authorized: bool | None = None,
    ) -> EzOrder:
        """Change a seeded order as the outside world would (customer cancels, modification arrives...)."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        with self.lock:
            order = self._get(uuid)
            if state is not None:
                order.state = state
                order.history.append((self.clock(), state))
            if pending_modification is not None:
                order.pending_modification = pending_modification
            if feature_enabled is not None:
                order.feature_enabled = feature_enabled
            if authorized is not None:
                order.authorized = authorized
            return order

    def _get(self, uuid: str) -> EzOrder:
        order = self.orders.get(uuid)
        if order is None:
            raise OrderNotFoundError(uuid)
        order.advance(self.clock())
        return order

    def get(self, uuid: str) -> EzOrder:
        """The order (transitions applied) if the token may see it."""
        with self.lock:
            order = self._get(uuid)
            if not order.authorized:
                raise NotAuthorizedError(uuid)
            return order

    def order_state(self, uuid: str) -> str:
        """The order's current state (KeyError if there is no such order)."""
        with self.lock:
            try:
                return self._get(uuid).state
            except OrderNotFoundError:
                raise KeyError(uuid) from None

    def _actionable(self, uuid: str) -> EzOrder:
        order = self.get(uuid)
        if not order.feature_enabled:
            raise FeatureNotEnabledError(uuid)
        return order

    def accept(self, uuid: str, accept_modification: bool = False) -> EzOrder:
        """submitted -> accepted; a pending modification needs ``accept_modification=True``."""
        with self.lock:
            order = self._actionable(uuid)
            if order.state == SUBMITTED or (
                order.state == ACCEPTED and order.pending_modification and accept_modification
            ):
                order.state = ACCEPTED
                order.pending_modification = False
                order.history.append((self.clock(), ACCEPTED))
                order.mutations.append((self.clock(), "acceptOrder", ACCEPTED))
                return order
            raise InvalidStateTransitionError("accept", order.state)

    def reject(self, uuid: str, reason: str, explanation: str | None = None) -> EzOrder:
        """submitted -> rejected; accepted -> cancelled."""
        with self.lock:
            order = self._actionable(uuid)
            if order.state not in (SUBMITTED, ACCEPTED):
                raise InvalidStateTransitionError("reject", order.state)
            order.state = REJECTED if order.state == SUBMITTED else CANCELLED
            order.pending_modification = False
            order.rejection = {"reason": reason, "explanation": explanation}
            order.history.append((self.clock(), order.state))
            order.mutations.append((self.clock(), "rejectOrder", order.state))
            return order

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            for order in self.orders.values():
                order.advance(now)
            return [o.to_admin() for o in sorted(self.orders.values(), key=lambda o: o.created_at)]
