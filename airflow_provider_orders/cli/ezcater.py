"""``orders-ezcater``: set up and inspect ezCater order notifications of an Airflow connection.

ezCater has no query that lists orders: a caterer learns of orders only from signed webhook deliveries.
This tool makes the API user's subscriber (webhook URL + secret) and its subscriptions (caterer x event)::

    orders-ezcater caterers [--conn-id ezcater_default] [--json]
    orders-ezcater subscribe --webhook-url https://airflow.example.com/ezcater/webhooks/ezcater_default \\
        (--caterer <uuid> ... | --all-caterers) [--events submitted,cancelled] [--name NAME] \\
        [--secret-file PATH] [--conn-id ezcater_default]
    orders-ezcater status [--conn-id ezcater_default] [--json]

``subscribe`` is safe to run again: it creates the subscriber only when there is none (printing its
webhook secret once, or writing it to ``--secret-file`` with mode 0600), points an existing one at the
new URL (its secret stays valid), and creates only the subscriptions that are missing.

Exit codes: 0 done, 1 the API or the connection failed (one line on stderr says what), 2 usage.
The API token is never printed; the webhook secret only once, when ezCater creates it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

# stdlib only: ``--help`` and usage errors still import no Airflow
from airflow_provider_orders.models.ezcater import ORDER_EVENT_KEYS, WEBHOOK_SECRET_EXTRA

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_orders.hooks.ezcater import EzCaterHook
    from airflow_provider_orders.models.ezcater import Caterer, Subscriber

PROG = "orders-ezcater"
DEFAULT_CONN_ID = "ezcater_default"
DEFAULT_EVENTS = "submitted,cancelled"
DEFAULT_SUBSCRIBER_NAME = "airflow-provider-orders"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_EVENT_KEYS_HELP = ", ".join(ORDER_EVENT_KEYS)


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


@dataclass
class _Secrets:
    """Texts that must never reach an error line: a new webhook secret (the hook's errors never carry
    the API token)."""

    values: list[str] = field(default_factory=list)

    def add(self, value: str | None) -> None:
        if value:
            self.values.append(value)

    def scrub(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return text


# ------------------------------------------------------------------------------------------ parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Set up and inspect the ezCater order notifications (webhooks) of an Airflow connection.",
        epilog="Exit codes: 0 done, 1 the API or the connection failed, 2 usage.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def conn_id(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--conn-id",
            default=DEFAULT_CONN_ID,
            help="Airflow connection of type ezcater (default: %(default)s)",
        )

    caterers = commands.add_parser("caterers", help="list the caterers the API user may act for")
    conn_id(caterers)
    caterers.add_argument("--json", action="store_true", help="print JSON instead of a table")

    subscribe = commands.add_parser(
        "subscribe",
        help="create or update the subscriber and the missing subscriptions (safe to run again)",
        description="Create the API user's subscriber (or point it at --webhook-url) and subscribe it to "
        "the order events of the caterers. Only what is missing is created.",
    )
    conn_id(subscribe)
    subscribe.add_argument(
        "--webhook-url",
        required=True,
        help="https URL of this connection's receiver, e.g. "
        "https://airflow.example.com/ezcater/webhooks/ezcater_default",
    )
    which = subscribe.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--caterer",
        action="append",
        metavar="UUID",
        help="a caterer's uuid (repeat the option, or separate uuids by commas)",
    )
    which.add_argument("--all-caterers", action="store_true", help="every caterer the API user may act for")
    subscribe.add_argument(
        "--events",
        default=DEFAULT_EVENTS,
        help=f"comma-separated order event keys ({_EVENT_KEYS_HELP}; default: %(default)s)",
    )
    subscribe.add_argument(
        "--name",
        default=None,
        help=f"subscriber name (default for a new subscriber: {DEFAULT_SUBSCRIBER_NAME}; given for an "
        "existing one, it is renamed)",
    )
    subscribe.add_argument(
        "--secret-file",
        metavar="PATH",
        default=None,
        help="write a new subscriber's webhook secret to this new file (mode 0600) instead of printing it",
    )

    status = commands.add_parser("status", help="show the subscriber, its subscriptions and the connection")
    conn_id(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


# ------------------------------------------------------------------------------------------ output


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def _env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def _path_matches(url: str, expected_path: str) -> bool:
    try:
        return urlsplit(url).path.rstrip("/") == expected_path
    except ValueError:
        return False


def _store_instructions(hook: EzCaterHook, conn_id: str, where: str) -> list[str]:
    """How to store the secret as the connection's extra ``webhook_secret`` (placeholders only)."""
    conn_json = json.dumps(
        {
            "conn_type": "ezcater",
            "host": hook.url,
            "password": "<ezCater API token>",
            "extra": {WEBHOOK_SECRET_EXTRA: "<webhook secret>"},
        }
    )
    return [
        f"Store it as the extra 'webhook_secret' of connection '{conn_id}' ({where}); keep its other "
        "extras. For example:",
        f"  airflow connections add {conn_id} --conn-type ezcater --conn-host '{hook.url}' "
        "--conn-password '<ezCater API token>' --conn-extra '{\"webhook_secret\": \"<webhook secret>\"}'",
        f"  (a connection that exists already: edit its Extra in the UI, or run "
        f"`airflow connections delete {conn_id}` first)",
        "or, as an environment variable of every Airflow component:",
        f"  {_env_name(conn_id)}='{conn_json}'",
    ]


