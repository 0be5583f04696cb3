"""``[core] hostname_callable`` of the distributed test's Celery workers.

Both workers run on one machine, so the host name alone cannot tell which one ran a try. Each worker is
started with ``ORDERS_DIST_WORKER`` (``w1`` / ``w2``); its task processes inherit it and report it as the
task instance's ``hostname`` (REST ``taskInstances/.../tries``).
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("ORDERS_DIST_WORKER") or socket.getfqdn()
