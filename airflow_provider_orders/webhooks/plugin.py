"""The Airflow plugin that mounts the ezCater notification receiver at ``/ezcater`` on the API server.

Registered through the ``airflow.plugins`` entry point, so it loads with lazy provider discovery.
Every Airflow component may load plugins; only the API server asks for ``fastapi_apps``, and only then
is the app (and FastAPI) built.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_orders.models.ezcater import WEBHOOK_URL_PREFIX as URL_PREFIX


class EzCaterWebhooksPlugin(AirflowPlugin):
    """``POST /ezcater/webhooks/{conn_id}``: see :mod:`airflow_provider_orders.webhooks.receiver`."""

    name = "ezcater_webhooks"

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:
        if self._apps is None:
            from airflow_provider_orders.webhooks.receiver import create_app

            self._apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "ezCater notifications"}]
        return self._apps

    @fastapi_apps.setter
    def fastapi_apps(self, apps: list[dict[str, Any]]) -> None:
        self._apps = apps


__all__ = ["URL_PREFIX", "EzCaterWebhooksPlugin"]
