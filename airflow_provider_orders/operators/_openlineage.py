"""OpenLineage facets for ``SubmitRecipeOrderOperator``: the DataKitchen order run as the task's external run.

Optional: needs the ``openlineage`` extra (``apache-airflow-providers-openlineage``). This module imports
the OpenLineage client at module level, so only ``get_openlineage_facets_on_complete`` imports it, inside
the method: the OpenLineage provider calls that method (and only when it is installed and enabled), so
importing the operator never loads OpenLineage.

What the task's OpenLineage events get (run facets only; DataKitchen tells no input or output datasets):

- ``externalQuery`` (standard ``ExternalQueryRunFacet``): ``externalQueryId`` = the order run id,
  ``source`` = ``"datakitchen"``; only once a run is known.
- ``dataKitchen_orderRun`` (custom, :class:`DataKitchenOrderRunRunFacet`): kitchen, recipe, variation,
  order id, order run id, final status and the web-app URL of the run.

The provider's ``DefaultExtractor`` falls back to ``get_openlineage_facets_on_complete`` when a task fails
(there is no ``get_openlineage_facets_on_failure``), so FAIL events carry the same facets with the failed
run's status. The order's variable overrides never go into a facet: they may hold secrets.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.facet_v2 import RunFacet, external_query_run

#: ``ExternalQueryRunFacet.source`` of a DataKitchen order run.
SOURCE = "datakitchen"
#: Run-facet key of :class:`DataKitchenOrderRunRunFacet` (custom facets: ``{prefix}_{name}``, camelCase).
ORDER_RUN_FACET = "dataKitchen_orderRun"
#: Run-facet key of the standard ``ExternalQueryRunFacet``.
EXTERNAL_QUERY_FACET = "externalQuery"


@attrs.define
class DataKitchenOrderRunRunFacet(RunFacet):
    """The DataKitchen order run a task submitted (custom run facet ``dataKitchen_orderRun``).

    Named after the OpenLineage custom-facet pattern ``{prefix}{name}{entity}Facet``. Like the Airflow
    OpenLineage provider's own facets it keeps the base ``RunFacet`` schema URL: there is no published,
    versioned JSON schema for it.
    """

    kitchen: str
    recipe: str
    variation: str
    orderId: str  # OpenLineage facet fields are camelCase
    orderRunId: str | None = attrs.field(default=None)
    status: str | None = attrs.field(default=None)
    url: str | None = attrs.field(default=None)


def _without_userinfo(url: str | None) -> str | None:
    """The URL without a ``user:password@`` part (a web-app URL never needs one in a lineage event)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def order_run_lineage(
    *,
    kitchen: str,
    recipe: str,
    variation: str,
    order_id: str | None,
    order_run_id: str | None = None,
    order_run_url: str | None = None,
    status: str | None = None,
) -> OperatorLineage:
    """The OpenLineage run facets describing a DataKitchen order run as the task's external run.

    :param order_id: the order the task created (None: the task created none, e.g. it failed before:
        an empty ``OperatorLineage``).
    :param order_run_id: the order run the task watched (None: not known, e.g. ``wait_for_completion``
        off; no ``externalQuery`` facet then).
    :param order_run_url: the run's web-app URL (the extra link's target), if known.
    :param status: the run's final status text (e.g. ``COMPLETED_SERVING``), if known.
    """
    order = _text(order_id)
    if order is None:
        return OperatorLineage()
    run_id = _text(order_run_id)
    run_facets: dict[str, RunFacet] = {
        ORDER_RUN_FACET: DataKitchenOrderRunRunFacet(
            kitchen=str(kitchen),
            recipe=str(recipe),
            variation=str(variation),
            orderId=order,
            orderRunId=run_id,
            status=_text(status),
            url=_without_userinfo(_text(order_run_url)),
        )
    }
    if run_id is not None:
        run_facets[EXTERNAL_QUERY_FACET] = external_query_run.ExternalQueryRunFacet(
            externalQueryId=run_id, source=SOURCE
        )
    return OperatorLineage(run_facets=run_facets)


__all__ = [
    "EXTERNAL_QUERY_FACET",
    "ORDER_RUN_FACET",
    "SOURCE",
    "DataKitchenOrderRunRunFacet",
    "order_run_lineage",
]
