"""Table 5: ezCater notifications: orders accepted as their deliveries arrive, against a polling sensor;
and the receiver's answer time, against Airflow's own health endpoint.

One real Airflow serves every figure: ``tests/notifications/notif_harness.py::notification_stack`` (the
ezCater sandboxes, a throw-away PostgreSQL, api-server with 2 workers, scheduler, dag-processor and
triggerer; LocalExecutor, parallelism 16). Two bench-only DAG files from ``benchmarks/dags/`` are deployed
into its dags folder once it is up. Three phases run one after the other (never overlapping: each would
load the two cores the others are timed on):

1. **Notification path.** Orders are placed in the ezCater sandbox one every 1-2 s (after one warm-up
   order); the sandbox delivers a signed ``submitted`` notification to the receiver plugin, whose asset
   event starts ``example_accept_notified_orders``, which reviews and accepts the order.
2. **Polling baseline.** ``bench_poll_then_accept`` is triggered once with the ids of orders seeded as
   drafts for another caterer (nobody is subscribed to it, so no notification is sent for them): per
   order a deferrable ``OrderLifecycleSensor`` (``poke_interval`` 60 s) then ``AcceptOrderOperator``.
   Once every sensor has deferred, the orders are made ``submitted`` one every 1-2 s.
3. **Receiver answer time.** Signed POSTs of distinct deliveries to ``/ezcater/webhooks/ezcater_burst``
   for a key only the paused ``bench_webhook_listener`` listens to (recorded in full, no run starts),
   alternating with ``GET /api/v2/monitor/health`` on the same server, timed by this process.

Latency of phases 1 and 2 is read from the sandbox's own clock at both ends: the time its order entered
``submitted`` (placed, or updated) and the time of its ``acceptOrder`` mutation.

Needs the test extras (pytest, psycopg2: the harness and Airflow on PostgreSQL) and the package's entry
points (the receiver plugin, ``orders-ezcater``) in the interpreter; when this one lacks them and the
checkout's ``.venv`` has them, the benchmark runs itself with ``.venv``'s interpreter (and says so).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import sysconfig
import time
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_common import Row, Table, main_for, median, percentile, quartiles

if TYPE_CHECKING:
    from notif_harness import NotificationStack

    from airflow_provider_orders.sandbox import EzCaterSandbox

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ARTIFACTS = REPO / ".artifacts" / "bench-notifications"
ACCEPT_DAG = "example_accept_notified_orders"
POLL_DAG = "bench_poll_then_accept"
POLL_SENSOR = "order.wait_submitted"
LISTENER_DAG = "bench_webhook_listener"
LISTENER_CONN, LISTENER_KEY = "ezcater_burst", "uncancelled"
BENCH_DAG_FILES = ("bench_poll_then_accept.py", "bench_webhook_listener.py")
#: Seconds between two reads of one order in the polling DAG (``benchmarks/dags/bench_poll_then_accept.py``).
POKE_INTERVAL = 60
#: Seconds between two orders placed (or made submitted): uniform in this range.
SPACING = (1.0, 2.0)
WAIT_ACCEPTED = 600.0
#: Set when this script re-ran itself with the checkout's .venv interpreter.
REEXEC_ENV = "ORDERS_BENCH_NOTIFICATIONS_REEXEC"


# --------------------------------------------------------------------------------------------------
# An interpreter that can run the stack


def _missing() -> list[str]:
    """What this interpreter lacks to run ``notification_stack``."""
    missing = [f"the {m} package" for m in ("pytest", "psycopg2") if importlib.util.find_spec(m) is None]
    plugins = {ep.name for ep in metadata.entry_points(group="airflow.plugins")}
    if "ezcater_webhooks" not in plugins:
        missing.append("the airflow.plugins entry point ezcater_webhooks (the receiver)")
    if not (Path(sysconfig.get_path("scripts")) / "orders-ezcater").exists():
        missing.append("the orders-ezcater command")
    return missing


def _ensure_interpreter() -> None:
    missing = _missing()
    if not missing:
        return
    dev = REPO / ".venv" / "bin" / "python"
    if dev.exists() and not os.environ.get(REEXEC_ENV) and Path(sys.prefix).resolve() != dev.parents[1]:
        print(
            f"{sys.executable} lacks {', '.join(missing)}; running this benchmark with {dev}",
            flush=True,
        )
        os.environ[REEXEC_ENV] = sys.executable
        os.execv(str(dev), [str(dev), str(Path(__file__).resolve()), *sys.argv[1:]])
    raise SystemExit(
        f"bench_notifications needs {', '.join(missing)} in {sys.executable}: run "
        f"`{sys.executable} -m pip install pytest psycopg2-binary && "
        f"{sys.executable} -m pip install -e . --no-deps` in the checkout."
    )


def _shown(path: str) -> str:
    """``path`` relative to the checkout when it is inside it."""
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return path


def _import_harness() -> None:
    """Put the notification harness on sys.path the way ``tests/notifications/conftest.py`` does."""
    tests = REPO / "tests"
    for folder in (tests / "lifecycle", tests / "e2e", tests / "notifications"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


# --------------------------------------------------------------------------------------------------
# Reading the sandbox


def _entered(ez: EzCaterSandbox, order_id: str, state: str) -> float:
    """When the order entered ``state`` (sandbox clock, epoch seconds)."""
    return next(t for t, s in ez.model.orders[order_id].history if s == state)


def _mutations(ez: EzCaterSandbox, order_id: str) -> list[dict[str, Any]]:
    return list(ez.model.orders[order_id].to_admin()["mutations"])


def _accepted_at(ez: EzCaterSandbox, order_id: str) -> float:
    return float(next(m["time"] for m in _mutations(ez, order_id) if m["mutation"] == "acceptOrder"))


def _wait_accepted(ez: EzCaterSandbox, orders: list[str], timeout: float) -> None:
    from e2e_harness import wait_until

    wait_until(
        f"{len(orders)} order(s) to be accepted",
        lambda: all(ez.order_state(o) == "accepted" for o in orders),
        timeout,
        interval=0.5,
        describe=lambda: f"states: {sorted(ez.order_state(o) for o in orders)}",
    )


def _place_spaced(action: Any, items: list[Any], rng: random.Random) -> list[Any]:
    """``action(item)`` for each item, one every 1-2 s; the answers."""
    answers = []
    for i, item in enumerate(items):
        answers.append(action(item))
        if i < len(items) - 1:
            time.sleep(rng.uniform(*SPACING))
    return answers


def _latencies(ez: EzCaterSandbox, orders: list[str]) -> list[float]:
    return [_accepted_at(ez, o) - _entered(ez, o, "submitted") for o in orders]


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": median(values), "p95": percentile(values, 95), "max": max(values), "min": min(values)}


# --------------------------------------------------------------------------------------------------
# The phases


def _deploy_bench_dags(stack: NotificationStack) -> None:
    from e2e_harness import DAG_PARSED_TIMEOUT, wait_until

    for name in BENCH_DAG_FILES:
        stack.deploy_dag(HERE / "dags" / name, name)
    wait_until(
        "the dag-processor to parse the bench DAGs",
        lambda: all(stack.cluster.dag(d) for d in (POLL_DAG, LISTENER_DAG)),
        DAG_PARSED_TIMEOUT,
        describe=lambda: f"Import errors: {stack.cluster.import_errors()}",
    )
    # Paused upon creation already; made sure of, so that no run competes with the timed requests.
    stack.cluster.api_call("PATCH", f"dags/{LISTENER_DAG}", {"is_paused": True})


def _runs_settled(stack: NotificationStack, dag_id: str) -> bool:
    return all(r["state"] in ("success", "failed") for r in stack.dag_runs(dag_id))


def notification_phase(stack: NotificationStack, n: int, rng: random.Random) -> dict[str, Any]:
    from e2e_harness import wait_until

    ez = stack.ez
    warm_up = ez.place_order(headcount=25)  # the first run of a DAG pays for caches the next ones reuse
    _wait_accepted(ez, [warm_up], WAIT_ACCEPTED)
    wait_until(f"the warm-up run of {ACCEPT_DAG} to end", lambda: _runs_settled(stack, ACCEPT_DAG), 120)
    runs_before = {r["dag_run_id"] for r in stack.dag_runs(ACCEPT_DAG)}
    reads_before = ez.count(route="order")
    orders: list[str] = _place_spaced(lambda _: ez.place_order(headcount=25), list(range(n)), rng)
    _wait_accepted(ez, orders, WAIT_ACCEPTED)
    wait_until(f"the runs of {ACCEPT_DAG} to end", lambda: _runs_settled(stack, ACCEPT_DAG), 180)
    reads = ez.count(route="order") - reads_before
    runs = [r for r in stack.dag_runs(ACCEPT_DAG) if r["dag_run_id"] not in runs_before]

    answered: list[float] = []
    first_attempts: list[Any] = []
    for order_id in orders:
        deliveries = ez.deliveries(order_id=order_id, key="submitted")
        attempts = [a for d in deliveries for a in d["attempts"]]
        first_attempts.append(attempts[0]["status"] if attempts else None)
        landed = [a for a in attempts if a["status"] == 202]
        if landed:
            answered.append(
                landed[0]["at"] + landed[0]["elapsed_ms"] / 1000 - _entered(ez, order_id, "submitted")
            )
    return {
        "orders": orders,
        "latencies": _latencies(ez, orders),
        "answered": answered,
        "first_attempt_statuses": first_attempts,
        "accepted_once": sum([m["mutation"] for m in _mutations(ez, o)] == ["acceptOrder"] for o in orders),
        "runs": len(runs),
        "run_states": sorted(r["state"] for r in runs),
        "order_reads": reads,
    }


def _sensors_deferred(stack: NotificationStack, run_id: str, n: int) -> bool:
    states = [
        ti["state"] for ti in stack.cluster.task_instances(POLL_DAG, run_id) if ti["task_id"] == POLL_SENSOR
    ]
    bad = [s for s in states if s in ("failed", "upstream_failed", "success", "skipped")]
    if bad:
        raise RuntimeError(f"a polling sensor ended before its order was submitted: {states}")
    return len(states) == n and all(s == "deferred" for s in states)


def polling_phase(stack: NotificationStack, n: int, rng: random.Random) -> dict[str, Any]:
    from e2e_harness import wait_until

    from airflow_provider_orders.sandbox.ezcater.models import SECOND_CATERER_UUID

    ez = stack.ez
    # Drafts of a caterer nobody subscribed to: making them submitted sends no notification.
    orders = [ez.add_order(state="draft", caterer_uuid=SECOND_CATERER_UUID, headcount=25) for _ in range(n)]
    reads_before = ez.count(route="order")
    triggered = time.monotonic()
    run_id = stack.cluster.trigger_dag(POLL_DAG, conf={"order_ids": orders})
    # The trigger's first read comes a full poke_interval after the deferral, so the scheduler has seen
    # every deferral long before a trigger can fire (apache/airflow#72716 needs no extra wait here).
    wait_until(
        f"all {n} sensors of {POLL_DAG} to defer",
        lambda: _sensors_deferred(stack, run_id, n),
        600,
        interval=2,
    )
    to_deferred = time.monotonic() - triggered
    flips_started = time.time()
    _place_spaced(lambda o: ez.update_order(o, state="submitted"), orders, rng)
    _wait_accepted(ez, orders, WAIT_ACCEPTED + POKE_INTERVAL)
    wait_until(
        f"the {POLL_DAG} run to succeed",
        lambda: stack.cluster.dag_run(POLL_DAG, run_id)["state"] == "success",
        180,
        describe=lambda: f"run state {stack.cluster.dag_run(POLL_DAG, run_id)['state']}",
    )
    # The read that saw each order submitted: the first `order` query naming it once it was submitted
    # (its trigger's poll; the accept comes after it). Splits the latency into the wait for the next
    # poll, which depends on where in the poll cycle the order arrived, and what follows the poll.
    reads = [r for r in ez.requests if r.route == "order" and r.time >= flips_started]
    seen = [
        min(r.time for r in reads if o in r.body and r.time >= _entered(ez, o, "submitted")) for o in orders
    ]
    submitted = [_entered(ez, o, "submitted") for o in orders]
    accepted = [_accepted_at(ez, o) for o in orders]
    return {
        "orders": orders,
        "latencies": _latencies(ez, orders),
        "wait_for_poll": [r - s for r, s in zip(seen, submitted, strict=True)],
        "poll_to_accepted": [a - r for a, r in zip(accepted, seen, strict=True)],
        "accepted_once": sum([m["mutation"] for m in _mutations(ez, o)] == ["acceptOrder"] for o in orders),
        "deliveries": sum(len(ez.deliveries(order_id=o)) for o in orders),
        "order_reads": ez.count(route="order") - reads_before,
        "seconds_to_all_deferred": to_deferred,
    }


def _asset_event_count(stack: NotificationStack, conn_id: str, key: str) -> int:
    """Every event of the asset (all pages of the REST API's list)."""
    return len(stack.cluster.asset_events(f"ezcater://{conn_id}/orders/{key}"))


def receiver_phase(stack: NotificationStack, n: int) -> dict[str, Any]:
    import requests
    from e2e_harness import wait_until

    from airflow_provider_orders.sandbox.ezcater.models import DEMO_CATERER_UUID
    from airflow_provider_orders.webhooks import signature

    url = stack.webhook_url(LISTENER_CONN)
    health_url = f"{stack.cluster.base_url}/api/v2/monitor/health"
    secret = stack.secrets[LISTENER_CONN]

    def delivery() -> tuple[bytes, str]:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "parent_type": "Caterer",
                "parent_id": DEMO_CATERER_UUID,
                "entity_type": "Order",
                "entity_id": str(uuid.uuid4()),
                "key": LISTENER_KEY,
                "created_at": now,
                "occurred_at": now,
                "updated_at": now,
                "payload": None,
            },
            separators=(",", ":"),
        ).encode()
        return body, signature.sign(secret, body, int(time.time()))

    def post() -> tuple[float, int]:
        body, header = delivery()  # signed before the clock starts: the sender's work, not the answer's
        headers = {"Content-Type": "application/json", signature.HEADER: header}
        start = time.perf_counter()
        answer = requests.post(url, data=body, headers=headers, timeout=30)
        answer.json()
        return time.perf_counter() - start, answer.status_code

    def health() -> tuple[float, int]:
        start = time.perf_counter()
        answer = requests.get(health_url, headers={"Accept": "application/json"}, timeout=30)
        answer.json()
        return time.perf_counter() - start, answer.status_code

    # A 202 once the listener's asset is active (503 until then); then a warm-up of both routes on both
    # API-server workers (secret cache, guard table, DB connections).
    sent = 0

    def lands() -> bool:
        nonlocal sent
        sent += 1
        return post()[1] == 202

    wait_until("the receiver to record deliveries for the bench listener", lands, 120, interval=2)
    for _ in range(20):
        post()
        health()
    sent += 20
    posts: list[float] = []
    gets: list[float] = []
    statuses: dict[str, int] = {}
    health_statuses: dict[str, int] = {}
    for i in range(n):
        pair = [(posts, statuses, post), (gets, health_statuses, health)]
        if i % 2:
            pair.reverse()
        for sink, counts, fn in pair:
            seconds, status = fn()
            sink.append(seconds)
            counts[str(status)] = counts.get(str(status), 0) + 1
    events = _asset_event_count(stack, LISTENER_CONN, LISTENER_KEY)
    paused = bool((stack.cluster.dag(LISTENER_DAG) or {}).get("is_paused"))
    return {
        "posts": posts,
        "gets": gets,
        "statuses": statuses,
        "health_statuses": health_statuses,
        "events": events,
        "sent": sent + n,
        "listener_paused": paused,
        "listener_runs": len(stack.dag_runs(LISTENER_DAG)),
    }


