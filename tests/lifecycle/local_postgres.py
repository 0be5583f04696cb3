"""A throw-away PostgreSQL cluster for the lifecycle matrix's Airflow: Debian's server binaries, a data
directory and socket under a temp folder, a free loopback port, durability off (the data dies with the
test). Started as the ``postgres`` user when the tests run as root (the server refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Server settings for a test database: fast, loopback only, enough connections for ~50 cells.
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=400 -c shared_buffers=128MB"
)


def server_bin(name: str) -> str:
    """``initdb`` / ``pg_ctl`` from Debian's versioned folder (newest first), else from PATH."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"PostgreSQL's {name} was not found: install the Debian package `postgresql` "
            "(.ci/run does it on a fresh machine)."
        )
    return found


def _run(cmd: list[str], as_user: list[str], log: Path) -> None:
    with log.open("a") as out:
        proc = subprocess.run(as_user + cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")


@contextmanager
def local_postgres(port: int, log_dir: Path) -> Iterator[str]:
    """Start a cluster on ``port``; yield the SQLAlchemy URL of its ``airflow`` database; stop it."""
    base = Path(tempfile.mkdtemp(prefix="orders-lifecycle-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres", group=None)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", log_dir / "postgres.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log.touch()
    if as_user:
        shutil.chown(log, user="postgres", group=None)
    try:
        _run(
            [server_bin("initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8"],
            as_user,
            log,
        )
        options = f"-p {port} -k {base} {SERVER_OPTIONS}"
        _run(
            [server_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
            as_user,
            log,
        )
        try:
            _run(
                [server_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "airflow"],
                as_user,
                log,
            )
            yield f"postgresql+psycopg2://airflow@127.0.0.1:{port}/airflow"
        finally:
            _run([server_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_user, log)
    finally:
        shutil.rmtree(base, ignore_errors=True)
