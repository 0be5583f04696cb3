"""Table 4: hook overhead: ``create_order`` / ``accept_order`` against the same HTTP call on a bare
``requests.Session``, and the triggers' ``aget_order`` against the same POST on a bare
``httpx.AsyncClient``, all against the loopback sandbox (running in a child process).

The bare call sends the same method, URL, JSON body (the hook's own GraphQL document for ezCater) and
auth header, and parses the JSON answer. Calls alternate hook / bare, one pair at a time, after a warm-up
(the hook has logged in and built its client; the bare session holds a JWT). Figure: ratio of the
median call times.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from bench_common import Row, SandboxProcess, Table, main_for, median, quartiles

TARGET = 1.15
KITCHEN, RECIPE, VARIATION = "demo-kitchen", "demo-recipe", "success"


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _log_line_cost(hook: Any, n: int = 300) -> float:
    """Median cost of one info line through the hook's logger (each hook call writes one)."""
    return median([_timed(lambda i=i: hook.log.info("benchmark: log line %d", i)) for i in range(n)])


def _datakitchen(n: int) -> tuple[list[float], list[float], float]:
    import requests

    from airflow_provider_orders.hooks.datakitchen import DataKitchenHook

    with SandboxProcess("datakitchen") as sb:
        conn = json.loads(sb.call("connection_json"))
        os.environ["AIRFLOW_CONN_DATAKITCHEN_DEFAULT"] = json.dumps(conn)
        hook = DataKitchenHook()
        hook.get_user_info()  # warm-up: connection read, session built, logged in
        session = requests.Session()
        jwt = (
            session.post(
                f"{sb.url}/v2/login",
                data={"username": conn["login"], "password": conn["password"]},
                timeout=60,
            )
            .text.strip()
            .strip('"')
        )
        headers = {"Authorization": f"Bearer {jwt}", "Accept": "application/json"}
        url = f"{sb.url}/v2/order/create/{KITCHEN}/{RECIPE}/{VARIATION}"

        def bare(i: int) -> None:
            r = session.put(
                url, json={"parameters": {"i": i}, "schedule": "now"}, headers=headers, timeout=60
            )
            body = r.json()
            assert r.status_code == 200, body
            assert body.get("order_id"), body

        def ours(i: int) -> None:
            assert hook.create_order(KITCHEN, RECIPE, VARIATION, parameters={"i": i})["order_id"]

        for i in range(5):
            ours(i)
            bare(i)
        hook_t: list[float] = []
        bare_t: list[float] = []
        for i in range(n):
            pair = [(hook_t, ours), (bare_t, bare)]
            if i % 2:
                pair.reverse()
            for sink, fn in pair:
                sink.append(_timed(lambda fn=fn, i=i: fn(i)))
        return hook_t, bare_t, _log_line_cost(hook)


def _ezcater(n: int) -> tuple[list[float], list[float], float]:
    import requests

    from airflow_provider_orders.hooks.ezcater import ACCEPT_ORDER_MUTATION, EzCaterHook

    with SandboxProcess("ezcater") as sb:
        conn = json.loads(sb.call("connection_json"))
        os.environ["AIRFLOW_CONN_EZCATER_DEFAULT"] = json.dumps(conn)
        ids = [sb.call("add_order", state="submitted", transitions=[]) for _ in range(2 * n + 10)]
        hook = EzCaterHook()
        session = requests.Session()
        endpoint = conn["host"]
        headers = {
            "Authorization": conn["password"],
            "apollographql-client-name": "airflow-provider-orders",
            "apollographql-client-version": "bench",
        }

        def bare(order_id: str) -> None:
            r = session.post(
                endpoint,
                json={
                    "query": ACCEPT_ORDER_MUTATION.text,
                    "variables": {"orderId": order_id, "acceptModification": False},
                    "operationName": ACCEPT_ORDER_MUTATION.name,
                },
                headers=headers,
                timeout=60,
            )
            body = r.json()
            state = body["data"]["acceptOrder"]["order"]["lifecycle"]["orderIsCurrently"]
            assert state == "accepted", body

        def ours(order_id: str) -> None:
            assert hook.accept_order(order_id)["lifecycle"]["orderIsCurrently"] == "accepted"

        it = iter(ids)
        for _ in range(5):
            ours(next(it))
            bare(next(it))
        hook_t: list[float] = []
        bare_t: list[float] = []
        for i in range(n):
            pair = [(hook_t, ours), (bare_t, bare)]
            if i % 2:
                pair.reverse()
            for sink, fn in pair:
                order_id = next(it)
                sink.append(_timed(lambda fn=fn, o=order_id: fn(o)))
        return hook_t, bare_t, _log_line_cost(hook)


