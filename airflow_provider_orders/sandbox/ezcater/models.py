"""ezCater sandbox state: seeded orders, their lifecycle and the accept / reject rules. No HTTP here.

Timed transitions (``transitions=[("submitted", 2.0), ("cancelled", 5.0)]``) run one after another:
each fires the given number of seconds after the previous one (the first after seeding). They are
applied lazily, whenever the order is read, from an injectable ``clock``. The pseudo-state
``"modified"`` marks a pending modification (the caterer must accept it with
``acceptModification: true``) without changing the state.

Subscriptions: one :class:`Subscriber` per API token, each with :class:`Subscription` s to an order event
(``submitted``, ``accepted``...) of one caterer. Whenever an order *enters* a state (seeded in a
non-draft state, a timed transition, :meth:`EzCaterModel.update_order`, acceptOrder / rejectOrder,
:meth:`EzCaterModel.cancel_order`) the model hands an :class:`OrderEvent` naming the matching
subscribers to ``on_event`` (the delivery engine, see ``notifications.py``). ``on_event`` is called
with the model's lock held: it must only queue work.
"""

from __future__ import annotations

import random
import secrets
import string
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

DRAFT, SUBMITTED, ACCEPTED, REJECTED, CANCELLED = "draft", "submitted", "accepted", "rejected", "cancelled"
STATES = (DRAFT, SUBMITTED, ACCEPTED, REJECTED, CANCELLED)
#: Transition target that flags a pending modification instead of changing the state.
MODIFIED = "modified"
REJECT_REASONS = ("AT_DAILY_CAPACITY", "STAFF_SHORTAGE", "LACK_OF_INVENTORY")

DEMO_CATERER_UUID = "c0ffee00-0000-4000-8000-000000000001"
DEMO_CATERER_NAME = "Sandbox Catering Co."
DEMO_CATERER_ID = "1001"
SECOND_CATERER_UUID = "c0ffee00-0000-4000-8000-000000000002"
SECOND_CATERER_NAME = "Second Kitchen"
SECOND_CATERER_ID = "1002"
#: Caterers every sandbox knows (again after each reset): (numeric id, uuid, name, store number).
DEFAULT_CATERERS = (
    (DEMO_CATERER_ID, DEMO_CATERER_UUID, DEMO_CATERER_NAME, "101"),
    (SECOND_CATERER_ID, SECOND_CATERER_UUID, SECOND_CATERER_NAME, "102"),
)

#: Subscription vocabulary: the only entity, parent entity and order event keys the sandbox serves.
EVENT_ENTITY = "Order"
PARENT_ENTITY = "Caterer"
#: ``uncancelled`` is accepted in a subscription but never fires (integrations report the same of ezCater).
EVENT_KEYS = (SUBMITTED, ACCEPTED, REJECTED, CANCELLED, "uncancelled")
SUBSCRIBER_EXISTS_MESSAGE = "Subscriber already exists for this API user"

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


class SubscriberExistsError(EzCaterError, ValueError):
    """The API user already has a subscriber (one per API token)."""

    def __init__(self, subscriber_id: str) -> None:
        super().__init__(SUBSCRIBER_EXISTS_MESSAGE)
        self.subscriber_id = subscriber_id


class SubscriberNotFoundError(EzCaterError):
    """No subscriber with that id (for this API user): "Couldn't find Subscriber"."""


