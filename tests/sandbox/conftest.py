"""Helpers of the sandbox tests: a fake clock, a logged-in DataKitchen session, a gql client."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from collections.abc import Callable

    from gql import Client

    from airflow_provider_orders.sandbox import DataKitchenSandbox, EzCaterSandbox

USERNAME = "demo@example.com"
PASSWORD = "demo-password"
TOKEN = "sandbox-token"

#: The seed page's acceptOrder mutation, as ezCater documents it.
ACCEPT_ORDER = """
mutation AcceptOrder($orderId: ID!, $acceptModification: Boolean) {
  acceptOrder(orderId: $orderId, acceptModification: $acceptModification) {
    order {
      uuid
      lifecycle {
        orderIsCurrently
      }
    }
  }
}
"""
REJECT_ORDER = """
mutation RejectOrder($orderId: ID!, $input: RejectOrderInput!) {
  rejectOrder(orderId: $orderId, rejectOrderInput: $input) {
    order { uuid lifecycle { orderIsCurrently } }
  }
}
"""
ORDER = """
query Order($orderId: ID!) {
  order(id: $orderId) {
    uuid
    orderNumber
    orderSourceType
    lifecycle { orderIsCurrently }
    caterer { uuid name storeNumber }
    event { timestamp catererHandoffFoodTime timeZoneIdentifier headcount orderType }
    totals { customerTotalDue { currency subunits } }
    catererCart { orderItems { uuid name quantity } }
  }
}
"""


class FakeClock:
    """An epoch-seconds clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


def login(dk: DataKitchenSandbox, username: str = USERNAME, password: str = PASSWORD) -> requests.Response:
    return requests.post(f"{dk.url}/v2/login", data={"username": username, "password": password}, timeout=5)


class DK:
    """A logged-in DataKitchen client: ``dk.get(path)`` etc. with the bearer token."""

    def __init__(self, sandbox: DataKitchenSandbox) -> None:
        self.sandbox = sandbox
        response = login(sandbox)
        assert response.status_code == 200, response.text
        self.token = response.text
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.request(method, f"{self.sandbox.url}{path}", **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def create(self, variation: str = "success", parameters: dict[str, Any] | None = None) -> str:
        body = {"parameters": parameters or {}}
        response = self.put(f"/v2/order/create/demo-kitchen/demo-recipe/{variation}", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["order_id"])

    def servings(self, order_id: str, kitchen: str = "demo-kitchen") -> list[dict[str, Any]]:
        response = self.get(f"/v2/order/servings/{kitchen}/{order_id}")
        assert response.status_code == 200, response.text
        return list(response.json()["servings"])


@pytest.fixture
def dk(datakitchen_sandbox: DataKitchenSandbox) -> DK:
    return DK(datakitchen_sandbox)


def gql_client(ez: EzCaterSandbox, token: str | None = TOKEN, **transport: Any) -> Client:
    from gql import Client
    from gql.transport.requests import RequestsHTTPTransport

    headers = {"Authorization": token} if token is not None else {}
    return Client(
        transport=RequestsHTTPTransport(
            url=ez.graphql_url, headers=headers, timeout=5, retries=0, **transport
        ),
        fetch_schema_from_transport=False,
    )


def execute(client: Client, query: str, **variables: Any) -> dict[str, Any]:
    from gql import GraphQLRequest

    return client.execute(GraphQLRequest(query, variable_values=variables or None))


@pytest.fixture
def ez(ezcater_sandbox: EzCaterSandbox) -> Client:
    """A gql client on the ezCater sandbox fixture."""
    return gql_client(ezcater_sandbox)
