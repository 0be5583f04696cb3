"""The provider's view of the Airflow release it runs on, and the one-time warnings where a 3.3 feature is
missing (README: Airflow versions)."""

from __future__ import annotations

import logging

import airflow
import pytest
from packaging.version import Version

from airflow_provider_orders import version_compat
from airflow_provider_orders.version_compat import MISSING_FEATURE_EFFECTS, warn_missing_once


def test_the_flags_agree_with_the_running_airflow() -> None:
    running = Version(airflow.__version__)
    assert (running.major, running.minor, running.micro) == version_compat.AIRFLOW_VERSION
    for flag, minor in (("AIRFLOW_V_3_1_PLUS", 1), ("AIRFLOW_V_3_2_PLUS", 2), ("AIRFLOW_V_3_3_PLUS", 3)):
        assert getattr(version_compat, flag) == ((running.major, running.minor) >= (3, minor)), flag


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(version_compat, "_warned", set())


@pytest.mark.usefixtures("fresh_warnings")
def test_a_missing_feature_is_said_once_per_process_naming_what_the_user_loses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("orders-test")
    with caplog.at_level(logging.WARNING, logger="orders-test"):
        assert warn_missing_once("task_state_store", log, "task submit") is True
        assert warn_missing_once("task_state_store", log, "task other") is False
        assert warn_missing_once("trigger_on_kill", log) is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    version = ".".join(map(str, version_compat.AIRFLOW_VERSION))
    assert lines[0].startswith(
        f"Airflow {version} gives no task_state_store (Airflow 3.3 does) for task submit: "
    )
    assert "reference_variable" in lines[0]
    assert "README" in lines[0]
    assert "does not stop the remote run" in lines[1]
    assert set(MISSING_FEATURE_EFFECTS) == {"task_state_store", "asset_state_store", "trigger_on_kill"}
