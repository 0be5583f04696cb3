"""ezCater values: an order's lifecycle state, read once from the API's dict, and GraphQL error entries.

ezCater sends ``lifecycle.orderIsCurrently`` in lower case; other casing and padding are tolerated.
A value this provider does not know is kept as text and means "not yet" to a waiting task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class OrderLifecycleState(str, Enum):
    """ezCater ``lifecycle.orderIsCurrently``."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


#: States from which an order will not move to "accepted": the default failure states of a wait.
FAILED_LIFECYCLE_STATES: tuple[str, ...] = (
    OrderLifecycleState.REJECTED.value,
    OrderLifecycleState.CANCELLED.value,
)


def normalize_lifecycle_state(value: Any) -> str | None:
    """A state as text, lower case and stripped; None for a missing or non-text value."""
    if not isinstance(value, str):
        return None
    return value.strip().lower() or None


def lifecycle_state_of(order: Any) -> str | None:
    """``lifecycle.orderIsCurrently`` of an order dict, normalised; None when the answer has none."""
    lifecycle = order.get("lifecycle") if isinstance(order, Mapping) else None
    return normalize_lifecycle_state(
        lifecycle.get("orderIsCurrently") if isinstance(lifecycle, Mapping) else None
    )


def normalize_states(states: Iterable[str] | str) -> list[str]:
    """A state list from a string or an iterable, normalised and de-duplicated (order kept)."""
    items = [states] if isinstance(states, str) else list(states)
    out: list[str] = []
    for item in items:
        state = normalize_lifecycle_state(item)
        if state and state not in out:
            out.append(state)
    return out


def normalize_code(code: Any) -> str:
    """``feature not enabled`` / ``FEATURE_NOT_ENABLED`` / ``Feature-Not-Enabled`` → ``FEATURENOTENABLED``."""
    return re.sub(r"[\s_\-]+", "", str(code or "")).upper()


