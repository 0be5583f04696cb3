"""Apache Airflow 3 provider for the DataKitchen Automation API and the ezCater Orders API.

Importing this package is cheap on purpose: it imports nothing from Airflow, requests or gql.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

PACKAGE_NAME = "airflow-provider-orders"


#: Connection form fields both connection types share: the hooks' HTTP and retry settings.
_HTTP_CONN_FIELDS: dict[str, Any] = {
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "Connect and read timeout of each HTTP request.",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "verify_ssl": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "max_retries": {
        "label": "Retries inside the hook",
        "description": "How many times a transient failure (429, 5xx, connection error) "
        "is retried inside one call before the task fails.",
        "schema": {"type": ["integer", "null"], "default": 5},
    },
    "retry_delay": {
        "label": "First retry delay (seconds)",
        "description": "Base of the exponential backoff between those retries; "
        "Retry-After from the API takes precedence.",
        "schema": {"type": ["number", "null"], "default": 1.0},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Orders (DataKitchen & ezCater)",
        "description": "Submit and watch DataKitchen recipe orders; read, accept and reject ezCater "
        "catering orders.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "DataKitchen",
                "external-doc-url": "https://docs.datakitchen.io/",
                "tags": ["service"],
            },
            {
                "integration-name": "ezCater",
                "external-doc-url": "https://api.ezcater.io/",
                "tags": ["service"],
            },
        ],
        "operators": [
            {
                "integration-name": "DataKitchen",
                "python-modules": ["airflow_provider_orders.operators.datakitchen"],
            },
            {
                "integration-name": "ezCater",
                "python-modules": ["airflow_provider_orders.operators.ezcater"],
            },
        ],
        "sensors": [
            {
                "integration-name": "DataKitchen",
                "python-modules": ["airflow_provider_orders.sensors.datakitchen"],
            },
            {
                "integration-name": "ezCater",
                "python-modules": ["airflow_provider_orders.sensors.ezcater"],
            },
        ],
        "hooks": [
            {
                "integration-name": "DataKitchen",
                "python-modules": ["airflow_provider_orders.hooks.datakitchen"],
            },
            {
                "integration-name": "ezCater",
                "python-modules": ["airflow_provider_orders.hooks.ezcater"],
            },
        ],
        "triggers": [
            {
                "integration-name": "DataKitchen",
                "python-modules": ["airflow_provider_orders.triggers.datakitchen"],
            },
            {
                "integration-name": "ezCater",
                "python-modules": ["airflow_provider_orders.triggers.ezcater"],
            },
        ],
        "extra-links": ["airflow_provider_orders.links.DataKitchenOrderRunLink"],
        "connection-types": [
            {
                "connection-type": "datakitchen",
                "hook-class-name": "airflow_provider_orders.hooks.datakitchen.DataKitchenHook",
                "hook-name": "DataKitchen",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "host": "API base URL",
                        "login": "Username",
                        "password": "Password",
                    },
                    "placeholders": {
                        "host": "https://cloud.datakitchen.io",
                        "login": "you@example.com",
                    },
                },
                "conn-fields": {
                    **_HTTP_CONN_FIELDS,
                    "web_app_url": {
                        "label": "Web app URL (for links)",
                        "description": "Base URL of the DataKitchen web app; empty means the API base URL.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "customer": {
                        "label": "Customer (for links)",
                        "description": "Your DataKitchen customer name (customer_git_name) as it appears "
                        "in order run URLs; empty means look it up once through /v2/userinfo.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "link_style": {
                        "label": "Order run link style",
                        "description": "'hash' for {web}/#/orders/{customer}/{kitchen}/runs/{run} "
                        "(classic app), 'dk' for {web}/dk/orders/{customer}/{kitchen}/runs/{run} (newer app).",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["hash", "dk", None],
                            "default": "hash",
                        },
                    },
                },
            },
            {
                "connection-type": "ezcater",
                "hook-class-name": "airflow_provider_orders.hooks.ezcater.EzCaterHook",
                "hook-name": "ezCater",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {
                        "host": "GraphQL endpoint URL",
                        "password": "API token",
                    },
                    "placeholders": {
                        "host": "https://api.ezcater.com/graphql",
                    },
                },
                "conn-fields": {
                    **_HTTP_CONN_FIELDS,
                    "client_name": {
                        "label": "Client name",
                        "description": "Sent as apollographql-client-name; ezCater uses it to identify "
                        "your integration.",
                        "schema": {"type": ["string", "null"], "default": "airflow-provider-orders"},
                    },
                    "client_version": {
                        "label": "Client version",
                        "description": "Sent as apollographql-client-version; empty means this "
                        "provider's version.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "webhook_secret": {
                        "label": "Webhook secret",
                        "description": "The secret ezCater returned when `orders-ezcater subscribe` created "
                        "the subscriber; verifies the notifications posted to "
                        "/ezcater/webhooks/<this connection id>.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            },
        ],
    }
