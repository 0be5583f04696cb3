"""The ezCater notification receiver: an Airflow API-server plugin that turns signed deliveries into
asset events.

* :mod:`.signature`: the ``X-Ezcater-Signature`` check (pure, constant time).
* :mod:`._store`: the metadata-DB side: the delivery-id guard, the asset event, the run queue.
* :mod:`.receiver`: the FastAPI app mounted at ``/ezcater`` (``POST /ezcater/webhooks/{conn_id}``).
* :mod:`.plugin`: the ``AirflowPlugin`` registered through the ``airflow.plugins`` entry point.

DAG authors need none of these: they schedule on
:func:`airflow_provider_orders.assets.ezcater_order_asset`. Nothing here is imported at DAG parse time,
and FastAPI / SQLAlchemy are imported only by the API server that mounts the app.
"""

from __future__ import annotations