# --------------------------------------------------------------------------------------------------
# The table


def _seconds(stats: dict[str, float]) -> str:
    return f"{stats['p50']:.1f} s / {stats['p95']:.1f} s / {stats['max']:.1f} s"


def measure(quick: bool) -> Table:
    _import_harness()
    from notif_harness import notification_stack

    n_notified = 6 if quick else 24
    n_polled = 5 if quick else 20
    n_posts = 40 if quick else 240
    rng = random.Random(5)
    started = time.monotonic()
    with notification_stack(ARTIFACTS) as stack:
        up = time.monotonic() - started
        _deploy_bench_dags(stack)
        notified = notification_phase(stack, n_notified, rng)
        polled = polling_phase(stack, n_polled, rng)
        receiver = receiver_phase(stack, n_posts)
    wall = time.monotonic() - started

    note = ""
    if os.environ.get(REEXEC_ENV):
        note = (
            f" (Run with the checkout's `.venv` interpreter: `{_shown(os.environ[REEXEC_ENV])}` lacks the "
            "test extras the harness needs.)"
        )
    stack_note = f"stack up in {up:.0f} s, whole benchmark {wall / 60:.1f} min"
    notif = _stats(notified["latencies"])
    poll = _stats(polled["latencies"])
    answered = _stats(notified["answered"]) if notified["answered"] else None
    post_p50, get_p50 = median(receiver["posts"]), median(receiver["gets"])
    q1, q3 = quartiles([p / g for p, g in zip(receiver["posts"], receiver["gets"], strict=True)])
    recorded = receiver["statuses"].get("202", 0)
    first_202 = sum(s == 202 for s in notified["first_attempt_statuses"])

    table = Table(
        key="notifications",
        title="5. ezCater notifications: accepted on delivery vs. polling",
        method=(
            "One real Airflow (`tests/notifications/notif_harness.py`: ezCater sandboxes, PostgreSQL, "
            "api-server with 2 workers, scheduler, dag-processor, triggerer; LocalExecutor, parallelism "
            "16), three phases one after the other. **Notification path**: after one warm-up order, "
            f"{n_notified} orders placed in the sandbox one every {SPACING[0]:g}-{SPACING[1]:g} s; each "
            "signed `submitted` delivery → receiver plugin → asset event → `example_accept_notified_orders` "
            "(review, then accept). **Polling baseline**, same Airflow: `benchmarks/dags/"
            f"bench_poll_then_accept.py` triggered once with {n_polled} order ids (drafts of a caterer "
            "nobody subscribed to, so no delivery is sent for them); per order a **deferrable** "
            f"`OrderLifecycleSensor` (`poke_interval` {POKE_INTERVAL} s: one poke on a worker, then the "
            f"trigger reads the order every {POKE_INTERVAL} s in the triggerer) then `AcceptOrderOperator`; once every "
            f"sensor had deferred, the orders were made `submitted` one every {SPACING[0]:g}-{SPACING[1]:g} "
            "s. Latency = the sandbox's `acceptOrder` time - the time the order entered `submitted` (both "
            "on the sandbox's clock); the polling wait is split at the trigger's read that saw the order "
            "`submitted` (the sandbox's request log): the part before it depends on where in the poll cycle "
            "the order arrived (an order arriving at a random moment waits half the interval on average); the "
            "sensors of the one mapped run deferred together, so their triggers read together and every "
            "resume and accept after the read ran at once. **Receiver answer time**: "
            f"{n_posts} signed POSTs of distinct deliveries to `/ezcater/webhooks/ezcater_burst` for a key "
            "only a paused bench DAG listens to (each recorded in full: guard row, asset event, queue row; "
            "no run starts), alternating with `GET /api/v2/monitor/health` on the same server, timed "
            f"client-side after a warm-up; new TCP connection per request. {stack_note}.{note}"
        ),
    )
    rows = table.rows
    rows.append(
        Row(
            "notification: placed → accepted, p50 / p95 / max",
            f"{_seconds(notif)} ({n_notified} orders)",
        )
    )
    if answered is not None:
        rows.append(
            Row(
                "notification: of which placed → receiver answered 202, p50 / p95 / max",
                _seconds(answered),
            )
        )
    rows.append(
        Row(
            f"polling (deferrable sensor, poke_interval {POKE_INTERVAL} s): submitted → accepted, "
            "p50 / p95 / max",
            f"{_seconds(poll)} ({n_polled} orders)",
        )
    )
    waited, after_poll = _stats(polled["wait_for_poll"]), _stats(polled["poll_to_accepted"])
    rows.append(
        Row(
            "polling: of which submitted → the trigger's read that saw it, p50 / p95 / max",
            _seconds(waited),
            note="the wait for the next poll",
        )
    )
    rows.append(
        Row(
            "polling: of which that read → accepted, p50 / p95 / max",
            _seconds(after_poll),
            note=f"all {n_polled} sensors resumed, then accepted, at once",
        )
    )
    rows.append(
        Row(
            "latency, polling ÷ notification, p50 / p95",
            f"{poll['p50'] / notif['p50']:.1f}x / {poll['p95'] / notif['p95']:.1f}x",
        )
    )
    rows.append(
        Row(
            "ezCater order reads per accepted order, notification / polling",
            f"{notified['order_reads'] / n_notified:.1f} / {polled['order_reads'] / n_polled:.1f}",
            note="reads grow with the wait when polling",
        )
    )
    rows.append(
        Row(
            "runs of example_accept_notified_orders for the notified orders",
            f"{notified['runs']} for {n_notified} orders ({', '.join(sorted(set(notified['run_states'])))})",
            note="the scheduler folds events that arrive together into one run",
        )
    )
    rows.append(
        Row(
            "orders accepted exactly once, notification / polling",
            f"{notified['accepted_once']} of {n_notified} / {polled['accepted_once']} of {n_polled}",
            f"{n_notified} / {n_polled}",
            notified["accepted_once"] == n_notified and polled["accepted_once"] == n_polled,
        )
    )
    rows.append(
        Row(
            "notified orders whose first delivery attempt was answered 202",
            f"{first_202} of {n_notified}",
            f"{n_notified} of {n_notified}",
            first_202 == n_notified,
        )
    )
    rows.append(
        Row(
            "deliveries sent for the polled orders (their caterer has no subscription)",
            str(polled["deliveries"]),
            "0",
            polled["deliveries"] == 0,
        )
    )
    rows.append(
        Row(
            "receiver answer time ÷ `GET /api/v2/monitor/health`, p50",
            f"{post_p50 / get_p50:.2f}x ({post_p50 * 1000:.1f} ms vs {get_p50 * 1000:.1f} ms; "
            f"per-pair IQR {q1:.2f}-{q3:.2f}x)",
        )
    )
    rows.append(
        Row(
            "receiver answer time p50 / p95 (health p50 / p95)",
            f"{post_p50 * 1000:.1f} ms / {percentile(receiver['posts'], 95) * 1000:.1f} ms "
            f"({get_p50 * 1000:.1f} ms / {percentile(receiver['gets'], 95) * 1000:.1f} ms)",
        )
    )
    rows.append(
        Row(
            "timed deliveries answered 202 recorded",
            f"{recorded} of {n_posts}",
            f"{n_posts} of {n_posts}",
            recorded == n_posts,
        )
    )
    rows.append(
        Row(
            "asset events on the listener's asset, one per delivery sent (warm-up included)",
            f"{receiver['events']} for {receiver['sent']} deliveries",
            "equal",
            receiver["events"] == receiver["sent"],
        )
    )
    table.raw = {
        "interpreter": sys.executable,
        "apache-airflow": metadata.version("apache-airflow"),
        "seconds_stack_up": up,
        "seconds_wall": wall,
        "notification": {**notified, "stats": notif, "answered_stats": answered},
        "polling": {**polled, "stats": poll, "wait_for_poll_stats": waited, "after_poll_stats": after_poll},
        "receiver": {
            **{k: v for k, v in receiver.items() if k not in ("posts", "gets")},
            "post_ms": [round(s * 1000, 2) for s in receiver["posts"]],
            "health_ms": [round(s * 1000, 2) for s in receiver["gets"]],
        },
    }
    return table


if __name__ == "__main__":
    _ensure_interpreter()
    main_for(measure)
