"""The harness's asset-event reads against a fake Airflow REST API (runs in ``make test``).

Airflow's asset-events list answers 500 while a DAG run that one of the events created is still queued
(apache/airflow#71360). A notification test that polled the list at that moment failed with "HTTP Error
500" in CI: the harness now reads such a page again, and says what it saw when the 500 does not pass.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from e2e_harness import AirflowCluster, AirflowProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

URI = "datakitchen://datakitchen_default/order-runs/k/r/v"


class FakeAirflow(ThreadingHTTPServer):
    """``GET /api/v2/assets`` and ``/api/v2/assets/events``: ``events`` on asset 7, pages of 100; the
    first ``failures`` reads of the events list answer ``status`` (Airflow's queued-run 500)."""

    def __init__(self, events: int, failures: int, status: int = 500) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.events = [{"id": i, "extra": {"order_id": f"o{i}"}} for i in range(events)]
        self.failures = failures
        self.status = status
        self.event_reads = 0


class Handler(BaseHTTPRequestHandler):
    server: FakeAirflow

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        body: dict[str, Any]
        if url.path == "/api/v2/assets":
            body = {"assets": [{"id": 7, "uri": URI}, {"id": 8, "uri": URI + "-other"}], "total_entries": 2}
        elif url.path == "/api/v2/assets/events" and query.get("asset_id") == "7":
            self.server.event_reads += 1
            if self.server.event_reads <= self.server.failures:
                self.send_error(self.server.status)
                return
            offset, limit = int(query["offset"]), int(query["limit"])
            page = self.server.events[offset : offset + limit]
            body = {"asset_events": page, "total_entries": len(self.server.events)}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(server: FakeAirflow) -> Iterator[FakeAirflow]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def cluster_of(server: FakeAirflow, tmp_path: Path) -> AirflowCluster:
    return AirflowCluster(home=tmp_path, port=server.server_address[1], env={}, artifacts=tmp_path)


@pytest.fixture
def queued_for_a_while() -> Iterator[FakeAirflow]:
    """150 events; the list answers 500 twice (a run one of them created waits for the scheduler)."""
    with serve(FakeAirflow(events=150, failures=2)) as server:
        yield server


def test_a_500_while_a_run_is_queued_is_read_again_and_every_page_returned(
    queued_for_a_while: FakeAirflow, tmp_path: Path
) -> None:
    cluster = cluster_of(queued_for_a_while, tmp_path)
    with pytest.raises(urllib.error.HTTPError):  # what the notification test saw in CI
        cluster.api("assets/events", asset_id=7, limit=100, offset=0)

    events = cluster.asset_events(URI)

    assert [e["id"] for e in events] == list(range(150))
    assert queued_for_a_while.event_reads == 4  # the 500 above, one more 500, then both pages


def test_an_unknown_asset_has_no_events(queued_for_a_while: FakeAirflow, tmp_path: Path) -> None:
    assert cluster_of(queued_for_a_while, tmp_path).asset_events(URI + "-unknown") == []
    assert queued_for_a_while.event_reads == 0


def test_a_500_that_lasts_fails_with_the_api_server_log(tmp_path: Path) -> None:
    log = tmp_path / "api-server.log"
    log.write_text("pydantic_core.ValidationError: created_dagruns.0.start_date\n")
    with serve(FakeAirflow(events=1, failures=10**6)) as server:
        cluster = cluster_of(server, tmp_path)
        cluster.processes.append(AirflowProcess("api-server", None, log))  # type: ignore[arg-type]
        cluster.QUEUED_RUN_GRACE = 1.0
        with pytest.raises(pytest.fail.Exception) as failed:
            cluster.asset_events(URI)
    assert "answered the asset-events list with 500 for 1 s" in str(failed.value)
    assert "created_dagruns.0.start_date" in str(failed.value)


def test_other_errors_are_not_read_again(tmp_path: Path) -> None:
    with serve(FakeAirflow(events=1, failures=1, status=403)) as server:
        with pytest.raises(urllib.error.HTTPError) as raised:
            cluster_of(server, tmp_path).asset_events(URI)
        assert raised.value.code == 403
        assert server.event_reads == 1
