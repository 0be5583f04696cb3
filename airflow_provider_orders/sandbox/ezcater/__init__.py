"""ezCater public API (GraphQL) sandbox (models apart from HTTP handling)."""

from __future__ import annotations

from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox
from airflow_provider_orders.sandbox.ezcater.models import DEMO_ORDERS, EzCaterModel, EzOrder

__all__ = ["DEMO_ORDERS", "EzCaterModel", "EzCaterSandbox", "EzOrder"]
