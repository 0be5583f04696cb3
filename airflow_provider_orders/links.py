"""Extra link from a task to the DataKitchen web app's page of the order run it submitted or watched.

How the URL reaches the UI (Airflow 3): the operator or sensor pushes the run's URL to the XCom key
:data:`ORDER_RUN_URL_XCOM_KEY` as soon as the run id is known (the URL comes from
``DataKitchenHook.order_run_url``, i.e. the connection's ``web_app_url`` / ``customer`` / ``link_style``
extras). When the task ends, the worker calls :meth:`DataKitchenOrderRunLink.get_link`, which reads that
XCom back, and stores the result under the XCom key ``_link_DataKitchenOrderRunLink``; the UI shows it.

Cheap to import: nothing but ``airflow.sdk`` at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    import logging

    from airflow.providers.common.compat.sdk import BaseOperator, TaskInstanceKey

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

#: XCom key holding the id of the order a ``SubmitRecipeOrderOperator`` created (pushed at once).
ORDER_ID_XCOM_KEY = "order_id"
#: XCom key holding the id of the order run a task submitted or watched.
ORDER_RUN_ID_XCOM_KEY = "order_run_id"
#: XCom key holding the web-app URL of the order run a task submitted or watched.
ORDER_RUN_URL_XCOM_KEY = "order_run_url"
#: XCom key holding the final status of the order run a task submitted or watched.
ORDER_RUN_STATUS_XCOM_KEY = "order_run_status"


class DataKitchenOrderRunLink(BaseOperatorLink):
    """Button "DataKitchen order run" on ``SubmitRecipeOrderOperator`` and ``RecipeOrderRunSensor``."""

    name = "DataKitchen order run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.providers.common.compat.sdk import XCom

        url = XCom.get_value(ti_key=ti_key, key=ORDER_RUN_URL_XCOM_KEY)
        return url if isinstance(url, str) else ""


def push_order_run_link(
    ti: Any, hook: DataKitchenHook, kitchen: str, run_id: str, log: logging.Logger | Any
) -> str | None:
    """Push the run id (XCom ``order_run_id``) and its web-app URL (read by the link); return the URL.

    A URL that cannot be built (e.g. the customer lookup fails) costs the link, never the task.
    """
    from airflow_provider_orders.exceptions import OrdersProviderError

    ti.xcom_push(key=ORDER_RUN_ID_XCOM_KEY, value=run_id)
    try:
        url = hook.order_run_url(kitchen, run_id)
    except OrdersProviderError as exc:
        log.warning("No link to order run %s: %s", run_id, exc)
        return None
    if url:
        ti.xcom_push(key=ORDER_RUN_URL_XCOM_KEY, value=url)
        log.info("Order run %s: %s", run_id, url)
    return url


__all__ = [
    "ORDER_ID_XCOM_KEY",
    "ORDER_RUN_ID_XCOM_KEY",
    "ORDER_RUN_STATUS_XCOM_KEY",
    "ORDER_RUN_URL_XCOM_KEY",
    "DataKitchenOrderRunLink",
    "push_order_run_link",
]
