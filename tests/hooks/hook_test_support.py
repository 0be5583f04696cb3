"""Plain helpers of the hook tests (imported by module name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_orders.hooks._http import aclose_shared_async_clients

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")


def run_async(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run a coroutine, closing the loop's shared httpx clients before the loop ends."""

    async def main() -> T:
        try:
            return await coro_factory()
        finally:
            await aclose_shared_async_clients()

    return asyncio.run(main())


def wait_for(predicate: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy (a state wait, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
