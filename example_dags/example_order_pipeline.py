"""
### Recipe order → catering orders

Runs a DataKitchen recipe, then accepts the ezCater catering orders it prepares for.

1. **submit_recipe_order** puts an order for `kitchen` / `recipe` / `variation` (with the variable
   `overrides`) and waits for its order run to finish — deferred to the triggerer, so no worker slot is
   held while the recipe runs. A failed or stopped run fails the task at once, with DataKitchen's message.
   The task's *DataKitchen order run* button opens the run in the DataKitchen web app.
2. **catering_order** is a mapped task group: one copy per ezCater order id, each with its own two tasks.
   **catering_order.wait_until_submitted** (deferred) waits for that order to reach `submitted` (or
   `accepted`); a rejected or cancelled order fails it. **catering_order.accept** then accepts that
   order. Each accept waits for its own order only: a cancelled order does not hold up, or fail, the
   accept of another.

Trigger it from the UI form or with
`airflow dags trigger example_order_pipeline --conf '{"variation": "success", "ezcater_order_ids": ["..."]}'`.
The defaults work against the bundled sandboxes (`make demo`, `make airflow`). Connections used:
`datakitchen_default` and `ezcater_default`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task, task_group

from airflow_provider_orders.operators.datakitchen import SubmitRecipeOrderOperator
from airflow_provider_orders.operators.ezcater import AcceptOrderOperator
from airflow_provider_orders.sensors.ezcater import OrderLifecycleSensor

# Two of the demo catering orders the ezCater sandbox seeds (`make demo`, `make airflow`, `orders-sandbox`):
# one already submitted, one that becomes submitted a little later. Real ids come from ezCater (an order's
# uuid, e.g. the `entity_id` of its "submitted" notification).
DEMO_EZCATER_ORDER_IDS = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
]

with DAG(
    dag_id="example_order_pipeline",
    description="Run a DataKitchen recipe, then accept the ezCater catering orders it prepares for.",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    tags=["example", "datakitchen", "ezcater"],
    default_args={
        # Safe to retry: a retry of the submit task reattaches to the order its first try created,
        # and a retried accept recognises an order its own earlier try accepted.
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
    },
    params={
        "kitchen": Param(
            "demo-kitchen",
            type="string",
            minLength=1,
            title="Kitchen",
            description="DataKitchen kitchen (workspace) to run the recipe in.",
        ),
        "recipe": Param(
            "demo-recipe",
            type="string",
            minLength=1,
            title="Recipe",
            description="Name of the DataKitchen recipe (pipeline) to order.",
        ),
        "variation": Param(
            "success",
            type="string",
            minLength=1,
            examples=["success", "flaky", "fails-data-test", "fails", "stopped", "slow"],
            title="Variation",
            description="Recipe variation to run. The sandbox's demo recipe has 'success', 'flaky' "
            "(fails once; the task's retry resumes the run, which then completes), 'fails-data-test' "
            "(fails on a data test: see the story in the task log), 'fails' (SERVING_ERROR), 'stopped' "
            "(STOPPED_SERVING) and 'slow' (about a minute).",
        ),
        "overrides": Param(
            {},
            type="object",
            title="Variable overrides",
            description="JSON object of recipe variable overrides sent with the order, "
            'e.g. {"run_date": "2025-01-31", "batch_size": 500}. Values keep their JSON types.',
        ),
        "ezcater_order_ids": Param(
            DEMO_EZCATER_ORDER_IDS,
            type="array",
            items={"type": "string", "minLength": 1},
            title="ezCater order ids",
            description="Catering orders (ezCater order uuids, one per line) to wait for and accept "
            "once the recipe has run. Empty: nothing to accept.",
        ),
    },
) as dag:
    submit = SubmitRecipeOrderOperator(
        task_id="submit_recipe_order",
        kitchen="{{ params.kitchen }}",
        recipe="{{ params.recipe }}",
        variation="{{ params.variation }}",
        # tojson renders the whole object as JSON text, which the operator parses back into a dict;
        # values keep their types, and kitchen/recipe/variation stay strings even when numeric.
        parameters="{{ params.overrides | tojson }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5.0,
        timeout=2 * 60 * 60,  # seconds; on timeout the remote run is stopped and the task fails
        # A failed run fails the try retryably; the retry resumes it (DataKitchen re-runs the failed
        # nodes in a new run of the same order) instead of ordering again.
        retry_from_failure=True,
        retries=1,
        retry_delay=timedelta(seconds=5),
    )

    @task
    def ezcater_order_ids(params: dict[str, Any] | None = None) -> list[str]:
        """The catering order ids from the trigger form (mapping needs a list from an upstream task)."""
        return [str(order_id).strip() for order_id in (params or {}).get("ezcater_order_ids") or []]

    # One wait → accept pair per catering order: a mapped task group, expanded over the order ids. Two
    # separately mapped tasks chained with >> would make every accept wait for every sensor (and one
    # cancelled order would leave all accepts upstream_failed); inside the group, catering_order.accept[i]
    # depends on catering_order.wait_until_submitted[i] only.
    @task_group
    def catering_order(order_id: str) -> None:
        wait_until_submitted = OrderLifecycleSensor(
            task_id="wait_until_submitted",
            order_id=order_id,
            # "accepted" ends the wait too: an order accepted elsewhere will never be "submitted" again,
            # and the accept task then says so at once instead of this sensor waiting for its timeout.
            target_states=("submitted", "accepted"),
            failure_states=("rejected", "cancelled"),
            deferrable=True,
            poke_interval=5.0,
            timeout=60 * 60,
        )
        accept = AcceptOrderOperator(task_id="accept", order_id=order_id)
        wait_until_submitted >> accept

    submit >> catering_order.expand(order_id=ezcater_order_ids())


if __name__ == "__main__":
    dag.test()