def _as_status(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class GraphQLError:
    """One entry of a GraphQL ``errors`` list, read leniently.

    :param message: the API's message (with ``secret`` scrubbed when the parser was given one).
    :param code: ``extensions.code`` as sent.
    :param statuscode: ``extensions.statuscode`` (or ``statusCode``): the HTTP status ezCater means.
    """

    message: str
    code: str | None = None
    statuscode: int | None = None

    @property
    def normalized_code(self) -> str:
        return normalize_code(self.code)

    @property
    def quoted(self) -> str:
        """``"<message>" (code X, statuscode N)``: the API's own words."""
        extras = [f"code {self.code}"] if self.code else []
        if self.statuscode:
            extras.append(f"statuscode {self.statuscode}")
        return f'"{self.message}"' + (f" ({', '.join(extras)})" if extras else "")

    @classmethod
    def from_api(cls, error: Any, *, secret: str = "") -> GraphQLError:
        if not isinstance(error, Mapping):
            error = {"message": str(error)}
        raw = error.get("extensions")
        ext: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        message = str(error.get("message") or "").strip()
        if secret:
            message = message.replace(secret, "***")
        code = ext.get("code")
        return cls(
            message=message,
            code=str(code) if code else None,
            statuscode=_as_status(ext.get("statuscode", ext.get("statusCode"))),
        )


#: Order event keys ezCater documents for subscriptions (integrations report ``uncancelled`` never fires,
#: and that a modification arrives as a second ``accepted``).
ORDER_EVENT_KEYS: tuple[str, ...] = ("submitted", "accepted", "rejected", "cancelled", "uncancelled")

#: Where the notification receiver is mounted on the Airflow API server, and its route under that mount:
#: a connection's deliveries go to ``/ezcater/webhooks/<conn_id>`` (:func:`webhook_path`).
WEBHOOK_URL_PREFIX = "/ezcater"
WEBHOOK_ROUTE_PREFIX = "/webhooks/"
#: The ezCater connection extra that holds the webhook secret createSubscriber returned.
WEBHOOK_SECRET_EXTRA = "webhook_secret"


def webhook_path(conn_id: str) -> str:
    """``/ezcater/webhooks/<conn_id>``: the path the webhook receiver of a connection answers on."""
    return f"{WEBHOOK_URL_PREFIX}{WEBHOOK_ROUTE_PREFIX}{conn_id}"


#: Longest id / key / timestamp text a delivery may carry; longer values are not a delivery.
_MAX_FIELD_CHARS = 200
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")


class DeliveryError(ValueError):
    """A body that is not an ezCater notification delivery (the message says which field is wrong)."""


@dataclass(frozen=True)
class Delivery:
    """An ezCater notification delivery: a pointer to an entity that changed, never its content.

    ``{"id", "parent_type": "Caterer", "parent_id", "entity_type": "Order", "entity_id", "key",
    "created_at", "occurred_at", "updated_at", "payload": null}``; re-query the order for its content.
    """

    id: str
    key: str
    entity_type: str
    entity_id: str
    parent_type: str | None
    parent_id: str | None
    occurred_at: str | None

    @classmethod
    def from_api(cls, body: Any) -> Delivery:
        """Read a decoded delivery body; :class:`DeliveryError` names what is missing or malformed."""
        if not isinstance(body, Mapping):
            raise DeliveryError("the body is not a JSON object")

        def text(name: str, *, required: bool, ident: bool = False) -> str | None:
            value = body.get(name)
            if value is None and not required:
                return None
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise DeliveryError(f"field {name!r} is missing or not text")
            value = str(value).strip()
            if not value or len(value) > _MAX_FIELD_CHARS or (ident and not _SAFE_ID.match(value)):
                raise DeliveryError(f"field {name!r} is empty, too long or has unexpected characters")
            return value

        delivery_id = text("id", required=True, ident=True)
        key = text("key", required=True, ident=True)
        entity_type = text("entity_type", required=True, ident=True)
        entity_id = text("entity_id", required=True, ident=True)
        return cls(
            id=str(delivery_id),
            key=str(key).lower(),
            entity_type=str(entity_type),
            entity_id=str(entity_id),
            parent_type=text("parent_type", required=False, ident=True),
            parent_id=text("parent_id", required=False, ident=True),
            occurred_at=text("occurred_at", required=False) or text("created_at", required=False),
        )

    @property
    def is_order_event(self) -> bool:
        return self.entity_type.lower() == "order"

    def asset_extra(self) -> dict[str, Any]:
        """The asset event's ``extra``: ids and times only (a delivery carries no order content)."""
        return {
            "delivery_id": self.id,
            "order_id": self.entity_id,
            "key": self.key,
            "caterer_id": self.parent_id,
            "occurred_at": self.occurred_at,
        }


# ---------------------------------------------------------------------------------------- subscriptions
#
# ezCater's notification setup: one subscriber per API user (a webhook URL and a secret that only the
# createSubscriber answer carries), and one subscription per (caterer, event). Read leniently: ids may
# come as numbers, ``subscribers`` as a list, a single object or null, and the secret on the payload's
# ``subscriber`` or at its top level.

#: The entity and parent of the order subscriptions this provider makes.
ORDER_EVENT_ENTITY = "Order"
CATERER_PARENT_ENTITY = "Caterer"


def _objects(value: Any) -> list[Any]:
    """A field that should be a list of objects: a list as is, a lone object as a list of one, else []."""
    return value if isinstance(value, list) else [value] if isinstance(value, Mapping) else []


def _text(value: Any) -> str | None:
    """An id or name as stripped text (numbers too); None for missing, empty or non-text values."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip() or None


@dataclass(frozen=True)
class Caterer:
    """One entry of ``caterers``: numeric ``id``, ``uuid`` (what subscriptions name), ``name``."""

    id: str | None
    uuid: str
    name: str
    store_number: str | None = None

    @classmethod
    def from_api(cls, caterer: Any) -> Caterer | None:
        """Read one ``caterers`` entry; None when it is not an object or has no uuid."""
        if not isinstance(caterer, Mapping):
            return None
        uuid = _text(caterer.get("uuid"))
        if uuid is None:
            return None
        return cls(
            id=_text(caterer.get("id")),
            uuid=uuid,
            name=_text(caterer.get("name")) or "",
            store_number=_text(caterer.get("storeNumber")),
        )


def caterers_from_api(value: Any) -> list[Caterer]:
    """The ``caterers`` field: a list (a single object or null tolerated); entries without uuid skipped."""
    return [c for c in (Caterer.from_api(item) for item in _objects(value)) if c is not None]


@dataclass(frozen=True)
class Subscription:
    """One subscription: ``event_entity`` (``Order``) ``event_key`` (``submitted``...) of the
    ``parent_entity`` (``Caterer``) ``parent_id`` (the caterer's uuid), for ``subscriber_id``."""

    event_entity: str
    event_key: str
    parent_entity: str
    parent_id: str
    subscriber_id: str | None

    @classmethod
    def from_api(cls, subscription: Any) -> Subscription | None:
        """Read one subscription object; None when it is not one (no event key or parent id)."""
        if not isinstance(subscription, Mapping):
            return None
        key = _text(subscription.get("eventKey"))
        parent_id = _text(subscription.get("parentId"))
        if key is None or parent_id is None:
            return None
        return cls(
            event_entity=_text(subscription.get("eventEntity")) or ORDER_EVENT_ENTITY,
            event_key=key,
            parent_entity=_text(subscription.get("parentEntity")) or CATERER_PARENT_ENTITY,
            parent_id=parent_id,
            subscriber_id=_text(subscription.get("subscriberId")),
        )

    def matches(
        self,
        parent_id: str,
        event_key: str,
        event_entity: str = ORDER_EVENT_ENTITY,
        parent_entity: str = CATERER_PARENT_ENTITY,
    ) -> bool:
        """Whether this is the subscription to ``event_entity`` ``event_key`` of that parent (entity
        names and the key compared without regard to case)."""
        return (
            self.parent_id == str(parent_id).strip()
            and self.event_key.lower() == str(event_key).strip().lower()
            and self.event_entity.lower() == str(event_entity).strip().lower()
            and self.parent_entity.lower() == str(parent_entity).strip().lower()
        )


@dataclass(frozen=True)
class Subscriber:
    """The API user's subscriber: ``id``, ``name``, ``webhook_url`` and its ``subscriptions``.

    The webhook secret is not a field: only :class:`NewSubscriber` (createSubscriber's answer) has it.
    """

    id: str
    name: str
    webhook_url: str
    subscriptions: tuple[Subscription, ...] = ()

    @classmethod
    def from_api(cls, subscriber: Any) -> Subscriber | None:
        """Read one subscriber object (its ``webhookSecret``, if any, is ignored); None without an id."""
        if not isinstance(subscriber, Mapping):
            return None
        subscriber_id = _text(subscriber.get("id"))
        if subscriber_id is None:
            return None
        items = _objects(subscriber.get("subscriptions"))
        return cls(
            id=subscriber_id,
            name=_text(subscriber.get("name")) or "",
            webhook_url=_text(subscriber.get("webhookUrl")) or "",
            subscriptions=tuple(s for s in (Subscription.from_api(i) for i in items) if s is not None),
        )

    def find_subscription(
        self, parent_id: str, event_key: str, event_entity: str = ORDER_EVENT_ENTITY
    ) -> Subscription | None:
        """The subscription to ``event_entity`` ``event_key`` of caterer ``parent_id``, if there is one."""
        return next((s for s in self.subscriptions if s.matches(parent_id, event_key, event_entity)), None)


def subscribers_from_api(value: Any) -> list[Subscriber]:
    """The ``subscribers`` field: a list, a single object, or null (no subscriber) all read."""
    return [s for s in (Subscriber.from_api(item) for item in _objects(value)) if s is not None]


def webhook_secret_of(payload: Any) -> str | None:
    """createSubscriber's ``webhookSecret``: on the payload's ``subscriber`` or at its top level."""
    if not isinstance(payload, Mapping):
        return None
    subscriber = payload.get("subscriber")
    nested = subscriber.get("webhookSecret") if isinstance(subscriber, Mapping) else None
    for value in (nested, payload.get("webhookSecret")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True)
class NewSubscriber:
    """createSubscriber's answer: the :class:`Subscriber` and its ``webhook_secret``, which ezCater sends
    this once and never again (kept out of the repr)."""

    subscriber: Subscriber
    webhook_secret: str = field(repr=False)


__all__ = [
    "CATERER_PARENT_ENTITY",
    "FAILED_LIFECYCLE_STATES",
    "ORDER_EVENT_ENTITY",
    "ORDER_EVENT_KEYS",
    "WEBHOOK_ROUTE_PREFIX",
    "WEBHOOK_SECRET_EXTRA",
    "WEBHOOK_URL_PREFIX",
    "Caterer",
    "Delivery",
    "DeliveryError",
    "GraphQLError",
    "NewSubscriber",
    "OrderLifecycleState",
    "Subscriber",
    "Subscription",
    "caterers_from_api",
    "lifecycle_state_of",
    "normalize_code",
    "normalize_lifecycle_state",
    "normalize_states",
    "subscribers_from_api",
    "webhook_path",
    "webhook_secret_of",
]
