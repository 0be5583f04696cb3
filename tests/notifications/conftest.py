"""The notification tests import their harness (and the e2e / lifecycle helpers it builds on) by name."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _folder in (_TESTS / "lifecycle", _TESTS / "e2e", _TESTS / "notifications"):
    sys.path.insert(0, str(_folder))
