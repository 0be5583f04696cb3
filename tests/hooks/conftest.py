"""Hook tests: every test starts with an empty process-wide DataKitchen token cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_orders.hooks._datakitchen_session import TOKENS

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    TOKENS.clear()
    yield
    TOKENS.clear()
