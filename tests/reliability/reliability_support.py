"""Helpers of the reliability suite: the secret scanner, sandbox waits, and running one operation."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

#: The sandboxes' default secrets (see the sandbox pytest plugin).
DK_PASSWORD = "demo-password"
EZ_TOKEN = "sandbox-token"
#: A JWT: base64url header starting with '{"' (eyJ), a dot, a base64url payload.
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")

KITCHEN = "demo-kitchen"
RECIPE = "demo-recipe"


class SecretScanner:
    """Collects text from captured sources and reports any secret found in it."""

    def __init__(self, secrets: Iterable[str] = (DK_PASSWORD, EZ_TOKEN)) -> None:
        self.secrets = tuple(secrets)
        self._texts: list[tuple[str, str]] = []
        self.sources_in_test = 0
        self.capture: Any = None

    def read_captured(self) -> str:
        """Take what the test printed so far (stdout + stderr), keep it for the scan, and return it."""
        if self.capture is None:
            return ""
        captured = self.capture.readouterr()
        self.add("stdout", captured.out)
        self.add("stderr", captured.err)
        return str(captured.out) + str(captured.err)

    def begin(self, capture: Any = None) -> None:
        self._texts = []
        self.sources_in_test = 0
        self.capture = capture

    def add(self, source: str, text: str | None) -> None:
        if text:
            self._texts.append((source, text))

    def add_log_dir(self, root: Path) -> int:
        """Add every file under ``root`` (task logs); returns how many files."""
        n = 0
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.add(str(path), path.read_text(errors="replace"))
                n += 1
        return n

    def findings(self, texts: Iterable[tuple[str, str]]) -> list[str]:
        found = []
        for source, text in texts:
            for secret in self.secrets:
                if secret in text:
                    found.append(f"{source}: contains {secret!r}: {_around(text, text.index(secret))}")
            for match in JWT_RE.finditer(text):
                found.append(f"{source}: contains a JWT: {_around(text, match.start())}")
        return found

    def end(self) -> list[str]:
        self.sources_in_test = len(self._texts)
        found = self.findings(self._texts)
        self._texts = []
        return found


def _around(text: str, index: int, width: int = 80) -> str:
    return repr(text[max(0, index - width) : index + width])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def settle(sandbox: Any, timeout: float = 10.0) -> None:
    """Wait until every logged request of ``sandbox`` got its answer (or was dropped/abandoned).

    Delayed faults answer after their delay, and only then is e.g. an order created; count after this.
    """

    def done() -> bool:
        return all(r.status is not None or (r.fault and "drop" in r.fault) for r in sandbox.requests)

    wait_for(done, timeout)


@dataclass
class Observed:
    """What one operation did: its outcome (``success`` or the exception class), and the numbers."""

    outcome: str
    message: str = ""
    value: Any = None
    exc: BaseException | None = None
    counts: dict[str, int] = field(default_factory=dict)
    orders: int | None = None
    state: str | None = None


def outcome_of(fn: Callable[[], Any]) -> Observed:
    try:
        value = fn()
    except Exception as exc:
        return Observed(type(exc).__name__, str(exc), exc=exc)
    return Observed("success", value=value)


def first_event(trigger: Any, timeout: float = 20.0) -> Any:
    """Run ``trigger.run()`` in a fresh event loop and return its first event (then stop the trigger)."""

    async def main() -> Any:
        from airflow_provider_orders.hooks._http import aclose_shared_async_clients

        agen = trigger.run()
        try:
            return await asyncio.wait_for(agen.__anext__(), timeout)
        finally:
            await agen.aclose()
            await aclose_shared_async_clients()

    return asyncio.run(main())
