"""
### Reject an ezCater order with a reason

Turns one catering order down, telling ezCater why (`reason`) and, optionally, in your own words
(`explanation`, shown to the customer's contact at ezCater). Rejecting an order that is already
rejected or cancelled, or that ezCater does not let you reject, fails the task with ezCater's message
and without using retries. Connection: `ezcater_default`.

```
airflow dags trigger example_reject_order \\
  --conf '{"order_id": "<uuid>", "reason": "AT_DAILY_CAPACITY", "explanation": "Fully booked that day."}'
```
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_provider_orders.operators.ezcater import RejectOrderOperator

with DAG(
    dag_id="example_reject_order",
    description="Reject one ezCater catering order with a reason.",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    tags=["example", "ezcater"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "order_id": Param(
            # The ezCater sandbox's demo order "to-reject" (`make airflow`); put a real order's uuid here.
            "55555555-5555-4555-8555-555555555555",
            type="string",
            minLength=1,
            title="ezCater order id",
            description="uuid of the catering order to reject.",
        ),
        "reason": Param(
            "AT_DAILY_CAPACITY",
            type="string",
            minLength=1,
            examples=["AT_DAILY_CAPACITY", "STAFF_SHORTAGE", "LACK_OF_INVENTORY"],
            title="Reason",
            description="ezCater's rejection reason code (RejectOrderInput.reason).",
        ),
        "explanation": Param(
            None,
            type=["null", "string"],
            title="Explanation",
            description="Optional free text sent along with the reason.",
        ),
    },
) as dag:
    RejectOrderOperator(
        task_id="reject_order",
        order_id="{{ params.order_id }}",
        reason="{{ params.reason }}",
        # Rendered to "" when no explanation is given; the operator sends none for an empty text.
        explanation="{{ params.explanation or '' }}",
    )


if __name__ == "__main__":
    dag.test()