def _ezcater_async(n: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """``aget_order`` (one hook, as one trigger holds) vs the same POST on one bare ``httpx.AsyncClient``
    (a client shared by the loop, as the hook's is), alternating in one event loop.

    Returns wall times and this process's CPU times (the sandbox is another process: client work only),
    hook then bare.
    """
    import asyncio

    import httpx

    from airflow_provider_orders.hooks.ezcater import ORDER_QUERY, EzCaterHook

    try:
        from airflow_provider_orders.hooks._http import aclose_shared_async_clients
    except ImportError:  # the layout before the hooks' shared code was split
        from airflow_provider_orders.hooks._common import aclose_shared_async_clients  # type: ignore

    with SandboxProcess("ezcater") as sb:
        conn = json.loads(sb.call("connection_json"))
        os.environ["AIRFLOW_CONN_EZCATER_DEFAULT"] = json.dumps(conn)
        order_id = sb.call("add_order", state="submitted", transitions=[])
        endpoint = conn["host"]
        headers = {
            "Authorization": conn["password"],
            "apollographql-client-name": "airflow-provider-orders",
            "apollographql-client-version": "bench",
            "Accept": "application/json",
        }
        payload = {
            "query": ORDER_QUERY.text,
            "variables": {"orderId": order_id},
            "operationName": ORDER_QUERY.name,
        }

        async def main() -> tuple[list[float], list[float], list[float], list[float]]:
            hook = EzCaterHook()
            client = httpx.AsyncClient(follow_redirects=False)
            timeout = httpx.Timeout(60.0, pool=None)

            async def bare() -> None:
                r = await client.post(endpoint, json=payload, headers=headers, timeout=timeout)
                body = r.json()
                assert body["data"]["order"]["uuid"] == order_id, body

            async def ours() -> None:
                assert (await hook.aget_order(order_id))["uuid"] == order_id

            async def timed(fn: Any, wall: list[float], cpu: list[float]) -> None:
                start, start_cpu = time.perf_counter(), time.process_time()
                await fn()
                cpu.append(time.process_time() - start_cpu)
                wall.append(time.perf_counter() - start)

            try:
                for _ in range(5):
                    await ours()
                    await bare()
                hook_t: list[float] = []
                bare_t: list[float] = []
                hook_cpu: list[float] = []
                bare_cpu: list[float] = []
                for i in range(n):
                    pair = [(ours, hook_t, hook_cpu), (bare, bare_t, bare_cpu)]
                    if i % 2:
                        pair.reverse()
                    for fn, wall, cpu in pair:
                        await timed(fn, wall, cpu)
                return hook_t, bare_t, hook_cpu, bare_cpu
            finally:
                await client.aclose()
                await aclose_shared_async_clients()

        return asyncio.run(main())


def measure(quick: bool) -> Table:
    n = 30 if quick else 600
    table = Table(
        key="hook_overhead",
        title="4. Hook overhead",
        method=(
            f"{n} calls each, hook and bare `requests.Session` (async: bare `httpx.AsyncClient`, one "
            "event loop) alternating pair by pair, against the loopback sandbox in a child process "
            "(HTTP/1.0: a new TCP connection per request, for both). "
            "Figure: median hook call ÷ median bare call."
        ),
    )
    for label, fn in (("DataKitchen `create_order`", _datakitchen), ("ezCater `accept_order`", _ezcater)):
        hook_t, bare_t, log_line = fn(n)
        ratio = median(hook_t) / median(bare_t)
        per_pair = [h / b for h, b in zip(hook_t, bare_t, strict=False)]
        q1, q3 = quartiles(per_pair)
        table.rows.append(
            Row(
                f"{label} ÷ bare requests",
                f"{ratio:.3f}x ({median(hook_t) * 1000:.2f} ms vs {median(bare_t) * 1000:.2f} ms; "
                f"per-pair IQR {q1:.2f}-{q3:.2f}x)",
                f"≤ {TARGET:.2f}x",
                ratio <= TARGET,
            )
        )
        share = (
            log_line / (median(hook_t) - median(bare_t)) if median(hook_t) > median(bare_t) else float("nan")
        )
        table.rows.append(
            Row(
                f"{label}: one info log line through the hook's logger",
                f"{log_line * 1000:.2f} ms ({share:.0%} of the hook's extra time)",
                note="attribution: the hook logs one line per call",
            )
        )
        table.raw[label] = {"hook_s": hook_t, "bare_s": bare_t, "log_line_s": log_line}
    label = "ezCater `aget_order` (triggers' async path)"
    hook_t, bare_t, hook_cpu, bare_cpu = _ezcater_async(n)
    ratio = median(hook_t) / median(bare_t)
    q1, q3 = quartiles([h / b for h, b in zip(hook_t, bare_t, strict=False)])
    table.rows.append(
        Row(
            f"{label} ÷ bare httpx.AsyncClient",
            f"{ratio:.3f}x ({median(hook_t) * 1000:.2f} ms vs {median(bare_t) * 1000:.2f} ms; "
            f"per-pair IQR {q1:.2f}-{q3:.2f}x)",
            f"≤ {TARGET:.2f}x",
            ratio <= TARGET,
        )
    )
    table.rows.append(
        Row(
            f"{label}: client CPU per call, hook vs bare",
            f"{median(hook_cpu) * 1000:.2f} ms vs {median(bare_cpu) * 1000:.2f} ms "
            f"(+{(median(hook_cpu) - median(bare_cpu)) * 1000:.2f} ms)",
            note="this process's CPU time: the sandbox answers from another process",
        )
    )
    table.raw[label] = {"hook_s": hook_t, "bare_s": bare_t, "hook_cpu_s": hook_cpu, "bare_cpu_s": bare_cpu}
    return table


if __name__ == "__main__":
    main_for(measure)
