"""EzCaterHook's notification calls (caterers, subscriber, subscriptions) over real HTTP against the
ezCater sandbox: happy paths, refusals, lost answers, and the webhook secret kept out of logs and errors.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_orders.exceptions import (
    AuthenticationFailedError,
    OrdersProviderError,
    PermanentOrdersError,
    RequestRejectedError,
)
from airflow_provider_orders.hooks.ezcater import (
    EzCaterHook,
    InvalidArgumentError,
    SubscriberOutcomeUnknownError,
    check_event_keys,
    check_webhook_url,
    webhook_path,
)
from airflow_provider_orders.models.ezcater import (
    Caterer,
    NewSubscriber,
    Subscriber,
    Subscription,
    subscribers_from_api,
    webhook_secret_of,
)

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import EzCaterSandbox

CATERER_1 = "c0ffee00-0000-4000-8000-000000000001"
CATERER_2 = "c0ffee00-0000-4000-8000-000000000002"
URL = "https://airflow.example.com/ezcater/webhooks/ezcater_default"
OTHER_URL = "https://airflow2.example.com/ezcater/webhooks/ezcater_default"


def _count(ez: EzCaterSandbox, route: str) -> int:
    return ez.count(route)


def _secret_of(ez: EzCaterSandbox, subscriber_id: str) -> str:
    """The secret the sandbox holds for a subscriber (what ezCater would sign deliveries with)."""
    return ez.model.subscribers[subscriber_id].secret


def _subscriptions(ez: EzCaterSandbox) -> list[dict[str, Any]]:
    (subscriber,) = ez.subscribers()
    return list(subscriber["subscriptions"])


# ---------------------------------------------------------------------------------------------- caterers


def test_get_caterers_all_and_filtered(ezcater_sandbox: EzCaterSandbox) -> None:
    hook = EzCaterHook()

    everyone = hook.get_caterers()
    assert [c.uuid for c in everyone] == [CATERER_1, CATERER_2]
    first = everyone[0]
    assert first == Caterer(id="1001", uuid=CATERER_1, name="Sandbox Catering Co.", store_number="101")

    assert [c.uuid for c in hook.get_caterers(uuids=[CATERER_2])] == [CATERER_2]
    assert [c.uuid for c in hook.get_caterers(uuids=CATERER_2)] == [CATERER_2]  # one uuid, not its letters
    assert [c.uuid for c in hook.get_caterers(ids=["1001"])] == [CATERER_1]
    assert hook.get_caterers(uuids=["no-such-caterer"]) == []

    read, *_ = ezcater_sandbox.requests
    assert read.json()["operationName"] == "Caterers"
    assert "variables" not in read.json()  # no filter: no variables at all
    filtered = ezcater_sandbox.requests[1].json()
    assert filtered["variables"] == {"uuids": [CATERER_2]}
    assert CATERER_2 not in filtered["query"]


def test_reads_are_retried_on_transient_failures(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    ez.inject_fault("caterers", status=502)
    ez.inject_fault("subscribers", drop=True)

    assert len(EzCaterHook().get_caterers()) == 2
    assert EzCaterHook().get_subscriber() is None
    assert _count(ez, "caterers") == 2
    assert _count(ez, "subscribers") == 2


# ---------------------------------------------------------------------------------------------- subscriber


def test_create_subscriber_returns_the_secret_once(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    hook = EzCaterHook()
    assert hook.get_subscriber() is None

    created = hook.create_subscriber("airflow-provider-orders", URL)

    assert isinstance(created, NewSubscriber)
    subscriber = created.subscriber
    assert subscriber.name == "airflow-provider-orders"
    assert subscriber.webhook_url == URL
    assert subscriber.subscriptions == ()
    assert created.webhook_secret == _secret_of(ez, subscriber.id)
    for text in (repr(created), str(created), repr(subscriber)):
        assert created.webhook_secret not in text
    assert not hasattr(subscriber, "webhook_secret")

    request = ez.requests[-1]
    assert request.json()["operationName"] == "CreateSubscriber"
    assert request.json()["variables"] == {
        "subscriberParams": {"name": "airflow-provider-orders", "webhookUrl": URL}
    }

    again = hook.get_subscriber()
    assert again == subscriber  # the read never carries the secret: the models are equal
    assert "webhookSecret" not in ez.requests[-1].json()["query"]


def test_a_second_subscriber_is_refused_naming_the_connection(ezcater_sandbox: EzCaterSandbox) -> None:
    hook = EzCaterHook()
    hook.create_subscriber("first", URL)

    with pytest.raises(RequestRejectedError) as info:
        hook.create_subscriber("second", OTHER_URL)

    message = str(info.value)
    assert "Subscriber already exists for this API user" in message
    assert "ezcater_default" in message
    assert info.value.api_message == "Subscriber already exists for this API user"
    assert ezcater_sandbox.count("createSubscriber") == 2  # refused, not retried


def test_update_subscriber_keeps_the_secret(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    hook = EzCaterHook()
    created = hook.create_subscriber("airflow-provider-orders", URL)
    hook.create_subscription(created.subscriber.id, CATERER_1, "submitted")

    updated = hook.update_subscriber(created.subscriber.id, webhook_url=OTHER_URL)

    assert updated.id == created.subscriber.id
    assert updated.webhook_url == OTHER_URL
    assert updated.name == "airflow-provider-orders"
    assert [s.parent_id for s in updated.subscriptions] == [CATERER_1]
    assert _secret_of(ez, updated.id) == created.webhook_secret
    assert ez.requests[-1].json()["variables"] == {
        "subscriberId": updated.id,
        "subscriberParams": {"webhookUrl": OTHER_URL},
    }
    renamed = hook.update_subscriber(updated.id, name="orders")
    assert (renamed.name, renamed.webhook_url) == ("orders", OTHER_URL)


def test_update_of_an_unknown_subscriber_names_it(ezcater_sandbox: EzCaterSandbox) -> None:
    with pytest.raises(RequestRejectedError) as info:
        EzCaterHook().update_subscriber("no-such-subscriber", name="x")
    assert "no-such-subscriber" in str(info.value)
    assert "Couldn't find Subscriber" in str(info.value)
    assert "ezcater_default" in str(info.value)


def test_update_needs_something_to_change(ezcater_sandbox: EzCaterSandbox) -> None:
    with pytest.raises(InvalidArgumentError, match="new name and/or webhook URL"):
        EzCaterHook().update_subscriber("s-1")
    assert ezcater_sandbox.requests == []


def test_a_subscribers_answer_that_is_one_object_or_null_is_read(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    single = {"id": 7, "name": "n", "webhookUrl": URL, "subscriptions": None}
    ez.inject_fault("subscribers", status=200, body={"data": {"subscribers": single}})
    ez.inject_fault("subscribers", status=200, body={"data": {"subscribers": None}})

    assert EzCaterHook().get_subscriber() == Subscriber(id="7", name="n", webhook_url=URL, subscriptions=())
    assert EzCaterHook().get_subscriber() is None


def test_a_secret_at_the_payload_top_level_is_read(ezcater_sandbox: EzCaterSandbox) -> None:
    answer = {
        "data": {
            "createSubscriber": {
                "subscriber": {"id": "s-9", "name": "n", "webhookUrl": URL},
                "webhookSecret": "top-level-secret-0123456789",
            }
        }
    }
    ezcater_sandbox.inject_fault("createSubscriber", status=200, body=answer)

    created = EzCaterHook().create_subscriber("n", URL)

    assert created.subscriber.id == "s-9"
    assert created.webhook_secret == "top-level-secret-0123456789"


def test_an_answer_without_the_secret_says_it_cannot_be_read_again(ezcater_sandbox: EzCaterSandbox) -> None:
    answer = {"data": {"createSubscriber": {"subscriber": {"id": "s-9", "name": "n", "webhookUrl": URL}}}}
    ezcater_sandbox.inject_fault("createSubscriber", status=200, body=answer)

    with pytest.raises(SubscriberOutcomeUnknownError) as info:
        EzCaterHook().create_subscriber("n", URL)

    assert "s-9" in str(info.value)
    assert "orders-ezcater status" in str(info.value)
    assert ezcater_sandbox.count("createSubscriber") == 1


# ---------------------------------------------------------------------------------------------- lost answers


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"drop": True, "apply": True}, id="dropped-after-creating"),
        pytest.param({"status": 502, "apply": True}, id="502-after-creating"),
        pytest.param({"status": 500}, id="500-not-created"),
    ],
)
def test_a_lost_create_subscriber_answer_is_never_sent_again(
    ezcater_sandbox: EzCaterSandbox, fault: dict[str, Any]
) -> None:
    ez = ezcater_sandbox
    ez.inject_fault("createSubscriber", **fault)

    with pytest.raises(SubscriberOutcomeUnknownError) as info:
        EzCaterHook().create_subscriber("airflow-provider-orders", URL)

    assert ez.count("createSubscriber") == 1
    error = info.value
    assert isinstance(error, PermanentOrdersError)  # the task fails at once, no retries
    assert error.reached_api is True
    message = str(error)
    assert "ezcater_default" in message
    assert "orders-ezcater status --conn-id ezcater_default" in message
    assert "cannot be read again" in message
    assert "not sent again" in message
    assert len(ez.subscribers()) == (1 if fault.get("apply") else 0)
    for subscriber in ez.subscribers():
        assert _secret_of(ez, subscriber["id"]) not in f"{error} {error!r} {error.__cause__!r}"


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 503}, id="503-did-not-act"),
        pytest.param({"status": 429, "headers": {"Retry-After": "0"}}, id="429-did-not-act"),
    ],
)
def test_create_subscriber_is_retried_when_ezcater_certainly_did_not_act(
    ezcater_sandbox: EzCaterSandbox, fault: dict[str, Any]
) -> None:
    ez = ezcater_sandbox
    ez.inject_fault("createSubscriber", **fault)

    created = EzCaterHook().create_subscriber("airflow-provider-orders", URL)

    assert ez.count("createSubscriber") == 2
    assert [s["id"] for s in ez.subscribers()] == [created.subscriber.id]
    assert created.webhook_secret == _secret_of(ez, created.subscriber.id)


def test_a_refused_connection_never_sent_the_subscriber(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = {
        "conn_type": "ezcater",
        "host": f"http://127.0.0.1:{port}/graphql",
        "password": "t",
        "extra": {"retry_delay": 0.001, "max_retries": 1},
    }
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", json.dumps(conn))

    with pytest.raises(OrdersProviderError) as info:
        EzCaterHook().create_subscriber("airflow-provider-orders", URL)

    assert not isinstance(info.value, SubscriberOutcomeUnknownError)
    assert info.value.reached_api is False


def test_a_lost_create_subscription_answer_counts_the_subscription_found(
    ezcater_sandbox: EzCaterSandbox,
) -> None:
    ez = ezcater_sandbox
    hook = EzCaterHook()
    subscriber = hook.create_subscriber("airflow-provider-orders", URL).subscriber
    ez.inject_fault("createSubscription", drop=True, apply=True)  # created, then the answer is lost
    reads_before = ez.count("subscribers")

    subscription = hook.create_subscription(subscriber.id, CATERER_1, "submitted")

    assert subscription == Subscription("Order", "submitted", "Caterer", CATERER_1, subscriber.id)
    assert ez.count("createSubscription") == 1  # found on the re-read: not sent again
    assert ez.count("subscribers") == reads_before + 1
    assert len(_subscriptions(ez)) == 1


def test_a_create_subscription_that_never_happened_is_sent_again(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    hook = EzCaterHook()
    subscriber = hook.create_subscriber("airflow-provider-orders", URL).subscriber
    ez.inject_fault("createSubscription", status=502)  # not executed, but the client cannot know

    subscription = hook.create_subscription(subscriber.id, CATERER_2, "cancelled")

    assert (subscription.parent_id, subscription.event_key) == (CATERER_2, "cancelled")
    assert ez.count("createSubscription") == 2  # the re-read found nothing: sent again
    assert len(_subscriptions(ez)) == 1


def test_a_lost_update_answer_counts_the_update_found(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    hook = EzCaterHook()
    subscriber = hook.create_subscriber("airflow-provider-orders", URL).subscriber
    ez.inject_fault("updateSubscriber", drop=True, apply=True)

    updated = hook.update_subscriber(subscriber.id, webhook_url=OTHER_URL)

    assert updated.webhook_url == OTHER_URL
    assert ez.count("updateSubscriber") == 1


# ---------------------------------------------------------------------------------------------- subscriptions


def test_create_subscription(ezcater_sandbox: EzCaterSandbox) -> None:
    ez = ezcater_sandbox
    hook = EzCaterHook()
    subscriber = hook.create_subscriber("airflow-provider-orders", URL).subscriber

    made = [hook.create_subscription(subscriber.id, CATERER_1, key) for key in ("submitted", "CANCELLED")]

    assert [(s.event_entity, s.event_key, s.parent_entity, s.parent_id) for s in made] == [
        ("Order", "submitted", "Caterer", CATERER_1),
        ("Order", "cancelled", "Caterer", CATERER_1),
    ]
    assert ez.requests[-1].json()["variables"] == {
        "subscriptionParams": {
            "eventEntity": "Order",
            "eventKey": "cancelled",
            "parentEntity": "Caterer",
            "parentId": CATERER_1,
            "subscriberId": subscriber.id,
        }
    }
    read = hook.get_subscriber()
    assert read is not None
    assert read.find_subscription(CATERER_1, "submitted") == made[0]
    assert read.find_subscription(CATERER_1, "Cancelled") == made[1]
    assert read.find_subscription(CATERER_2, "submitted") is None


def test_a_subscription_to_an_unknown_caterer_names_it(ezcater_sandbox: EzCaterSandbox) -> None:
    hook = EzCaterHook()
    subscriber = hook.create_subscriber("airflow-provider-orders", URL).subscriber

    with pytest.raises(RequestRejectedError) as info:
        hook.create_subscription(subscriber.id, "no-such-caterer", "submitted")

    message = str(info.value)
    assert "no-such-caterer" in message
    assert "'submitted'" in message
    assert "Invalid parentId" in message  # the API's own words
    assert ezcater_sandbox.count("createSubscription") == 1


@pytest.mark.parametrize("key", ["modified", "", "submitted,cancelled", "new order"])
def test_event_keys_are_checked_before_calling(ezcater_sandbox: EzCaterSandbox, key: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        EzCaterHook().create_subscription("s-1", CATERER_1, key)
    assert "submitted, accepted, rejected, cancelled, uncancelled" in str(info.value)
    assert ezcater_sandbox.requests == []


def test_check_event_keys() -> None:
    assert check_event_keys("submitted,cancelled") == ("submitted", "cancelled")
    assert check_event_keys(" Submitted , submitted,,accepted ") == ("submitted", "accepted")
    assert check_event_keys(["uncancelled"]) == ("uncancelled",)
    with pytest.raises(InvalidArgumentError, match="at least one"):
        check_event_keys(" , ")
    with pytest.raises(InvalidArgumentError, match="'modified'"):
        check_event_keys("submitted,modified")


# ---------------------------------------------------------------------------------------------- webhook URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://airflow.example.com/ezcater/webhooks/ezcater_default",
        "https://airflow.example.com:8443/x",
        "http://localhost:8080/ezcater/webhooks/ezcater_default",
        "http://127.0.0.1:8080/ezcater/webhooks/ezcater_default",
        "  https://airflow.example.com/x  ",
    ],
)
def test_webhook_urls_accepted(url: str) -> None:
    assert check_webhook_url(url) == url.strip()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://airflow.example.com/ezcater/webhooks/x", "must use https"),
        ("http://airflow.example.com/ezcater/webhooks/x", "localhost and 127.0.0.1"),
        ("ftp://airflow.example.com/x", "https://"),
        ("airflow.example.com/x", "https://"),
        ("https:///no-host", "with a host"),
        ("", "non-empty"),
        ("https://airflow.example.com/a b", "spaces"),
        ("https://user:pw@airflow.example.com/x", "user name or password"),
        ("https://airflow.example.com/x#frag", "fragment"),
        ("https://airflow.example.com:99999/x", "not a usable URL"),
    ],
)
def test_webhook_urls_refused_before_calling(ezcater_sandbox: EzCaterSandbox, url: str, says: str) -> None:
    with pytest.raises(InvalidArgumentError, match=says):
        EzCaterHook().create_subscriber("n", url)
    with pytest.raises(InvalidArgumentError, match=says):
        EzCaterHook().update_subscriber("s-1", webhook_url=url)
    assert ezcater_sandbox.requests == []


def test_the_webhook_path_of_a_connection() -> None:
    assert webhook_path("ezcater_default") == "/ezcater/webhooks/ezcater_default"
    assert EzCaterHook("ez_prod").webhook_path == "/ezcater/webhooks/ez_prod"


@pytest.mark.ezcater_sandbox(conn_extra={"webhook_secret": "connection-stored-secret-42"})
def test_has_webhook_secret_says_whether_the_extra_is_set(
    ezcater_sandbox: EzCaterSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = EzCaterHook()
    assert hook.has_webhook_secret() is True
    assert "connection-stored-secret-42" not in repr(hook._get_config())
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", ezcater_sandbox.connection_json({}))
    assert EzCaterHook().has_webhook_secret() is False


# ---------------------------------------------------------------------------------------------- models


def test_subscribers_are_read_from_a_list_an_object_or_null() -> None:
    one = {
        "id": "s",
        "name": "n",
        "webhookUrl": URL,
        "subscriptions": [{"eventKey": "submitted", "parentId": 5}],
    }
    assert subscribers_from_api(None) == []
    assert subscribers_from_api([]) == []
    assert subscribers_from_api(one) == subscribers_from_api([one])
    (subscriber,) = subscribers_from_api([one, {"name": "no id"}])
    assert subscriber.subscriptions == (Subscription("Order", "submitted", "Caterer", "5", None),)


def test_the_secret_is_read_where_either_reading_puts_it() -> None:
    assert webhook_secret_of({"subscriber": {"webhookSecret": "a"}}) == "a"
    assert webhook_secret_of({"subscriber": {"webhookSecret": None}, "webhookSecret": "b"}) == "b"
    assert webhook_secret_of({"subscriber": {}}) is None
    assert webhook_secret_of(None) is None


# ---------------------------------------------------------------------------------------------- secrets


def test_the_webhook_secret_never_reaches_logs_or_errors(
    ezcater_sandbox: EzCaterSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ez = ezcater_sandbox
    caplog.set_level("DEBUG")
    hook = EzCaterHook()
    created = hook.create_subscriber("airflow-provider-orders", URL)
    secret = created.webhook_secret
    subscriber_id = created.subscriber.id
    ez.inject_fault("createSubscription", drop=True, apply=True)
    hook.create_subscription(subscriber_id, CATERER_1, "submitted")
    hook.update_subscriber(subscriber_id, webhook_url=OTHER_URL)
    errors: list[OrdersProviderError] = []
    for failing in (
        lambda: hook.create_subscriber("again", URL),
        lambda: hook.create_subscription(subscriber_id, "no-such-caterer", "submitted"),
        lambda: hook.update_subscriber("no-such-subscriber", name="x"),
    ):
        with pytest.raises(OrdersProviderError) as info:
            failing()
        errors.append(info.value)
    ez.inject_fault("createSubscriber", drop=True)
    with pytest.raises(SubscriberOutcomeUnknownError) as lost:
        EzCaterHook().create_subscriber("lost", URL)
    errors.append(lost.value)
    monkeypatch.setenv(
        "AIRFLOW_CONN_EZCATER_DEFAULT", json.dumps({**json.loads(ez.connection_json()), "password": "wrong"})
    )
    with pytest.raises(AuthenticationFailedError) as auth:
        EzCaterHook().get_subscriber()
    errors.append(auth.value)

    captured = capfd.readouterr()
    outputs = captured.out + captured.err + caplog.text
    error_texts = " ".join(f"{e} {e!r} {e.__cause__!r} {e.api_message} {e.api_detail}" for e in errors)
    assert "Created ezCater subscriber" in outputs  # the logs were captured at all
    for text in (secret, "sandbox-token"):
        assert text not in outputs
        assert text not in error_texts
