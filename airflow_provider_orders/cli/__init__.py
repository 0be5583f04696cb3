"""Command-line tools of the provider (``orders-ezcater``).

They read Airflow connections through the hooks, so an ``AIRFLOW_CONN_<ID>`` environment variable or a
connection in the metadata database both work.
"""
