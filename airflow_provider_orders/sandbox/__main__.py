"""``python -m airflow_provider_orders.sandbox`` / ``orders-sandbox``: run both sandboxes until stopped.

Prints both URLs, the demo ezCater orders it seeded, how to place an ezCater order (which notifies the
subscribers) and the exact ``export AIRFLOW_CONN_...='...'`` lines for a shell; stops cleanly (exit
code 0) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_orders.sandbox._server import ADMIN_PREFIX
from airflow_provider_orders.sandbox.datakitchen.http import DataKitchenSandbox
from airflow_provider_orders.sandbox.datakitchen.models import (
    DEFAULT_KITCHEN,
    DEFAULT_RECIPE,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

DATAKITCHEN_ENV = "AIRFLOW_CONN_DATAKITCHEN_DEFAULT"
EZCATER_ENV = "AIRFLOW_CONN_EZCATER_DEFAULT"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orders-sandbox",
        description="Run local DataKitchen and ezCater API sandboxes on 127.0.0.1 until Ctrl-C / SIGTERM.",
    )
    dk = parser.add_argument_group("DataKitchen")
    dk.add_argument("--dk-port", type=int, default=0, help="port (default: 0 = a free one)")
    dk.add_argument("--dk-username", default="demo@example.com", help="login username (%(default)s)")
    dk.add_argument("--dk-password", default="demo-password", help="login password (%(default)s)")
    dk.add_argument(
        "--token-ttl", type=float, default=4 * 3600, help="JWT lifetime in seconds (default: %(default)g)"
    )
    dk.add_argument(
        "--queue-seconds",
        type=float,
        default=0.0,
        help="demo variations success/fails/stopped: seconds before a run is listed (%(default)g)",
    )
    dk.add_argument(
        "--planned-seconds",
        type=float,
        default=0.2,
        help="demo variations: seconds in PLANNED_SERVING (%(default)g)",
    )
    dk.add_argument(
        "--active-seconds",
        type=float,
        default=0.5,
        help="demo variations: seconds in ACTIVE_SERVING (%(default)g)",
    )
    dk.add_argument(
        "--id-key",
        choices=("order_id", "serving_hid"),
        default="order_id",
        help="key of the order id in the create-order answer (%(default)s)",
    )
    ez = parser.add_argument_group("ezCater")
    ez.add_argument("--ez-port", type=int, default=0, help="port (default: 0 = a free one)")
    ez.add_argument("--ez-token", default="sandbox-token", help="API token (%(default)s)")
    ez.add_argument(
        "--error-code-style",
        choices=("upper", "seed"),
        default="upper",
        help="GraphQL error codes as FEATURE_NOT_ENABLED (upper) or 'feature not enabled' (seed)",
    )
    ez.add_argument("--no-demo-orders", action="store_true", help="do not seed the demo ezCater orders")
    ez.add_argument(
        "--delivery-retry-base",
        type=float,
        default=1.0,
        help="seconds before a failed notification delivery is retried, doubling each time (%(default)g)",
    )
    parser.add_argument("--env-file", type=Path, help="also write the export lines to this file")
    parser.add_argument("--verbose", action="store_true", help="print one access log line per request")
    return parser


def export_line(name: str, value: str) -> str:
    """``export NAME='value'`` quoted for a POSIX shell."""
    return f"export {name}={shlex.quote(value)}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from airflow_provider_orders.sandbox.ezcater.http import EzCaterSandbox

    dk = DataKitchenSandbox(
        args.dk_port,
        args.dk_username,
        args.dk_password,
        args.token_ttl,
        id_key=args.id_key,
        verbose=args.verbose,
    )
    durations: dict[str, Any] = {
        "queue_seconds": args.queue_seconds,
        "planned_seconds": args.planned_seconds,
        "active_seconds": args.active_seconds,
    }
    try:
        # Only the timings change: each demo variation keeps its nodes, tests and failure text.
        for variation in ("success", "fails", "stopped"):
            spec = dk.model.lookup(DEFAULT_KITCHEN, DEFAULT_RECIPE, variation)
            dk.add_variation(
                DEFAULT_KITCHEN,
                DEFAULT_RECIPE,
                variation,
                spec.outcome,
                nodes=spec.nodes,
                failing_node=spec.failing_node,
                tests=spec.tests,
                log_lines_per_node=spec.log_lines_per_node,
                orderrun_status=spec.orderrun_status,
                **durations,
            )
        ez = EzCaterSandbox(
            args.ez_port,
            args.ez_token,
            error_code_style=args.error_code_style,
            demo_orders=not args.no_demo_orders,
            verbose=args.verbose,
            delivery_retry_base=args.delivery_retry_base,
        )
    except ValueError as exc:
        print(f"orders-sandbox: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            dk.start()
            ez.start()
        except OSError as exc:
            print(f"orders-sandbox: cannot start the sandboxes: {exc}", file=sys.stderr)
            return 1
        exports = [
            export_line(DATAKITCHEN_ENV, dk.connection_json()),
            export_line(EZCATER_ENV, ez.connection_json()),
        ]
        lines = [
            f"DataKitchen sandbox: {dk.url}  (login {dk.username} / {dk.password}; "
            f"kitchen {DEFAULT_KITCHEN}, recipe {DEFAULT_RECIPE}, variations success, fails, stopped, slow, flaky, fails-data-test, noisy-failure)",
            f"ezCater sandbox:     {ez.graphql_url}  (token {ez.token})",
        ]
        if ez.demo_orders:
            lines.append("Demo ezCater orders:")
            for name, uuid in ez.seed_demo_orders().items():
                lines.append(f"  {uuid}  {name}")
        place = shlex.quote(json.dumps({"headcount": 25}))
        lines += [
            f"Place an ezCater order (subscribers get a notification): "
            f"curl -X POST {ez.url}{ADMIN_PREFIX}place-order -d {place}",
            f"Admin routes: {dk.url}/_sandbox/...  and  {ez.url}/_sandbox/...  (see docs/sandbox.md)",
            "",
            "Point Airflow at them with:",
            *exports,
            "",
            "Press Ctrl-C to stop.",
        ]
        if args.env_file is not None:
            args.env_file.write_text("\n".join(exports) + "\n", encoding="utf-8")
        print("\n".join(lines), flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        ez.stop()
        dk.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Sandboxes stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
