"""Hooks of airflow-provider-orders: one module per API (datakitchen, ezcater)."""