# ------------------------------------------------------------------------------------------ commands


class _StderrHandler(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (never stdout: stdout is the command's output)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"{PROG}: {record.levelname.lower()}: {self.format(record)}\n")
        except Exception:  # pragma: no cover - a closed stream
            self.handleError(record)


def _cli_logger() -> logging.Logger:
    """The hook's logger in this tool: warnings (retries) on stderr; Airflow's log setup writes to
    stdout, which is this tool's output."""
    logger = logging.getLogger("airflow_provider_orders.cli.ezcater")
    if not logger.handlers:
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


def _quiet_airflow_logs() -> None:
    """Keep Airflow's own log lines out of this tool's output. stdout is the command's result (its JSON
    must parse) and stderr its messages, while Airflow 3.0's log setup writes "Connection Retrieved ..."
    (INFO) and a missing Fernet key warning to stdout on every call. Airflow's loggers keep their errors,
    and every handler that writes to stdout is pointed at stderr."""
    logging.getLogger("airflow").setLevel(logging.ERROR)
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                # replaced, not re-pointed: Airflow's RedirectStdHandler has a read-only stream
                to_stderr = logging.StreamHandler(sys.stderr)
                to_stderr.setLevel(handler.level)
                to_stderr.setFormatter(handler.formatter)
                for log_filter in handler.filters:
                    to_stderr.addFilter(log_filter)
                logger.removeHandler(handler)
                logger.addHandler(to_stderr)


def _hook(conn_id: str) -> EzCaterHook:
    from airflow_provider_orders.hooks.ezcater import EzCaterHook  # imports Airflow: its logging is set up

    _quiet_airflow_logs()

    hook = EzCaterHook(conn_id)
    hook._log = _cli_logger()  # type: ignore[assignment]
    hook.url  # noqa: B018 - reads the connection now: a missing or unusable one fails first
    return hook


def _caterers(args: argparse.Namespace, out: TextIO, secrets: _Secrets) -> int:
    hook = _hook(args.conn_id)
    caterers = hook.get_caterers()
    if args.json:
        payload = [
            {"id": c.id, "uuid": c.uuid, "name": c.name, "store_number": c.store_number} for c in caterers
        ]
        print(json.dumps(payload, indent=2), file=out)
        return EXIT_OK
    if not caterers:
        print(f"The ezCater API user of connection '{args.conn_id}' may act for no caterer.", file=out)
        return EXIT_OK
    for line in _table(("ID", "UUID", "NAME"), [(c.id or "-", c.uuid, c.name) for c in caterers]):
        print(line, file=out)
    return EXIT_OK


def _split_values(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return out


def _open_secret_file(path: str) -> int:
    """A new file for the secret, mode 0600, created before the subscriber is (so the secret has a home)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(
            f"--secret-file {path} exists already; give a new path (a new subscriber's secret never "
            "replaces a file)."
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot create --secret-file {path}: {exc.strerror or exc}.") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    return fd


def _resolve_caterers(hook: EzCaterHook, args: argparse.Namespace, wanted: list[str]) -> list[Caterer]:
    from airflow_provider_orders.exceptions import PermanentOrdersError

    conn_id = args.conn_id
    if args.all_caterers:
        caterers = hook.get_caterers()
        if not caterers:
            raise PermanentOrdersError(
                f"The ezCater API user of connection '{conn_id}' may act for no caterer: nothing to "
                "subscribe to."
            )
        return caterers
    found = {c.uuid: c for c in hook.get_caterers(uuids=wanted)}
    unknown = [uuid for uuid in wanted if uuid not in found]
    if unknown:
        raise PermanentOrdersError(
            f"ezCater knows no caterer {', '.join(repr(u) for u in unknown)} that the API user of "
            f"connection '{conn_id}' may act for (nothing was changed); `{PROG} caterers --conn-id "
            f"{conn_id}` lists them."
        )
    return [found[uuid] for uuid in wanted]


def _subscribe(args: argparse.Namespace, out: TextIO, err: TextIO, secrets: _Secrets) -> int:
    from airflow_provider_orders.exceptions import OrdersProviderError
    from airflow_provider_orders.hooks.ezcater import (
        check_event_keys,
        check_webhook_url,
        webhook_path,
    )

    conn_id = args.conn_id
    # everything the command line says is checked before ezCater is called
    url = check_webhook_url(args.webhook_url)
    events = check_event_keys(args.events)
    wanted = _split_values(args.caterer or [])
    if not args.all_caterers and not wanted:
        raise UsageError("give at least one --caterer UUID, or --all-caterers")
    expected_path = webhook_path(conn_id)
    if not _path_matches(url, expected_path):
        print(
            f"{PROG}: note: the webhook URL's path is not {expected_path}, where this provider's receiver "
            f"answers for connection '{conn_id}' (fine behind a proxy that rewrites it).",
            file=err,
        )

    hook = _hook(conn_id)
    caterers = _resolve_caterers(hook, args, wanted)
    subscriber = hook.get_subscriber()
    if subscriber is None:
        subscriber = _create_subscriber(hook, args, url, out, secrets)
    else:
        subscriber = _update_subscriber(hook, args, subscriber, url, out, err)

    rows: list[tuple[str, str, str, str]] = []
    failures: list[str] = []
    for caterer in caterers:
        for event in events:
            if subscriber.find_subscription(caterer.uuid, event) is not None:
                result = "already subscribed"
            else:
                try:
                    hook.create_subscription(subscriber.id, caterer.uuid, event)
                except OrdersProviderError as exc:
                    result = "FAILED"
                    failures.append(secrets.scrub(str(exc)))
                else:
                    result = "subscribed"
            rows.append((caterer.uuid, caterer.name, event, result))
    print("", file=out)
    print(f"Order events of subscriber {subscriber.id}:", file=out)
    for line in _table(("CATERER", "NAME", "EVENT", "RESULT"), rows):
        print(f"  {line}", file=out)
    for failure in failures:
        print(f"{PROG}: error: {_one_line(failure)}", file=err)
    if failures:
        return EXIT_ERROR
    if not hook.has_webhook_secret():
        print("", file=out)
        print(
            f"The connection '{conn_id}' has no extra 'webhook_secret' yet: until it has, its receiver "
            "refuses every delivery.",
            file=out,
        )
    return EXIT_OK


def _create_subscriber(
    hook: EzCaterHook, args: argparse.Namespace, url: str, out: TextIO, secrets: _Secrets
) -> Subscriber:
    conn_id = args.conn_id
    had_secret = hook.has_webhook_secret()
    fd = _open_secret_file(args.secret_file) if args.secret_file else None
    try:
        created = hook.create_subscriber(args.name or DEFAULT_SUBSCRIBER_NAME, url)
    except BaseException:
        if fd is not None:
            os.close(fd)
            os.unlink(args.secret_file)  # empty: the subscriber's secret never came
        raise
    secrets.add(created.webhook_secret)
    subscriber = created.subscriber
    print(
        f"Created subscriber {subscriber.id} ({subscriber.name}) of connection '{conn_id}' with webhook "
        f"URL {subscriber.webhook_url}.",
        file=out,
    )
    print("", file=out)
    if fd is not None:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(created.webhook_secret + "\n")
        print(
            f"Its webhook secret is in {args.secret_file} (mode 0600). ezCater never shows it again.",
            file=out,
        )
        where = f"the content of {args.secret_file}"
    else:
        print("Its webhook secret (shown this once: ezCater never shows it again):", file=out)
        print(f"  {created.webhook_secret}", file=out)
        where = "the secret above"
    print("", file=out)
    for line in _store_instructions(hook, conn_id, where):
        print(line, file=out)
    if had_secret:
        print(
            "The connection's current 'webhook_secret' belongs to an earlier subscriber: replace it.",
            file=out,
        )
    return subscriber


def _update_subscriber(
    hook: EzCaterHook,
    args: argparse.Namespace,
    subscriber: Subscriber,
    url: str,
    out: TextIO,
    err: TextIO,
) -> Subscriber:
    if args.secret_file:
        print(
            f"{PROG}: note: subscriber {subscriber.id} exists already; its webhook secret was shown when it "
            f"was created and cannot be read again: {args.secret_file} is not written.",
            file=err,
        )
    changes: dict[str, str] = {}
    if subscriber.webhook_url != url:
        changes["webhook_url"] = url
    if args.name and args.name.strip() != subscriber.name:
        changes["name"] = args.name
    if not changes:
        print(
            f"Subscriber {subscriber.id} ({subscriber.name}) already delivers to {subscriber.webhook_url}.",
            file=out,
        )
        return subscriber
    updated = hook.update_subscriber(subscriber.id, **changes)
    if "webhook_url" in changes:
        print(
            f"Updated subscriber {updated.id} ({updated.name}): webhook URL {subscriber.webhook_url} -> "
            f"{updated.webhook_url}. The webhook secret stays the same: the one the connection stores "
            "stays valid.",
            file=out,
        )
    else:
        print(f"Renamed subscriber {updated.id}: {subscriber.name} -> {updated.name}.", file=out)
    # the update's answer may list no subscriptions: keep the ones read before
    return updated if updated.subscriptions else subscriber


def _status(args: argparse.Namespace, out: TextIO, secrets: _Secrets) -> int:
    from airflow_provider_orders.exceptions import OrdersProviderError
    from airflow_provider_orders.models.ezcater import CATERER_PARENT_ENTITY, ORDER_EVENT_KEYS

    conn_id = args.conn_id
    hook = _hook(conn_id)
    secret_state = "set" if hook.has_webhook_secret() else "missing"
    subscriber = hook.get_subscriber()
    subscriptions = subscriber.subscriptions if subscriber is not None else ()
    uuids: list[str] = []
    for s in subscriptions:
        if s.parent_entity.lower() == CATERER_PARENT_ENTITY.lower() and s.parent_id not in uuids:
            uuids.append(s.parent_id)
    names: dict[str, str] = {}
    if uuids:
        try:
            names = {c.uuid: c.name for c in hook.get_caterers(uuids=uuids)}
        except OrdersProviderError:
            names = {}  # names are a courtesy: the subscriptions are what status reports
    expected_path = hook.webhook_path
    matches = subscriber is not None and _path_matches(subscriber.webhook_url, expected_path)

    if args.json:
        payload: dict[str, Any] = {
            "conn_id": conn_id,
            "endpoint": hook.url,
            "webhook_secret": secret_state,
            "webhook_path": expected_path,
            "subscriber": None
            if subscriber is None
            else {
                "id": subscriber.id,
                "name": subscriber.name,
                "webhook_url": subscriber.webhook_url,
                "webhook_url_matches_path": matches,
            },
            "subscriptions": [
                {
                    "event_entity": s.event_entity,
                    "event_key": s.event_key,
                    "parent_entity": s.parent_entity,
                    "parent_id": s.parent_id,
                    "caterer_name": names.get(s.parent_id),
                }
                for s in subscriptions
            ],
        }
        print(json.dumps(payload, indent=2), file=out)
        return EXIT_OK

    lines = [
        f"Connection:      {conn_id} (ezCater at {hook.url})",
        f"webhook_secret:  {secret_state} (extra of the connection; its receiver verifies deliveries with it)",
        f"Webhook path:    {expected_path} (where this connection's receiver answers)",
    ]
    if subscriber is None:
        lines += [
            "Subscriber:      none",
            "",
            f"Create it with: {PROG} subscribe --conn-id {conn_id} --webhook-url "
            f"https://<airflow host>{expected_path} --all-caterers",
        ]
        for line in lines:
            print(line, file=out)
        return EXIT_OK
    verdict = "its path matches" if matches else f"its path is not {expected_path}"
    lines += [
        f"Subscriber:      {subscriber.id} ({subscriber.name})",
        f"Webhook URL:     {subscriber.webhook_url} ({verdict})",
        "",
    ]
    order_rows = [s for s in subscriptions if s.event_entity.lower() == "order" and s.parent_id in uuids]
    others = [s for s in subscriptions if s not in order_rows]
    if not order_rows:
        lines.append("Order subscriptions: none")
    else:
        lines.append("Order subscriptions (caterer x event):")
        keys = list(ORDER_EVENT_KEYS) + sorted(
            {s.event_key.lower() for s in order_rows} - set(ORDER_EVENT_KEYS)
        )
        rows = []
        for uuid in uuids:
            subscribed = {s.event_key.lower() for s in order_rows if s.parent_id == uuid}
            if subscribed:
                rows.append(
                    [uuid, names.get(uuid, "-"), *("yes" if key in subscribed else "-" for key in keys)]
                )
        lines += [f"  {line}" for line in _table(["CATERER", "NAME", *keys], rows)]
    for s in others:
        lines.append(
            f"Other subscription: {s.event_entity} '{s.event_key}' of {s.parent_entity} {s.parent_id}"
        )
    for line in lines:
        print(line, file=out)
    return EXIT_OK


# ------------------------------------------------------------------------------------------ main


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``orders-ezcater``; returns the exit code (0 done, 1 API / connection failure, 2 usage)."""
    out, err = sys.stdout, sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    secrets = _Secrets()
    command = f"{PROG} {args.command}"
    try:
        if args.command == "caterers":
            return _caterers(args, out, secrets)
        if args.command == "subscribe":
            return _subscribe(args, out, err, secrets)
        return _status(args, out, secrets)
    except UsageError as exc:
        print(f"{command}: error: {_one_line(secrets.scrub(str(exc)))}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=err)
        return 130
    except Exception as exc:
        from airflow_provider_orders.hooks.ezcater import InvalidArgumentError

        if isinstance(exc, InvalidArgumentError):
            print(f"{command}: error: {_one_line(secrets.scrub(str(exc)))}", file=err)
            return EXIT_USAGE
        from airflow.exceptions import AirflowException

        text = str(exc) if isinstance(exc, AirflowException) else f"{type(exc).__name__}: {exc}"
        print(f"{command}: error: {_one_line(secrets.scrub(text))}", file=err)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
