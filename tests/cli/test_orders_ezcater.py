"""``orders-ezcater`` (caterers, subscribe, status) against the ezCater sandbox over real HTTP.

The command runs in-process (``main([...])`` with capsys) and once as the installed script.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_orders.cli.ezcater import main

if TYPE_CHECKING:
    from airflow_provider_orders.sandbox import EzCaterSandbox

CATERER_1 = "c0ffee00-0000-4000-8000-000000000001"
CATERER_2 = "c0ffee00-0000-4000-8000-000000000002"
URL = "https://airflow.example.com/ezcater/webhooks/ezcater_default"
OTHER_URL = "https://airflow2.example.com/ezcater/webhooks/ezcater_default"
TOKEN = "sandbox-token"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def subscribe(capsys: pytest.CaptureFixture[str], *extra: str, url: str = URL) -> tuple[int, str, str]:
    return run(capsys, "subscribe", "--webhook-url", url, *extra)


def the_secret(ez: EzCaterSandbox) -> str:
    (subscriber,) = ez.subscribers()
    return ez.model.subscribers[subscriber["id"]].secret


def subscriptions(ez: EzCaterSandbox) -> list[tuple[str, str]]:
    (subscriber,) = ez.subscribers()
    return sorted((s["parentId"], s["eventKey"]) for s in subscriber["subscriptions"])


def use_connection(monkeypatch: pytest.MonkeyPatch, ez: EzCaterSandbox, conn_id: str, **extra: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", ez.connection_json({"retry_delay": 0.01, **extra}))


# ---------------------------------------------------------------------------------------------- caterers


def test_caterers_table(ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "caterers")

    assert code == 0, err
    header, first, second = out.splitlines()
    assert header.split() == ["ID", "UUID", "NAME"]
    assert first.split(maxsplit=2) == ["1001", CATERER_1, "Sandbox Catering Co."]
    assert second.split(maxsplit=2) == ["1002", CATERER_2, "Second Kitchen"]
    assert err == ""


def test_caterers_json(ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "caterers", "--json")

    assert code == 0
    assert json.loads(out) == [
        {"id": "1001", "uuid": CATERER_1, "name": "Sandbox Catering Co.", "store_number": "101"},
        {"id": "1002", "uuid": CATERER_2, "name": "Second Kitchen", "store_number": "102"},
    ]


# ---------------------------------------------------------------------------------------------- subscribe


def test_subscribe_prints_the_secret_once_and_how_to_store_it(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    ez = ezcater_sandbox
    caplog.set_level("DEBUG")

    code, out, err = subscribe(capsys, "--all-caterers")

    assert code == 0, err
    secret = the_secret(ez)
    assert out.count(secret) == 1
    assert secret not in err
    assert secret not in caplog.text
    assert TOKEN not in out + err + caplog.text
    (subscriber,) = ez.subscribers()
    assert subscriber["name"] == "airflow-provider-orders"
    assert subscriber["webhookUrl"] == URL
    assert f"Created subscriber {subscriber['id']}" in out
    assert "ezCater never shows it again" in out
    # how to store it: the connection's extra webhook_secret, with placeholders only
    assert "extra 'webhook_secret' of connection 'ezcater_default'" in out
    assert "airflow connections add ezcater_default --conn-type ezcater" in out
    assert """--conn-extra '{"webhook_secret": "<webhook secret>"}'""" in out
    env_line = next(line for line in out.splitlines() if "AIRFLOW_CONN_EZCATER_DEFAULT=" in line)
    conn = json.loads(env_line.split("=", 1)[1].strip("'"))
    assert conn["extra"] == {"webhook_secret": "<webhook secret>"}
    assert conn["password"] == "<ezCater API token>"
    assert conn["host"] == ez.graphql_url
    # every (caterer, default event) subscribed
    assert subscriptions(ez) == [
        (CATERER_1, "cancelled"),
        (CATERER_1, "submitted"),
        (CATERER_2, "cancelled"),
        (CATERER_2, "submitted"),
    ]
    assert out.count(" subscribed") == 4
    assert "already subscribed" not in out


def test_subscribe_twice_creates_nothing_twice(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    ez = ezcater_sandbox
    first = subscribe(capsys, "--caterer", CATERER_1, "--caterer", CATERER_2)
    assert first[0] == 0, first[2]
    secret = the_secret(ez)
    created = (ez.count("createSubscriber"), ez.count("createSubscription"), ez.count("updateSubscriber"))
    assert created == (1, 4, 0)

    code, out, err = subscribe(capsys, "--caterer", f"{CATERER_1},{CATERER_2}")

    assert code == 0, err
    assert (
        ez.count("createSubscriber"),
        ez.count("createSubscription"),
        ez.count("updateSubscriber"),
    ) == created
    assert len(ez.subscribers()) == 1
    assert len(subscriptions(ez)) == 4
    assert out.count("already subscribed") == 4
    assert "already delivers to " + URL in out
    assert secret not in out + err


def test_subscribe_adds_only_the_missing_events(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    ez = ezcater_sandbox
    assert subscribe(capsys, "--caterer", CATERER_1, "--events", "submitted")[0] == 0

    code, out, _ = subscribe(capsys, "--caterer", CATERER_1, "--events", "submitted,accepted")

    assert code == 0
    assert ez.count("createSubscription") == 2
    assert subscriptions(ez) == [(CATERER_1, "accepted"), (CATERER_1, "submitted")]
    assert re.search(r"Sandbox Catering Co\.\s+accepted\s+subscribed$", out, re.MULTILINE)
    assert re.search(r"Sandbox Catering Co\.\s+submitted\s+already subscribed$", out, re.MULTILINE)


def test_a_new_webhook_url_updates_the_subscriber_and_keeps_the_secret(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    ez = ezcater_sandbox
    assert subscribe(capsys, "--all-caterers")[0] == 0
    secret = the_secret(ez)

    code, out, err = subscribe(capsys, "--all-caterers", url=OTHER_URL)

    assert code == 0, err
    (subscriber,) = ez.subscribers()
    assert subscriber["webhookUrl"] == OTHER_URL
    assert the_secret(ez) == secret
    assert ez.count("createSubscriber") == 1
    assert ez.count("updateSubscriber") == 1
    assert f"webhook URL {URL} -> {OTHER_URL}" in out
    assert "stays valid" in out
    assert secret not in out


def test_secret_file_is_created_with_mode_0600(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ez = ezcater_sandbox
    path = tmp_path / "ezcater-webhook-secret"
    old_umask = os.umask(0o000)  # a permissive umask must not widen the file's mode
    try:
        code, out, err = subscribe(capsys, "--all-caterers", "--secret-file", str(path))
    finally:
        os.umask(old_umask)

    assert code == 0, err
    secret = the_secret(ez)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == secret
    assert secret not in out + err
    assert str(path) in out
    assert "<webhook secret>" in out


def test_an_existing_secret_file_is_never_overwritten(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "secret"
    path.write_text("an older secret\n")

    code, out, err = subscribe(capsys, "--all-caterers", "--secret-file", str(path))

    assert code == 2
    assert out == ""
    assert "exists already" in err
    assert path.read_text() == "an older secret\n"
    assert ezcater_sandbox.count("createSubscriber") == 0
    assert ezcater_sandbox.subscribers() == []


def test_secret_file_with_an_existing_subscriber_is_not_written(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert subscribe(capsys, "--all-caterers")[0] == 0
    path = tmp_path / "secret"

    code, _, err = subscribe(capsys, "--all-caterers", "--secret-file", str(path))

    assert code == 0
    assert not path.exists()
    assert "cannot be read again" in err


def test_a_lost_create_subscriber_answer_is_not_sent_again(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ez = ezcater_sandbox
    ez.inject_fault("createSubscriber", drop=True, apply=True)
    path = tmp_path / "secret"

    code, out, err = subscribe(capsys, "--all-caterers", "--secret-file", str(path))

    assert code == 1
    assert ez.count("createSubscriber") == 1
    assert ez.count("createSubscription") == 0
    assert len(ez.subscribers()) == 1  # ezCater made it; its secret is gone
    assert the_secret(ez) not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith("orders-ezcater subscribe: error: ")
    assert "orders-ezcater status --conn-id ezcater_default" in line
    assert "Traceback" not in err
    assert not path.exists()  # the empty file made for the secret is removed


def test_a_refused_subscription_fails_after_the_others(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    ez = ezcater_sandbox
    ez.inject_fault("createSubscription", status=200, body={"errors": [{"message": "Caterer is paused"}]})

    code, out, err = subscribe(capsys, "--caterer", CATERER_1)

    assert code == 1
    assert subscriptions(ez) == [(CATERER_1, "cancelled")]
    assert "FAILED" in out
    assert the_secret(ez) in out  # the secret was shown before the subscriptions were made
    assert "Caterer is paused" in err
    assert CATERER_1 in err


# ---------------------------------------------------------------------------------------------- status


def test_status_without_subscriber(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status")

    assert code == 0, err
    assert "Subscriber:      none" in out
    assert "webhook_secret:  missing" in out
    assert "/ezcater/webhooks/ezcater_default" in out
    assert "orders-ezcater subscribe --conn-id ezcater_default" in out


def test_status_shows_subscriber_subscriptions_and_secret_presence(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ez = ezcater_sandbox
    assert subscribe(capsys, "--caterer", CATERER_1, "--events", "submitted,cancelled,accepted")[0] == 0
    secret = the_secret(ez)
    use_connection(monkeypatch, ez, "ezcater_default", webhook_secret=secret)

    code, out, err = run(capsys, "status")

    assert code == 0, err
    (subscriber,) = ez.subscribers()
    assert f"Subscriber:      {subscriber['id']} (airflow-provider-orders)" in out
    assert f"Webhook URL:     {URL} (its path matches)" in out
    assert "webhook_secret:  set" in out
    assert secret not in out + err
    header = next(line for line in out.splitlines() if "CATERER" in line).split()
    row = next(line for line in out.splitlines() if CATERER_1 in line)
    cells = dict(zip(header, [CATERER_1, "Sandbox Catering Co.", *row.split()[4:]], strict=True))
    assert header == ["CATERER", "NAME", "submitted", "accepted", "rejected", "cancelled", "uncancelled"]
    assert cells == {
        "CATERER": CATERER_1,
        "NAME": "Sandbox Catering Co.",
        "submitted": "yes",
        "accepted": "yes",
        "rejected": "-",
        "cancelled": "yes",
        "uncancelled": "-",
    }
    assert CATERER_2 not in out


def test_status_json_and_another_connection(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ez = ezcater_sandbox
    use_connection(monkeypatch, ez, "ez_prod")
    url = "https://airflow.example.com/hooks/elsewhere"
    assert (
        run(capsys, "subscribe", "--conn-id", "ez_prod", "--webhook-url", url, "--caterer", CATERER_2)[0] == 0
    )

    code, out, _ = run(capsys, "status", "--conn-id", "ez_prod", "--json")

    assert code == 0
    status = json.loads(out)
    (subscriber,) = ez.subscribers()
    assert status["conn_id"] == "ez_prod"
    assert status["webhook_secret"] == "missing"
    assert status["webhook_path"] == "/ezcater/webhooks/ez_prod"
    assert status["subscriber"] == {
        "id": subscriber["id"],
        "name": "airflow-provider-orders",
        "webhook_url": url,
        "webhook_url_matches_path": False,
    }
    assert sorted(s["event_key"] for s in status["subscriptions"]) == ["cancelled", "submitted"]
    assert {s["caterer_name"] for s in status["subscriptions"]} == {"Second Kitchen"}


# ---------------------------------------------------------------------------------------------- usage and errors


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["subscribe", "--webhook-url", "http://airflow.example.com/x", "--all-caterers"], "must use https"),
        (["subscribe", "--webhook-url", URL, "--all-caterers", "--events", "modified"], "'modified'"),
        (["subscribe", "--webhook-url", URL, "--all-caterers", "--events", ","], "at least one"),
        (["subscribe", "--webhook-url", URL, "--caterer", " , "], "--caterer"),
        (["subscribe", "--webhook-url", URL], "--caterer"),
        (["subscribe", "--webhook-url", URL, "--caterer", CATERER_1, "--all-caterers"], "not allowed"),
        (["subscribe", "--all-caterers"], "--webhook-url"),
        (["status", "--bogus"], "unrecognized"),
        (["frobnicate"], "invalid choice"),
        ([], "COMMAND"),
    ],
)
def test_usage_errors_exit_2_without_calling_ezcater(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = run(capsys, *argv)

    assert code == 2
    assert says in err
    assert out == ""
    assert "Traceback" not in err
    assert ezcater_sandbox.requests == []


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "subscribe", "--help")
    assert code == 0
    assert "--secret-file" in out
    assert "submitted,cancelled" in out


def test_an_unknown_caterer_is_refused_before_anything_is_created(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = subscribe(capsys, "--caterer", CATERER_1, "--caterer", "no-such-caterer")

    assert code == 1
    (line,) = err.strip().splitlines()
    assert "'no-such-caterer'" in line
    assert "orders-ezcater caterers" in line
    assert ezcater_sandbox.count("createSubscriber") == 0
    assert out == ""


def test_a_missing_connection_exits_1_in_one_line(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", "--conn-id", "no_such_connection")

    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("orders-ezcater status: error: ")
    assert "no_such_connection" in line
    assert "Traceback" not in err
    assert out == ""


def test_a_refused_token_exits_1_without_the_token(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(ezcater_sandbox.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_EZCATER_DEFAULT", json.dumps({**conn, "password": "wrong-token-31337"}))

    code, out, err = run(capsys, "caterers")

    assert code == 1
    (line,) = err.strip().splitlines()
    assert "ezcater_default" in line
    assert "refused the API token" in line
    assert "wrong-token-31337" not in out + err


def test_retries_are_reported_on_stderr_not_stdout(
    ezcater_sandbox: EzCaterSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    ezcater_sandbox.inject_fault("caterers", status=502)

    code, out, err = run(capsys, "caterers", "--json")

    assert code == 0
    assert len(json.loads(out)) == 2  # stdout is only the JSON
    assert "retrying" in err


# ---------------------------------------------------------------------------------------------- the script


def _script(*argv: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("orders-ezcater")
    assert script.exists(), "pip install -e . installs the orders-ezcater script"
    return subprocess.run(
        [str(script), *argv], env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False
    )


def test_the_installed_script(ezcater_sandbox: EzCaterSandbox, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"

    done = _script("subscribe", "--webhook-url", URL, "--all-caterers", "--secret-file", str(secret_file))

    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = the_secret(ezcater_sandbox)
    assert secret_file.read_text().strip() == secret
    assert secret not in done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert len(subscriptions(ezcater_sandbox)) == 4

    status = _script("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["subscriber"]["webhook_url"] == URL

    bad = _script("subscribe", "--webhook-url", "http://x.example.com/", "--all-caterers")
    assert bad.returncode == 2
    assert "must use https" in bad.stderr
    assert "Traceback" not in bad.stderr
