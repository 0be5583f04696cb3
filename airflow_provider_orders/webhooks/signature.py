"""ezCater's webhook signature: ``X-Ezcater-Signature: <unix ts>.<hex>``, where
``hex = HMAC-SHA256(webhook secret, f"{ts}.{raw body}")``.

Pure functions, no I/O: the receiver and the tests share them. The comparison is constant time
(:func:`hmac.compare_digest`), and a check against a missing secret still computes an HMAC, so the
answer takes as long whether or not the connection exists.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import Enum

HEADER = "X-Ezcater-Signature"
#: ``<ts>.<64 hex>``: digits only for the timestamp (at most 12: well past the year 9999).
_HEADER_RE = re.compile(r"^\s*(\d{1,12})\.([0-9a-fA-F]{64})\s*$")
#: Compared against when there is no secret: the work is the same, the answer always "forged".
_NO_SECRET = secrets.token_bytes(32)


class Verdict(str, Enum):
    """Why a signature was refused (or ``VALID``). Every refusal is answered 401 alike."""

    VALID = "valid"
    MISSING = "missing"
    MALFORMED = "malformed"
    FORGED = "forged"
    STALE = "stale"


@dataclass(frozen=True)
class SignatureCheck:
    verdict: Verdict
    timestamp: int | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value ezCater sends for ``body`` at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{timestamp}.{digest}"


def verify(
    header: str | None, secret: str | None, body: bytes, *, now: float, tolerance: float
) -> SignatureCheck:
    """Check one delivery's signature header.

    The HMAC is compared before the timestamp is judged, so only a sender that knows the secret can
    learn that its clock is off (``STALE``); everyone else sees ``FORGED``.
    """
    if not header:
        return SignatureCheck(Verdict.MISSING)
    match = _HEADER_RE.match(header)
    if match is None:
        return SignatureCheck(Verdict.MALFORMED)
    ts_text, sent = match.group(1), match.group(2).lower()
    key = secret.encode() if secret else _NO_SECRET
    expected = hmac.new(key, ts_text.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sent) or not secret:
        return SignatureCheck(Verdict.FORGED)
    timestamp = int(ts_text)
    if abs(now - timestamp) > tolerance:
        return SignatureCheck(Verdict.STALE, timestamp)
    return SignatureCheck(Verdict.VALID, timestamp)


__all__ = ["HEADER", "SignatureCheck", "Verdict", "sign", "verify"]
