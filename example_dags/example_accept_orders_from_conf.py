"""
### Accept the ezCater orders named in the run's conf

For a webhook relay or another system that triggers a run per batch of catering orders:

```
airflow dags trigger example_accept_orders_from_conf --conf '{"order_ids": ["<uuid>", "<uuid>"]}'
```

One mapped **accept_order** task per id. An order that cannot be accepted (not found, not authorised,
feature not enabled for the caterer, already rejected or cancelled) fails its own task with ezCater's
message and without using retries; the other orders are still accepted. Connection: `ezcater_default`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import DAG, Param, task

from airflow_provider_orders.operators.ezcater import AcceptOrderOperator

with DAG(
    dag_id="example_accept_orders_from_conf",
    description="Accept the ezCater catering orders listed in dag_run.conf['order_ids'].",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    tags=["example", "ezcater"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        # The trigger form writes this field into dag_run.conf["order_ids"].
        "order_ids": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            title="ezCater order ids",
            description="Catering orders (ezCater order uuids, one per line) to accept.",
        ),
    },
) as dag:

    @task
    def order_ids_from_conf(dag_run: Any = None) -> list[str]:
        """Read and check dag_run.conf["order_ids"]: a non-empty list of order ids."""
        conf = (dag_run.conf if dag_run is not None else None) or {}
        order_ids = conf.get("order_ids")
        if isinstance(order_ids, str):
            order_ids = [order_ids]
        if (
            not isinstance(order_ids, list)
            or not order_ids
            or not all(isinstance(i, str) and i.strip() for i in order_ids)
        ):
            raise AirflowFailException(
                'dag_run.conf["order_ids"] must be a non-empty list of ezCater order ids, '
                f'e.g. {{"order_ids": ["<order uuid>"]}}; got {order_ids!r}'
            )
        return [i.strip() for i in order_ids]

    # For a change to an order that was already accepted, pass accept_modification=True.
    AcceptOrderOperator.partial(task_id="accept_order").expand(order_id=order_ids_from_conf())


if __name__ == "__main__":
    dag.test()
