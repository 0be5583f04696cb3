"""`make test-compat`: the core suite on the newest patch of each supported Airflow minor, each in a venv of
its own, against the wheel in dist/ (installed, not editable: a file missing from the wheel fails here).

Each venv gets Airflow the way its release shipped: pip considers only distributions uploaded before that
Airflow patch was (``--uploaded-prior-to``), the stand-in for the release's constraints file, which this
machine cannot download. Without it, today's pydantic or cadwyn break older Airflow inside ``dag.test()``
for reasons that have nothing to do with this provider. The provider's wheel and its test tools are
installed on top without the cut-off: pip keeps what is already satisfied.

Usage: python dev/compat.py [--jobs N] [--install-only] 3.0 3.1 3.2 3.3 [-- pytest args]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPI_JSON = "https://pypi.org/pypi/apache-airflow/json"

#: The core suite: hooks, operators and sensors through dag.test(), triggers, the notification receiver,
#: the CLI, example DAG parsing and the provider's registration. The sandboxes' own tests and the
#: reliability matrix do not depend on the Airflow release and run once, in `make test`.
CORE_SUITE = [
    "tests/hooks",
    "tests/operators",
    "tests/webhooks",
    "tests/cli",
    "tests/test_example_dags.py",
    "tests/test_provider_info.py",
    "tests/test_assets.py",
    "tests/test_packaging.py",
    "tests/test_version_compat.py",
]
MARKERS = "not e2e and not lifecycle and not notifications and not distributed"


@dataclass
class Result:
    minor: str
    airflow: str = "?"
    status: str = "not run"
    summary: str = ""
    seconds: float = 0.0
    log: Path | None = None
    details: list[str] = field(default_factory=list)


def newest_patches(minors: list[str]) -> dict[str, tuple[str, str]]:
    """minor -> (newest released patch, its upload time) from PyPI's JSON API."""
    with urllib.request.urlopen(PYPI_JSON, timeout=60) as answer:
        releases = json.load(answer)["releases"]
    found: dict[str, tuple[str, str]] = {}
    for text, files in releases.items():
        version = Version(text)
        if version.is_prerelease or version.is_devrelease or not files:
            continue
        minor = f"{version.major}.{version.minor}"
        uploaded = min(f["upload_time_iso_8601"] for f in files)
        if text in minors:  # an exact release asked for (make smoke: the lowest one pyproject declares)
            found[text] = (text, uploaded)
        elif minor in minors and (minor not in found or version > Version(found[minor][0])):
            found[minor] = (text, uploaded)
    missing = [m for m in minors if m not in found]
    if missing:
        raise SystemExit(f"PyPI lists no apache-airflow release for {', '.join(missing)}")
    return found


def pypi_only_env() -> dict[str, str]:
    """The environment for the dated install: PyPI alone. A machine's pip config may add local indexes or
    find-links (this one does); their files carry no upload time, so ``--uploaded-prior-to`` lets every
    one of them through, today's pydantic included."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT")
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no config file at all
    return env


def run(cmd: list[str], log: Path, **kwargs: object) -> int:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs).returncode  # type: ignore[call-overload]


def wheel_digest(wheel: Path) -> str:
    """What the wheel holds (names and CRCs): the same for two builds of the same source, whose bytes
    differ by timestamps; so a venv is reinstalled only when the package changed."""
    with zipfile.ZipFile(wheel) as archive:
        listing = sorted(f"{i.filename}:{i.CRC}" for i in archive.infolist())
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()


def install(minor: str, airflow: str, released: str, wheel: Path, logs: Path) -> Result:
    """A venv for ``minor`` with Airflow ``airflow`` as released and the provider's wheel on top."""
    result = Result(minor, airflow, log=logs / f"compat-{minor}.log")
    assert result.log is not None
    result.log.write_text("")
    venv = ROOT / f".venv-compat-{minor}"
    stamp = venv / ".installed"  # line 1: the Airflow release; line 2: what the wheel holds
    digest = wheel_digest(wheel)
    have = stamp.read_text().splitlines() if stamp.exists() else []
    if have == [airflow, digest]:
        result.status = "installed"
        return result
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps: list[tuple[list[str], dict[str, str] | None]] = []
    if have[:1] != [airflow]:  # a new venv: Airflow as released, then the wheel
        shutil.rmtree(venv, ignore_errors=True)
        released_at = dt.datetime.fromisoformat(released.replace("Z", "+00:00"))
        cutoff = (released_at + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        steps += [
            ([sys.executable, "-m", "venv", str(venv)], None),
            ([py, "-m", "pip", "install", "-q", "--upgrade", "pip>=26.1"], None),  # --uploaded-prior-to
            ([*pip, f"apache-airflow=={airflow}", "--uploaded-prior-to", cutoff], pypi_only_env()),
        ]
    else:  # same Airflow, another wheel: replace the package only
        steps.append(([*pip, "--force-reinstall", "--no-deps", str(wheel)], None))
    steps.append(([*pip, f"{wheel}[test]"], None))
    for step, env in steps:
        if run(step, result.log, env=env) != 0:
            result.status = "install failed"
            return result
    stamp.write_text(f"{airflow}\n{digest}\n")
    result.status = "installed"
    return result


def test(result: Result, suite: list[str], pytest_args: list[str]) -> Result:
    assert result.log is not None
    venv = ROOT / f".venv-compat-{result.minor}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env["ORDERS_TEST_INSTALLED_WHEEL"] = "1"  # tests/test_packaging.py: the package must come from the wheel
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # bin/pytest, not `python -m pytest`: the latter puts the checkout on sys.path, ahead of the wheel
    cmd = [
        str(venv / "bin" / "pytest"),
        "-q",
        "-m",
        MARKERS,
        "-p",
        "no:cacheprovider",
        *suite,
        *pytest_args,
    ]
    started = time.monotonic()
    code = run(cmd, result.log, cwd=ROOT, env=env)
    result.seconds = time.monotonic() - started
    lines = result.log.read_text().splitlines()
    result.summary = next(
        (line.strip("= ") for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)), ""
    )
    result.details = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    result.status = "passed" if code == 0 else "FAILED"
    return result


