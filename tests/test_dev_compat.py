"""`make test-compat` reports where a failed suite went wrong, not only that it did: CI keeps only what
``dev/compat.py`` prints, not the per-release logs, so a hung test's stacks must reach that output."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _compat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_compat", ROOT / "dev" / "compat.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_hung_test_shows_where_every_thread_was_stuck(tmp_path: Path) -> None:
    (tmp_path / "test_stuck.py").write_text(
        textwrap.dedent(
            """
            import threading, time

            def wait_for_the_supervisor(event):
                event.wait()

            def poll_the_api_forever():
                time.sleep(30)

            def test_hangs():
                threading.Thread(
                    target=wait_for_the_supervisor, args=(threading.Event(),), name="helper", daemon=True
                ).start()
                poll_the_api_forever()

            def test_fails():
                assert 1 == 2, "the order was placed twice"
            """
        )
    )
    log = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "1", "test_stuck.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout

    story = "\n".join(_compat().failure_story(log.splitlines()))

    assert "test_hangs" in story
    assert "test_fails" in story
    assert "in poll_the_api_forever" in story or "time.sleep(30)" in story, story  # the stuck frame
    assert "Stack of helper" in story, story  # the other thread...
    assert "wait_for_the_supervisor" in story, story  # ...and where it waits
    assert "the order was placed twice" in story
    assert "Captured" not in story  # the tracebacks' ends, not the captured output around them
