"""Hook for the ezCater Orders API (GraphQL).

Connection (type ``ezcater``): host = GraphQL endpoint URL (empty → ``https://api.ezcater.com/graphql``,
no scheme → https, no path → ``/graphql``), password = API token (sent raw in ``Authorization``).
Extras: ``timeout``, ``verify_ssl``, ``max_retries``, ``retry_delay`` (shared with DataKitchen),
``client_name`` / ``client_version`` (the ``apollographql-client-*`` headers).

This module holds the connection's settings and the hook's calls: retries, and what to do with an
answer. The operations and both gql transports (requests on the sync path, httpx on the loop's shared
client for triggers) live in :mod:`._ezcater_graphql`; what an answer means, the same for both paths, in
:mod:`._ezcater_errors`. ``gql`` / ``graphql-core`` are imported inside the functions that use them,
never at module import.

``accept_order`` is retried on transient failures. When the API answers INVALID_STATE_TRANSITION the
hook reads the order once: if an earlier attempt of this same call sent the mutation and lost the answer
and the order is now ``accepted``, that attempt succeeded and the order is returned; otherwise
:class:`InvalidStateTransitionError` carries the order's current state.

Notifications (ezCater has no query that lists orders: a caterer learns of orders from webhooks):
``get_caterers``, ``get_subscriber``, ``create_subscriber``, ``update_subscriber`` and
``create_subscription``. Reads are retried like ``get_order``. ``create_subscriber``'s answer is the only
copy of the webhook secret: once a request may have reached ezCater it is never sent again, and a lost
answer raises :class:`SubscriberOutcomeUnknownError`. ``create_subscription`` and ``update_subscriber``
read the subscriber again after a lost answer and count what they find there as done. The webhook secret
is masked the moment it arrives and never logged.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_orders import __version__
from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    FeatureNotEnabledError,
    InvalidStateTransitionError,
    NotAuthorizedError,
    OrderNotFoundError,
    OrdersProviderError,
    PermanentOrdersError,
    RequestRejectedError,
)
from airflow_provider_orders.hooks._connection import (
    ConfiguredHook,
    ConnectionSettings,
    get_extra_str,
    mask,
    normalize_url,
    parse_settings,
)
from airflow_provider_orders.hooks._ezcater_errors import (
    CallState,
    LostAnswerError,
    client_failure,
    describe_call,
    interpret,
)
from airflow_provider_orders.hooks._ezcater_graphql import (
    ACCEPT_ORDER_MUTATION,
    CATERERS_QUERY,
    CREATE_SUBSCRIBER_MUTATION,
    CREATE_SUBSCRIPTION_MUTATION,
    ORDER_QUERY,
    REJECT_ORDER_MUTATION,
    SUBSCRIBERS_QUERY,
    UPDATE_SUBSCRIBER_MUTATION,
    Operation,
    SendFailed,
    aload,
    graphql_request,
    requests_transport,
    send_async,
    send_sync,
)
from airflow_provider_orders.hooks._http import async_timeout
from airflow_provider_orders.models.ezcater import (
    CATERER_PARENT_ENTITY,
    ORDER_EVENT_ENTITY,
    ORDER_EVENT_KEYS,
    WEBHOOK_SECRET_EXTRA,
    Caterer,
    NewSubscriber,
    OrderLifecycleState,
    Subscriber,
    Subscription,
    caterers_from_api,
    lifecycle_state_of,
    subscribers_from_api,
    webhook_path,
    webhook_secret_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from airflow.providers.common.compat.sdk import Connection
    from gql import Client, GraphQLRequest
    from gql.client import SyncClientSession
    from gql.transport.requests import RequestsHTTPTransport

DEFAULT_ENDPOINT = "https://api.ezcater.com/graphql"
DEFAULT_CLIENT_NAME = "airflow-provider-orders"
#: Order id used by test_connection: no order has it, so "Couldn't find Order" proves the token works.
PROBE_ORDER_ID = "00000000-0000-0000-0000-000000000000"
#: Hosts a webhook URL may name over plain http (a receiver on this machine); any other needs https.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_MAX_URL_CHARS = 2048
_MAX_ID_CHARS = 200


class InvalidArgumentError(PermanentOrdersError, ValueError):
    """An argument the hook refuses before calling ezCater (webhook URL, event key, caterer uuid, name)."""


class SubscriberOutcomeUnknownError(PermanentOrdersError):
    """createSubscriber may have reached ezCater but its answer (the only copy of the webhook secret) was
    lost or unreadable. It is never sent again: the message says how to find the subscriber that may
    exist."""


def _rejected(error: OrdersProviderError, message: str) -> RequestRejectedError:
    """``error`` (e.g. a "Couldn't find ..." read as an order not found) reworded for what was asked."""
    rejected = RequestRejectedError(
        message,
        api_message=error.api_message,
        http_status=error.http_status,
        code=error.code,
        api_detail=error.api_detail,
    )
    rejected.reached_api = error.reached_api
    return rejected


def check_webhook_url(url: Any) -> str:
    """A webhook URL ezCater can deliver to, stripped: absolute, with a host, https (plain http only for
    localhost / 127.0.0.1 / ::1), no credentials, no fragment.

    :raises InvalidArgumentError: naming what is wrong.
    """
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise InvalidArgumentError(f"The webhook URL must be a non-empty URL, got {url!r}.")
    if len(text) > _MAX_URL_CHARS or any(c.isspace() for c in text):
        raise InvalidArgumentError(
            f"The webhook URL {text[:100]!r} must not contain spaces nor be longer than {_MAX_URL_CHARS} "
            "characters."
        )
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise InvalidArgumentError(f"The webhook URL {text!r} is not a usable URL ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise InvalidArgumentError(
            f"The webhook URL {text!r} must be an absolute https:// URL with a host, such as "
            f"https://airflow.example.com{webhook_path('ezcater_default')}."
        )
    if scheme == "http" and host.lower() not in LOOPBACK_HOSTS:
        raise InvalidArgumentError(
            f"The webhook URL {text!r} must use https: ezCater sends order notifications over the "
            "internet (plain http is accepted only for localhost and 127.0.0.1)."
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidArgumentError(
            f"The webhook URL of host {host!r} must not carry a user name or password: ezCater signs "
            "each delivery with the webhook secret instead."
        )
    if parts.fragment:
        raise InvalidArgumentError(f"The webhook URL {text!r} must not have a #fragment.")
    return text


def check_event_key(key: Any, event_entity: str = ORDER_EVENT_ENTITY) -> str:
    """An event key in lower case; for ``Order`` one of :data:`ORDER_EVENT_KEYS`.

    :raises InvalidArgumentError: naming the key and the keys ezCater knows.
    """
    text = key.strip().lower() if isinstance(key, str) else ""
    if event_entity.strip().lower() == ORDER_EVENT_ENTITY.lower():
        if text not in ORDER_EVENT_KEYS:
            raise InvalidArgumentError(
                f"Unknown ezCater order event key {key!r}: use one of {', '.join(ORDER_EVENT_KEYS)}."
            )
    elif not text or len(text) > _MAX_ID_CHARS or any(c.isspace() for c in text):
        raise InvalidArgumentError(f"Event key {key!r} of {event_entity!r} must be a word such as 'updated'.")
    return text


def check_event_keys(keys: Iterable[str] | str) -> tuple[str, ...]:
    """Order event keys from ``"submitted,cancelled"`` or an iterable, checked, de-duplicated, in order.

    :raises InvalidArgumentError: an unknown key, or no key at all.
    """
    items = keys.split(",") if isinstance(keys, str) else list(keys)
    checked: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        key = check_event_key(item)
        if key not in checked:
            checked.append(key)
    if not checked:
        raise InvalidArgumentError(f"Give at least one order event key: {', '.join(ORDER_EVENT_KEYS)}.")
    return tuple(checked)


def _check_id(value: Any, what: str) -> str:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text or len(text) > _MAX_ID_CHARS or any(c.isspace() for c in text):
        raise InvalidArgumentError(f"The {what} must be a non-empty id without spaces, got {value!r}.")
    return text


def _check_ids(values: Iterable[Any] | str | None, what: str) -> list[str] | None:
    if values is None:
        return None
    items = [values] if isinstance(values, (str, int)) else list(values)
    return [_check_id(v, what) for v in items]


def _check_name(name: Any) -> str:
    text = name.strip() if isinstance(name, str) else ""
    if not text or len(text) > _MAX_ID_CHARS:
        raise InvalidArgumentError(
            f"The subscriber name must be non-empty text of at most {_MAX_ID_CHARS} characters, got {name!r}."
        )
    return text


@dataclass(frozen=True)
class _Config:
    conn_id: str
    url: str
    token: str = field(repr=False)
    settings: ConnectionSettings
    client_name: str
    client_version: str
    #: Whether the extra ``webhook_secret`` is set (its value is not kept here).
    webhook_secret_set: bool = False

    @property
    def secret(self) -> str:
        return self.token

    @classmethod
    def from_connection(cls, conn: Connection, extra: Mapping[str, Any], conn_id: str) -> _Config:
        ctype = EzCaterHook.conn_type
        token = (conn.password or "").strip()
        if not token:
            raise AuthenticationFailedError(
                f"Connection '{conn_id}' has no API token: put the ezCater API token in its password."
            )
        return cls(
            conn_id=conn_id,
            url=normalize_url(
                conn.host, default=DEFAULT_ENDPOINT, port=conn.port, default_path="/graphql", conn_id=conn_id
            ),
            token=token,
            settings=parse_settings(extra, conn_id=conn_id, conn_type=ctype),
            client_name=get_extra_str(extra, "client_name", ctype) or DEFAULT_CLIENT_NAME,
            client_version=get_extra_str(extra, "client_version", ctype) or __version__,
            webhook_secret_set=get_extra_str(extra, WEBHOOK_SECRET_EXTRA, ctype) is not None,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": self.token,
            "apollographql-client-name": self.client_name,
            "apollographql-client-version": self.client_version,
        }

    @functools.cached_property
    def async_headers(self) -> dict[str, str]:
        """The headers of the async path (as before the move to gql: an explicit JSON ``Accept``)."""
        return {**self.headers, "Accept": "application/json"}


class EzCaterHook(ConfiguredHook[_Config]):
    """Read, accept and reject ezCater catering orders through the GraphQL Orders API, and set up the
    notifications (subscriber and subscriptions) that tell of new orders.

    :param ezcater_conn_id: Airflow connection of type ``ezcater``.
    """

    conn_name_attr = "ezcater_conn_id"
    default_conn_name = "ezcater_default"
    conn_type = "ezcater"
    hook_name = "ezCater"

    def __init__(self, ezcater_conn_id: str = default_conn_name, *, logger_name: str | None = None) -> None:
        super().__init__(logger_name=logger_name)
        self.ezcater_conn_id = ezcater_conn_id
        self._config: _Config | None = None
        self._client: Client | None = None
        self._session: SyncClientSession | None = None

    # ---------------------------------------------------------------- connection and client

    def _parse_config(self, conn: Connection, extra: Mapping[str, Any], conn_id: str) -> _Config:
        return _Config.from_connection(conn, extra, conn_id)

    @property
    def url(self) -> str:
        """The GraphQL endpoint this hook talks to (from the connection)."""
        return self._get_config().url

    def get_conn(self) -> Client:
        """The hook's gql ``Client`` over a ``RequestsHTTPTransport`` (no schema fetch, no gql retries)."""
        if self._client is None:
            from gql import Client

            config = self._get_config()
            transport = requests_transport(
                config.url,
                config.headers,
                timeout=config.settings.timeout,
                verify_ssl=config.settings.verify_ssl,
            )
            self._client = Client(transport=transport, fetch_schema_from_transport=False)
        return self._client

    def _sync_transport(self) -> RequestsHTTPTransport:
        """The connected transport of :meth:`get_conn`'s client."""
        if self._session is None:
            self._session = self.get_conn().connect_sync()
        transport: RequestsHTTPTransport = self._session.transport
        return transport

    def close(self) -> None:
        """Close the gql client and its HTTP session."""
        if self._client is not None and self._session is not None:
            self._client.close_sync()
        self._session = None
        self._client = None

    # ---------------------------------------------------------------- public API

    def get_order(self, order_id: str) -> dict[str, Any]:
        """The order (uuid, orderNumber, lifecycle.orderIsCurrently, caterer, event, totals, ...)."""
        data = self._call(ORDER_QUERY, {"orderId": order_id}, order_id, CallState())
        return self._order(order_id, data.get("order"))

    def accept_order(self, order_id: str, accept_modification: bool = False) -> dict[str, Any]:
        """Accept an order (or, with ``accept_modification=True``, its modification).

        :return: the ``order`` object of the answer: ``uuid`` and ``lifecycle.orderIsCurrently``.
        """
        variables = {"orderId": order_id, "acceptModification": bool(accept_modification)}
        state = CallState()
        try:
            data = self._call(ACCEPT_ORDER_MUTATION, variables, order_id, state)
        except InvalidStateTransitionError as exc:
            return self._resolve_invalid_transition(
                ACCEPT_ORDER_MUTATION,
                order_id,
                exc,
                state,
                {OrderLifecycleState.ACCEPTED.value},
                accept_modification=accept_modification,
            )
        order = self._payload_order(ACCEPT_ORDER_MUTATION, order_id, data)
        self.log.info("Accepted ezCater order %s (now %s)", order_id, lifecycle_state_of(order))
        return order

    def reject_order(self, order_id: str, reason: str, explanation: str | None = None) -> dict[str, Any]:
        """Reject an order with a reason (e.g. ``AT_DAILY_CAPACITY``) and an optional explanation.

        :return: the ``order`` object of the answer: ``uuid`` and ``lifecycle.orderIsCurrently``.
        """
        reject_input: dict[str, Any] = {"reason": reason}
        if explanation is not None:
            reject_input["explanation"] = explanation
        variables = {"orderId": order_id, "rejectOrderInput": reject_input}
        state = CallState()
        try:
            data = self._call(REJECT_ORDER_MUTATION, variables, order_id, state)
        except InvalidStateTransitionError as exc:
            return self._resolve_invalid_transition(
                REJECT_ORDER_MUTATION,
                order_id,
                exc,
                state,
                {OrderLifecycleState.REJECTED.value, OrderLifecycleState.CANCELLED.value},
            )
        order = self._payload_order(REJECT_ORDER_MUTATION, order_id, data)
        self.log.info("Rejected ezCater order %s (%s; now %s)", order_id, reason, lifecycle_state_of(order))
        return order

    # ---------------------------------------------------------------- notifications (webhooks)

    @property
    def webhook_path(self) -> str:
        """``/ezcater/webhooks/<conn_id>``: where this connection's webhook receiver answers."""
        return webhook_path(self.ezcater_conn_id)

    def has_webhook_secret(self) -> bool:
        """Whether the connection's extra ``webhook_secret`` is set (its value is never returned)."""
        return self._get_config().webhook_secret_set

    def get_caterers(
        self, ids: Iterable[str] | str | None = None, uuids: Iterable[str] | str | None = None
    ) -> list[Caterer]:
        """The caterers the API user may act for (``caterers`` query, not paged), optionally filtered by
        numeric ``ids`` and/or ``uuids``."""
        variables: dict[str, Any] = {}
        checked_ids = _check_ids(ids, "caterer id")
        checked_uuids = _check_ids(uuids, "caterer uuid")
        if checked_ids is not None:
            variables["ids"] = checked_ids
        if checked_uuids is not None:
            variables["uuids"] = checked_uuids
        subject = f"the caterers of connection '{self.ezcater_conn_id}'"
        data = self._call(CATERERS_QUERY, variables, "", CallState(), subject=subject)
        return caterers_from_api(data.get(CATERERS_QUERY.root_field))

    def get_subscriber(self) -> Subscriber | None:
        """The API user's subscriber with its subscriptions; None when it has none yet.

        ezCater allows one subscriber per API user; should the answer list several, the first is
        returned (and a warning logged).
        """
        subscribers = self._read_subscribers()
        if len(subscribers) > 1:
            self.log.warning(
                "ezCater lists %d subscribers for connection '%s' (%s); using the first",
                len(subscribers),
                self.ezcater_conn_id,
                ", ".join(s.id for s in subscribers),
            )
        return subscribers[0] if subscribers else None

    def create_subscriber(self, name: str, webhook_url: str) -> NewSubscriber:
        """Create the API user's subscriber; its answer carries the webhook secret, once.

        Store ``webhook_secret`` (e.g. as the connection's extra ``webhook_secret``) before anything
        else: ezCater never shows it again. The request is retried only while it certainly never reached
        ezCater (no connection, 408 / 429 / 503).

        :raises InvalidArgumentError: the name or the webhook URL is refused (nothing was sent).
        :raises SubscriberOutcomeUnknownError: the request may have reached ezCater but the answer was
            lost; it is not sent again (run ``orders-ezcater status`` to see whether it exists).
        """
        name = _check_name(name)
        url = check_webhook_url(webhook_url)
        conn_id = self.ezcater_conn_id
        subject = f"the subscriber of connection '{conn_id}' (webhook URL {url})"
        operation = CREATE_SUBSCRIBER_MUTATION
        variables = {"subscriberParams": {"name": name, "webhookUrl": url}}
        state = CallState()

        def unknown(why: str) -> str:
            return (
                f"The request to create the ezCater subscriber of connection '{conn_id}' (webhook URL "
                f"{url}) may have reached ezCater, but {why}. It was not sent again: that answer is the only "
                f"copy of the webhook secret. Run `orders-ezcater status --conn-id {conn_id}` to see whether "
                "the subscriber exists. If it does, its webhook secret cannot be read again: ask ezCater to "
                "delete that subscriber, then run `orders-ezcater subscribe` again."
            )

        def attempt(send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            try:
                return send()
            except LostAnswerError as lost:
                raise SubscriberOutcomeUnknownError(
                    unknown(f"its answer was lost ({lost.reason})"), http_status=lost.http_status
                ) from lost

        data = self._call(operation, variables, "", state, subject=subject, attempt=attempt)
        payload = data.get(operation.root_field)
        subscriber = Subscriber.from_api(payload.get("subscriber") if isinstance(payload, dict) else None)
        secret = webhook_secret_of(payload)
        if secret:
            mask(secret)
        if subscriber is None:
            error = SubscriberOutcomeUnknownError(unknown("its answer carried no subscriber"))
            error.reached_api = True
            raise error
        if secret is None:
            error = SubscriberOutcomeUnknownError(
                unknown(f"its answer named subscriber '{subscriber.id}' without a webhookSecret")
            )
            error.reached_api = True
            raise error
        self.log.info(
            "Created ezCater subscriber %s (%s) for connection '%s' with webhook URL %s",
            subscriber.id,
            subscriber.name,
            conn_id,
            subscriber.webhook_url,
        )
        return NewSubscriber(subscriber=subscriber, webhook_secret=secret)

    def update_subscriber(
        self, subscriber_id: str, *, name: str | None = None, webhook_url: str | None = None
    ) -> Subscriber:
        """Change the subscriber's name and/or webhook URL; its webhook secret stays the same.

        After a lost answer the subscriber is read again, and an update it already shows counts as done.
        """
        subscriber_id = _check_id(subscriber_id, "subscriber id")
        params: dict[str, str] = {}
        if name is not None:
            params["name"] = _check_name(name)
        if webhook_url is not None:
            params["webhookUrl"] = check_webhook_url(webhook_url)
        if not params:
            raise InvalidArgumentError("Give a new name and/or webhook URL to update the subscriber with.")
        conn_id = self.ezcater_conn_id
        subject = f"subscriber '{subscriber_id}' of connection '{conn_id}'"
        operation = UPDATE_SUBSCRIBER_MUTATION
        state = CallState()

        def applied() -> Subscriber | None:
            for found in self._read_subscribers_once():
                if found.id == subscriber_id and (
                    params.get("name", found.name) == found.name
                    and params.get("webhookUrl", found.webhook_url) == found.webhook_url
                ):
                    return found
            return None

        found: list[Subscriber] = []

        def attempt(send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            if state.answer_lost and (done := applied()) is not None:
                found.append(done)
                return {}
            return send()

        try:
            data = self._call(
                operation,
                {"subscriberId": subscriber_id, "subscriberParams": params},
                "",
                state,
                subject=subject,
                attempt=attempt,
            )
        except OrderNotFoundError as exc:  # "Couldn't find Subscriber"
            raise _rejected(
                exc,
                f"ezCater has no subscriber '{subscriber_id}' for the API user of connection '{conn_id}': "
                f"{exc.api_message or exc.message}. `orders-ezcater status --conn-id {conn_id}` shows its "
                "subscriber.",
            ) from exc
        if found:
            subscriber: Subscriber | None = found[0]
            self.log.info(
                "ezCater subscriber %s already shows the update an earlier attempt sent (its answer was "
                "lost); counting it as done",
                subscriber_id,
            )
        else:
            payload = data.get(operation.root_field)
            subscriber = Subscriber.from_api(payload.get("subscriber") if isinstance(payload, dict) else None)
        if subscriber is None:
            raise RequestRejectedError(
                f"ezCater answered the request to update {subject} without the subscriber."
            )
        self.log.info(
            "Updated ezCater subscriber %s of connection '%s': name %s, webhook URL %s",
            subscriber.id,
            conn_id,
            subscriber.name,
            subscriber.webhook_url,
        )
        return subscriber

    def create_subscription(
        self, subscriber_id: str, caterer_uuid: str, event_key: str, event_entity: str = ORDER_EVENT_ENTITY
    ) -> Subscription:
        """Subscribe ``subscriber_id`` to ``event_entity`` ``event_key`` of the caterer ``caterer_uuid``.

        After a lost answer the subscriber is read again: the identical subscription found there is that
        attempt's success (it is not created twice); not found, the request is sent again.

        :raises InvalidArgumentError: an unknown event key, an empty id (nothing was sent).
        """
        subscriber_id = _check_id(subscriber_id, "subscriber id")
        caterer_uuid = _check_id(caterer_uuid, "caterer uuid")
        event_entity = _check_id(event_entity, "event entity")
        event_key = check_event_key(event_key, event_entity)
        conn_id = self.ezcater_conn_id
        subject = (
            f"the subscription of subscriber '{subscriber_id}' (connection '{conn_id}') to {event_entity} "
            f"event '{event_key}' of caterer '{caterer_uuid}'"
        )
        operation = CREATE_SUBSCRIPTION_MUTATION
        params = {
            "eventEntity": event_entity,
            "eventKey": event_key,
            "parentEntity": CATERER_PARENT_ENTITY,
            "parentId": caterer_uuid,
            "subscriberId": subscriber_id,
        }
        state = CallState()

        def existing() -> Subscription | None:
            for subscriber in self._read_subscribers_once():
                if subscriber.id == subscriber_id:
                    return subscriber.find_subscription(caterer_uuid, event_key, event_entity)
            return None

        found: list[Subscription] = []

        def attempt(send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            if state.answer_lost and (done := existing()) is not None:
                found.append(done)
                return {}
            try:
                return send()
            except (RequestRejectedError, InvalidStateTransitionError):
                # e.g. "already subscribed" after an attempt whose answer was lost: that one did it
                if state.answer_lost and (done := existing()) is not None:
                    found.append(done)
                    return {}
                raise

        try:
            data = self._call(
                operation, {"subscriptionParams": params}, "", state, subject=subject, attempt=attempt
            )
        except OrderNotFoundError as exc:  # "Couldn't find Caterer" and the like
            raise _rejected(
                exc,
                f"ezCater could not find caterer '{caterer_uuid}' to subscribe to its {event_entity} "
                f"'{event_key}' events (connection '{conn_id}'): "
                f"{exc.api_message or exc.message}. `orders-ezcater caterers --conn-id {conn_id}` lists "
                "the caterers this API user may act for.",
            ) from exc
        if found:
            self.log.info(
                "%s exists: an earlier attempt of this call created it and lost the answer; counting it "
                "as done",
                subject[0].upper() + subject[1:],
            )
            return found[0]
        payload = data.get(operation.root_field)
        subscription = Subscription.from_api(
            payload.get("subscription") if isinstance(payload, dict) else None
        )
        if subscription is None:
            raise RequestRejectedError(
                f"ezCater answered the request to create {subject} without the subscription."
            )
        self.log.info("Created %s", subject)
        return subscription

    def test_connection(self) -> tuple[bool, str]:
        """Run the named ``Order`` query on a nil uuid: "Couldn't find Order" means the token works."""
        try:
            config = self._get_config()
            self.get_order(PROBE_ORDER_ID)
        except (OrderNotFoundError, NotAuthorizedError, FeatureNotEnabledError) as exc:
            return True, (
                f"Connected to ezCater at {self._get_config().url}: the API token was accepted "
                f"(probe order lookup answered: {exc.api_message or exc.message})."
            )
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to ezCater at {config.url}: the API token was accepted."

    async def aget_order(self, order_id: str) -> dict[str, Any]:
        """Async :meth:`get_order` for triggers: gql's httpx transport on the event loop's shared client,
        the async connection lookup."""
        config = await self._aget_config()
        await aload()
        state = CallState()
        request = graphql_request(ORDER_QUERY, {"orderId": order_id})
        timeout = async_timeout(config.settings.timeout)

        async def attempt() -> dict[str, Any]:
            with state:
                try:
                    answer = await send_async(
                        config.url,
                        request,
                        headers=config.async_headers,
                        timeout=timeout,
                        verify_ssl=config.settings.verify_ssl,
                    )
                except SendFailed as failed:
                    raise client_failure(config, ORDER_QUERY, failed.error) from failed.error
                return interpret(answer, ORDER_QUERY, order_id, config)

        data = await config.settings.retry_policy.acall(
            attempt, what=describe_call(ORDER_QUERY, order_id), log=self.log
        )
        return self._order(order_id, data.get("order"))

    # ---------------------------------------------------------------- execution and results

    def _call(
        self,
        operation: Operation,
        variables: dict[str, Any],
        order_id: str,
        state: CallState,
        *,
        subject: str | None = None,
        attempt: Callable[[Callable[[], dict[str, Any]]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One sync call: attempts under the connection's retry policy; ``state`` notes lost answers.

        A failure says whether any attempt may have reached ezCater (``reached_api``): a mutation that
        certainly never arrived proves nothing about the order's state. ``subject`` names what a call that
        is not about an order acts on; ``attempt``, given one attempt's ``send``, decides what an attempt
        does (e.g. look before sending again, or refuse to send again after a lost answer).
        """
        try:
            config = self._get_config()
            request = graphql_request(operation, variables)

            def send() -> dict[str, Any]:
                return self._attempt_sync(config, operation, request, order_id, state, subject=subject)

            return config.settings.retry_policy.call(
                send if attempt is None else (lambda: attempt(send)),
                what=describe_call(operation, order_id, subject=subject),
                log=self.log,
            )
        except OrdersProviderError as exc:
            exc.reached_api = state.reached
            raise

    def _attempt_sync(
        self,
        config: _Config,
        operation: Operation,
        request: GraphQLRequest,
        order_id: str,
        state: CallState,
        *,
        subject: str | None = None,
    ) -> dict[str, Any]:
        with state:
            try:
                answer = send_sync(self._sync_transport(), request)
            except SendFailed as failed:
                raise client_failure(config, operation, failed.error) from failed.error
            return interpret(answer, operation, order_id, config, subject=subject)

    def _subscribers_subject(self) -> str:
        return f"the subscriber of connection '{self.ezcater_conn_id}'"

    def _read_subscribers(self) -> list[Subscriber]:
        """The ``subscribers`` query under the retry policy (a list, a single object or null)."""
        data = self._call(SUBSCRIBERS_QUERY, {}, "", CallState(), subject=self._subscribers_subject())
        return subscribers_from_api(data.get(SUBSCRIBERS_QUERY.root_field))

    def _read_subscribers_once(self) -> list[Subscriber]:
        """One attempt of the ``subscribers`` query inside an attempt of a mutation (whose retry policy
        retries a failure of it)."""
        config = self._get_config()
        request = graphql_request(SUBSCRIBERS_QUERY, {})
        data = self._attempt_sync(
            config, SUBSCRIBERS_QUERY, request, "", CallState(), subject=self._subscribers_subject()
        )
        return subscribers_from_api(data.get(SUBSCRIBERS_QUERY.root_field))

    @staticmethod
    def _order(order_id: str, order: Any) -> dict[str, Any]:
        if not isinstance(order, dict):
            raise OrderNotFoundError(f"ezCater has no order '{order_id}' (its answer carried no order).")
        return order

    @staticmethod
    def _payload_order(operation: Operation, order_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        payload = data.get(operation.root_field)
        order = payload.get("order") if isinstance(payload, dict) else None
        if not isinstance(order, dict):
            raise RequestRejectedError(
                f"ezCater answered the request to {operation.verb} order '{order_id}' without the order "
                f"({operation.root_field} was {json.dumps(payload)})."
            )
        return order

    def _resolve_invalid_transition(
        self,
        operation: Operation,
        order_id: str,
        error: InvalidStateTransitionError,
        state: CallState,
        done_states: set[str],
        *,
        accept_modification: bool = False,
    ) -> dict[str, Any]:
        """Read the order once to tell "our lost answer already did it" from a real refusal."""
        try:
            order = self.get_order(order_id)
        except OrdersProviderError as lookup:
            raise InvalidStateTransitionError(
                f"{error.message} The order's current state could not be read: {lookup}",
                order_state=None,
                api_message=error.api_message,
                http_status=error.http_status,
                code=error.code,
            ) from error
        current = lifecycle_state_of(order)
        if state.answer_lost and current in done_states:
            self.log.info(
                "ezCater order %s is %s: an earlier attempt of this call sent the %s mutation and lost "
                "the answer; counting it as done",
                order_id,
                current,
                operation.name,
            )
            return order
        message = f"{error.message} The order is currently '{current}'."
        if (
            operation is ACCEPT_ORDER_MUTATION
            and current == OrderLifecycleState.ACCEPTED.value
            and not accept_modification
        ):
            message += (
                " If the customer modified it after it was accepted, the pending modification needs "
                "accept_modification=True."
            )
        raise InvalidStateTransitionError(
            message,
            order_state=current,
            api_message=error.api_message,
            http_status=error.http_status,
            code=error.code,
        ) from error


__all__ = [
    "ACCEPT_ORDER_MUTATION",
    "DEFAULT_ENDPOINT",
    "LOOPBACK_HOSTS",
    "ORDER_QUERY",
    "REJECT_ORDER_MUTATION",
    "WEBHOOK_SECRET_EXTRA",
    "EzCaterHook",
    "InvalidArgumentError",
    "SubscriberOutcomeUnknownError",
    "check_event_key",
    "check_event_keys",
    "check_webhook_url",
    "webhook_path",
]