def failure_story(lines: list[str], frames: int = 12, budget: int = 160) -> list[str]:
    """The end of each failure's traceback in a pytest log, and, for a pytest-timeout failure, the
    innermost frames of every other thread's stack: enough to see where a hung test was stuck."""
    story: list[str] = []
    section: list[str] = []
    in_failures = False

    def close() -> None:
        if section:
            story.append(section[0])
            story.extend(section[1:][-frames:])

    for line in lines:
        if re.match(r"=+ (FAILURES|ERRORS) =+$", line):
            in_failures = True
            continue
        if not in_failures:
            continue
        if re.match(r"=+ .* =+$", line):  # the next pytest section: the failures are over
            break
        if re.match(r"_{3,} .* _{3,}$", line) or re.match(r"~{3,} Stack of .* ~{3,}$", line):
            close()
            section = [line]
        elif re.match(r"\+{3,} Timeout \+{3,}$", line) or re.match(r"-{3,} Captured .* -{3,}$", line):
            close()
            section = []
        elif section:
            section.append(line)
    close()
    return story[:budget]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("minors", nargs="+")
    parser.add_argument("--jobs", type=int, default=2, help="suites run at once (installs all run at once)")
    parser.add_argument("--install-only", action="store_true", help="prepare the venvs, run nothing (CI)")
    parser.add_argument("--suite", help="comma-separated test paths instead of the core suite")
    parser.add_argument("--keyword", help="pytest -k expression")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, default=[])
    args, extra = parser.parse_known_args()
    wheels = sorted((ROOT / "dist").glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in dist/ (run `make dist`), found {len(wheels)}")
    logs = ROOT / ".artifacts"
    logs.mkdir(exist_ok=True)
    patches = newest_patches(args.minors)
    print(
        "Airflow releases under test: " + ", ".join(f"{m} -> {v}" for m, (v, _) in patches.items()),
        flush=True,
    )
    with ThreadPoolExecutor(len(patches)) as pool:
        installed = list(pool.map(lambda m: install(m, *patches[m], wheels[0], logs), args.minors))
    ready = [r for r in installed if r.status == "installed"]
    if args.install_only:
        for r in installed:
            print(f"Airflow {r.airflow}: {r.status} ({r.log})")
        return 0 if len(ready) == len(installed) else 1
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        suite = args.suite.split(",") if args.suite else CORE_SUITE
        keyword = ["-k", args.keyword] if args.keyword else []
        list(pool.map(lambda r: test(r, suite, [*keyword, *extra, *args.pytest_args]), ready))
    print("\n| Airflow | result | tests | seconds |\n|---|---|---|---|")
    for r in installed:
        print(f"| {r.airflow} | {r.status} | {r.summary} | {r.seconds:.0f} |")
    failed = [r for r in installed if r.status != "passed"]
    for r in failed:
        print(f"\n--- Airflow {r.airflow}: {r.status} (log: {r.log})")
        assert r.log is not None
        lines = r.log.read_text().splitlines()
        shown = r.details or lines[-40:]
        print("\n".join(shown[:60]))
        story = failure_story(lines)
        if story:  # CI keeps only this output: where each failure happened, not just that it did
            print("\n".join(story))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