class InvalidInputError(EzCaterError, ValueError):
    """A subscriber / subscription parameter the sandbox refuses; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Invalid {field}: {message}")
        self.field = field


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
    #: the caterer's numeric id (``Caterer.id``)
    caterer_id: str | None = None

    def advance(self, now: float) -> list[tuple[str, float]]:
        """Apply the timed transitions that are due; returns the states entered, with their times."""
        entered: list[tuple[str, float]] = []
        while self.transitions and self.transitions[0][1] <= now:
            target, at = self.transitions.pop(0)
            if target == MODIFIED:
                self.pending_modification = True
                self.history.append((at, MODIFIED))
            else:
                changed = target != self.state
                self.state = target
                self.history.append((at, target))
                if changed:
                    entered.append((target, at))
        return entered

    def to_graphql(self) -> dict[str, Any]:
        """The order as the GraphQL ``Order`` type (plain dicts: graphql-core's default resolvers read them)."""
        handoff = self.event_time - timedelta(minutes=45)
        return {
            "uuid": self.uuid,
            "orderNumber": self.order_number,
            "orderSourceType": "MARKETPLACE",
            "lifecycle": {"orderIsCurrently": self.state},
            "caterer": {
                "id": self.caterer_id,
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
            "headcount": self.headcount,
            "feature_enabled": self.feature_enabled,
            "authorized": self.authorized,
            "pending_modification": self.pending_modification,
            "pending_transitions": [[s, at] for s, at in self.transitions],
            "rejection": self.rejection,
            "mutations": [{"time": t, "mutation": m, "state": st} for t, m, st in self.mutations],
        }


@dataclass
class Caterer:
    """A caterer the API user acts for (``Caterer`` in the schema)."""

    id: str
    uuid: str
    name: str
    store_number: str

    def to_graphql(self) -> dict[str, Any]:
        return {"id": self.id, "uuid": self.uuid, "name": self.name, "storeNumber": self.store_number}


@dataclass(frozen=True)
class Subscription:
    """One event of one entity under one parent, for one subscriber."""

    event_entity: str
    event_key: str
    parent_entity: str
    parent_id: str
    subscriber_id: str

    def to_graphql(self) -> dict[str, Any]:
        return {
            "eventEntity": self.event_entity,
            "eventKey": self.event_key,
            "parentEntity": self.parent_entity,
            "parentId": self.parent_id,
            "subscriberId": self.subscriber_id,
        }


@dataclass
class Subscriber:
    """The webhook receiver of one API user (``owner`` is its API token)."""

    id: str
    owner: str
    name: str
    webhook_url: str
    secret: str
    subscriptions: list[Subscription] = field(default_factory=list)

    def to_graphql(self, with_secret: bool = False) -> dict[str, Any]:
        """The schema's ``Subscriber``; ``webhookSecret`` only when ``with_secret`` (createSubscriber)."""
        return {
            "id": self.id,
            "name": self.name,
            "webhookUrl": self.webhook_url,
            "webhookSecret": self.secret if with_secret else None,
            "subscriptions": [s.to_graphql() for s in self.subscriptions],
        }

    def to_admin(self) -> dict[str, Any]:
        """The admin view: never the secret."""
        return {
            "id": self.id,
            "name": self.name,
            "webhookUrl": self.webhook_url,
            "subscriptions": [s.to_graphql() for s in self.subscriptions],
        }


@dataclass(frozen=True)
class EventTarget:
    """Where one notification of an :class:`OrderEvent` goes (captured when the event happens)."""

    subscriber_id: str
    webhook_url: str
    secret: str


@dataclass(frozen=True)
class OrderEvent:
    """An order entered the state ``key`` at ``occurred_at`` (model clock); ``targets`` subscribed to it."""

    order_uuid: str
    caterer_uuid: str
    key: str
    occurred_at: float
    targets: tuple[EventTarget, ...]


_MENU = (
    ("Boxed Lunch: Turkey Club", 12),
    ("Boxed Lunch: Veggie Wrap", 8),
    ("Garden Salad (serves 10)", 2),
    ("Cookie Platter", 1),
    ("Sparkling Water", 20),
)


class EzCaterModel:
    """Orders of one ezCater sandbox, the rules of acceptOrder / rejectOrder, caterers and subscribers.

    :param clock: epoch-seconds clock of timed transitions and event times.
    :param on_event: called (model lock held) with each :class:`OrderEvent` that has subscribers.
    """

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        on_event: Callable[[OrderEvent], None] | None = None,
    ) -> None:
        self.clock = clock or time.time
        self.on_event = on_event
        self.lock = threading.RLock()
        self.orders: dict[str, EzOrder] = {}
        self.caterers: dict[str, Caterer] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self._random = random.Random()
        self._reset_caterers()

    def reset(self) -> None:
        """No orders, no subscribers, the default caterers only."""
        with self.lock:
            self.orders.clear()
            self.subscribers.clear()
            self._reset_caterers()

    def _reset_caterers(self) -> None:
        self.caterers.clear()
        for cid, cuuid, name, store in DEFAULT_CATERERS:
            self.caterers[cuuid] = Caterer(cid, cuuid, name, store)

    def _caterer(self, caterer_uuid: str) -> Caterer:
        """The caterer with that uuid, registered on first use (next numeric id, name from the uuid)."""
        caterer = self.caterers.get(caterer_uuid)
        if caterer is None:
            next_id = max((int(c.id) for c in self.caterers.values() if c.id.isdigit()), default=1000) + 1
            caterer = Caterer(
                str(next_id),
                caterer_uuid,
                "Caterer " + caterer_uuid[:8],
                f"{self._random.randint(100, 999)}",
            )
            self.caterers[caterer_uuid] = caterer
        return caterer

    # ---------------------------------------------------------------- orders
    def add_order(
        self,
        uuid: str | None = None,
        state: str = SUBMITTED,
        caterer_uuid: str | None = None,
        feature_enabled: bool = True,
        authorized: bool = True,
        pending_modification: bool = False,
        transitions: Iterable[tuple[str, float]] | None = None,
        headcount: int | None = None,
    ) -> str:
        """Seed an order; returns its uuid. See the module docstring for ``transitions``.

        ``headcount`` None picks one of 12, 20, 25, 40 at random. An order seeded in a non-draft state
        has just entered it: subscribers to that state are notified.
        """
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        if headcount is not None and (
            isinstance(headcount, bool) or not isinstance(headcount, int) or headcount < 1
        ):
            raise ValueError(f"headcount must be a positive integer, got {headcount!r}")
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
            caterer = self._caterer(str(caterer_uuid or DEMO_CATERER_UUID))
            rnd = self._random
            number = "".join(rnd.choices(string.ascii_uppercase + string.digits, k=3))
            number += "-" + "".join(rnd.choices(string.ascii_uppercase + string.digits, k=3))
            picks = rnd.sample(_MENU, k=3)
            items = [(str(uuidlib.uuid4()), name, qty) for name, qty in picks]
            event = datetime.fromtimestamp(now, tz=timezone.utc).replace(
                minute=0, second=0, microsecond=0
            ) + timedelta(days=2, hours=1)
            order = EzOrder(
                uuid=order_uuid,
                order_number=number,
                state=state,
                caterer_uuid=caterer.uuid,
                caterer_name=caterer.name,
                store_number=caterer.store_number,
                feature_enabled=feature_enabled,
                authorized=authorized,
                pending_modification=pending_modification,
                created_at=now,
                event_time=event,
                headcount=rnd.choice((12, 20, 25, 40)) if headcount is None else headcount,
                items=items,
                total_subunits=rnd.randint(150, 900) * 100 + rnd.choice((0, 25, 50, 99)),
                transitions=steps,
                history=[(now, state)],
                caterer_id=caterer.id,
            )
            self.orders[order_uuid] = order
            if state != DRAFT:
                self._emit(order, state, now)
            self._advance(order, now)  # transitions due at once (delay 0)
        return order_uuid

    def place_order(
        self, caterer_uuid: str | None = None, headcount: int | None = 25, uuid: str | None = None
    ) -> str:
        """A new submitted order, as a customer places it (notifies ``submitted`` subscribers)."""
        return self.add_order(uuid, SUBMITTED, caterer_uuid, headcount=headcount)

    def update_order(
        self,
        uuid: str,
        *,
        state: str | None = None,
        pending_modification: bool | None = None,
        feature_enabled: bool | None = None,
        authorized: bool | None = None,
    ) -> EzOrder:
        """Change a seeded order as the outside world would (customer cancels, modification arrives...).

        A new ``state`` (different from the current one) notifies its subscribers.
        """
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        with self.lock:
            order = self._get(uuid)
            if state is not None:
                self._enter(order, state)
            if pending_modification is not None:
                order.pending_modification = pending_modification
            if feature_enabled is not None:
                order.feature_enabled = feature_enabled
            if authorized is not None:
                order.authorized = authorized
            return order

    def cancel_order(self, uuid: str) -> EzOrder:
        """The customer (or ezCater) cancels the order: draft / submitted / accepted -> cancelled.

        Pending timed transitions are dropped. A rejected or cancelled order cannot be cancelled
        (:class:`InvalidStateTransitionError`).
        """
        with self.lock:
            order = self._get(uuid)
            if order.state in (REJECTED, CANCELLED):
                raise InvalidStateTransitionError("cancel", order.state)
            order.transitions.clear()
            order.pending_modification = False
            self._enter(order, CANCELLED)
            return order

    def _enter(self, order: EzOrder, state: str, at: float | None = None) -> None:
        """Put ``order`` in ``state`` now; subscribers are notified when the state changes."""
        at = self.clock() if at is None else at
        changed = order.state != state
        order.state = state
        order.history.append((at, state))
        if changed:
            self._emit(order, state, at)

    def _advance(self, order: EzOrder, now: float) -> None:
        for state, at in order.advance(now):
            self._emit(order, state, at)

    def tick(self) -> None:
        """Apply every due timed transition now (the sandbox's ticker calls this about 5 times a second)."""
        with self.lock:
            now = self.clock()
            for order in self.orders.values():
                if order.transitions and order.transitions[0][1] <= now:
                    self._advance(order, now)

    def _get(self, uuid: str) -> EzOrder:
        order = self.orders.get(uuid)
        if order is None:
            raise OrderNotFoundError(uuid)
        self._advance(order, self.clock())
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
        """submitted -> accepted; a pending modification needs ``accept_modification=True``.

        Either way ``accepted`` subscribers are notified (a modification arrives as a second ``accepted``).
        """
        with self.lock:
            order = self._actionable(uuid)
            if order.state == SUBMITTED or (
                order.state == ACCEPTED and order.pending_modification and accept_modification
            ):
                now = self.clock()
                order.state = ACCEPTED
                order.pending_modification = False
                order.history.append((now, ACCEPTED))
                order.mutations.append((now, "acceptOrder", ACCEPTED))
                self._emit(order, ACCEPTED, now)
                return order
            raise InvalidStateTransitionError("accept", order.state)

    def reject(self, uuid: str, reason: str, explanation: str | None = None) -> EzOrder:
        """submitted -> rejected; accepted -> cancelled."""
        with self.lock:
            order = self._actionable(uuid)
            if order.state not in (SUBMITTED, ACCEPTED):
                raise InvalidStateTransitionError("reject", order.state)
            now = self.clock()
            order.state = REJECTED if order.state == SUBMITTED else CANCELLED
            order.pending_modification = False
            order.rejection = {"reason": reason, "explanation": explanation}
            order.history.append((now, order.state))
            order.mutations.append((now, "rejectOrder", order.state))
            self._emit(order, order.state, now)
            return order

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            for order in self.orders.values():
                self._advance(order, now)
            return [o.to_admin() for o in sorted(self.orders.values(), key=lambda o: o.created_at)]

    # ---------------------------------------------------------------- events
    def _emit(self, order: EzOrder, key: str, at: float) -> None:
        """Hand the event to ``on_event`` if anyone subscribed to it (model lock held)."""
        if self.on_event is None or key not in EVENT_KEYS:
            return
        targets = tuple(
            EventTarget(sub.id, sub.webhook_url, sub.secret)
            for sub in self.subscribers.values()
            if any(
                s.event_entity == EVENT_ENTITY and s.event_key == key and s.parent_id == order.caterer_uuid
                for s in sub.subscriptions
            )
        )
        if targets:
            self.on_event(OrderEvent(order.uuid, order.caterer_uuid, key, at, targets))

    # ---------------------------------------------------------------- caterers & subscribers
    def list_caterers(
        self, ids: Iterable[str] | None = None, uuids: Iterable[str] | None = None
    ) -> list[Caterer]:
        """All caterers (numeric id order), or those whose id is in ``ids`` or uuid in ``uuids``."""
        with self.lock:
            caterers = sorted(self.caterers.values(), key=lambda c: (len(c.id), c.id))
            if ids is None and uuids is None:
                return caterers
            wanted_ids, wanted_uuids = {str(i) for i in ids or ()}, {str(u) for u in uuids or ()}
            return [c for c in caterers if c.id in wanted_ids or c.uuid in wanted_uuids]

    def subscriber_of(self, owner: str) -> Subscriber | None:
        with self.lock:
            return next((s for s in self.subscribers.values() if s.owner == owner), None)

    def create_subscriber(
        self, owner: str, name: str, webhook_url: str, secret: str | None = None
    ) -> Subscriber:
        """The API user's subscriber (:class:`SubscriberExistsError` if it has one already)."""
        name = _check_name(name)
        webhook_url = _check_url(webhook_url)
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise InvalidInputError("webhookSecret", "must be a non-empty string")
        with self.lock:
            existing = self.subscriber_of(owner)
            if existing is not None:
                raise SubscriberExistsError(existing.id)
            subscriber = Subscriber(
                id=str(uuidlib.uuid4()),
                owner=owner,
                name=name,
                webhook_url=webhook_url,
                secret=secret if secret is not None else secrets.token_urlsafe(32),
            )
            self.subscribers[subscriber.id] = subscriber
            return subscriber

    def _subscriber(self, owner: str, subscriber_id: str) -> Subscriber:
        subscriber = self.subscribers.get(str(subscriber_id))
        if subscriber is None or subscriber.owner != owner:
            raise SubscriberNotFoundError(subscriber_id)
        return subscriber

    def update_subscriber(
        self, owner: str, subscriber_id: str, name: str | None = None, webhook_url: str | None = None
    ) -> Subscriber:
        """Change the name and/or webhook URL (deliveries already queued keep the URL they had)."""
        with self.lock:
            subscriber = self._subscriber(owner, subscriber_id)
            new_name = subscriber.name if name is None else _check_name(name)
            new_url = subscriber.webhook_url if webhook_url is None else _check_url(webhook_url)
            subscriber.name, subscriber.webhook_url = new_name, new_url
            return subscriber

    def create_subscription(
        self,
        owner: str,
        event_entity: str,
        event_key: str,
        parent_entity: str,
        parent_id: str,
        subscriber_id: str,
    ) -> Subscription:
        """Subscribe; an identical subscription already there is answered as it is (nothing created)."""
        if event_entity != EVENT_ENTITY:
            raise InvalidInputError(
                "eventEntity", f"the sandbox serves {EVENT_ENTITY!r} only, got {event_entity!r}"
            )
        if event_key not in EVENT_KEYS:
            raise InvalidInputError(
                "eventKey", f"an Order event key is one of {', '.join(EVENT_KEYS)}, got {event_key!r}"
            )
        if parent_entity != PARENT_ENTITY:
            raise InvalidInputError(
                "parentEntity", f"Order events belong to a {PARENT_ENTITY!r}, got {parent_entity!r}"
            )
        with self.lock:
            if str(parent_id) not in self.caterers:
                raise InvalidInputError("parentId", f"no caterer with uuid {parent_id!r}")
            subscriber = self.subscribers.get(str(subscriber_id))
            if subscriber is None or subscriber.owner != owner:
                raise InvalidInputError("subscriberId", f"Couldn't find Subscriber {subscriber_id!r}")
            subscription = Subscription(event_entity, event_key, parent_entity, str(parent_id), subscriber.id)
            if subscription not in subscriber.subscriptions:
                subscriber.subscriptions.append(subscription)
            return subscription

    def subscribers_snapshot(self) -> list[dict[str, Any]]:
        """Every subscriber, admin view (no secret)."""
        with self.lock:
            return [s.to_admin() for s in self.subscribers.values()]


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError("name", "must be a non-empty string")
    return name


def _check_url(url: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError("webhookUrl", f"must be an absolute http(s) URL, got {url!r}")
    return url
