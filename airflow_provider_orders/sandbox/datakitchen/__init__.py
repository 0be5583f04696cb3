"""DataKitchen Automation API sandbox (models apart from HTTP handling)."""

from __future__ import annotations

from airflow_provider_orders.sandbox.datakitchen.http import DataKitchenSandbox
from airflow_provider_orders.sandbox.datakitchen.models import DataKitchenModel, Order, OrderRun, Variation

__all__ = ["DataKitchenModel", "DataKitchenSandbox", "Order", "OrderRun", "Variation"]
