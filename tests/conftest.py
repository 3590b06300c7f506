"""Shared fixtures: real Redis, PostgreSQL and MariaDB when they are there.

On a machine without them the tests that need them skip with the reason; with
FLASHSALE_REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the test instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

REDIS_URL = os.environ.get("FLASHSALE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "FLASHSALE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
MARIADB_DSN = os.environ.get("FLASHSALE_TEST_MARIADB", "mysql://root@127.0.0.1:3306/")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _need(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("FLASHSALE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and FLASHSALE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    """URL of a real Redis server; tests must use their own key prefix and clean up."""
    _need("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def postgres_dsn() -> str:
    """DSN of a real PostgreSQL server; tests must use their own schema and clean up."""
    _need("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_DSN


@pytest.fixture
def mariadb_dsn() -> str:
    """DSN of a real MariaDB (or MySQL) server, no database named: tests create their own
    database with a unique name and drop it."""
    _need("MariaDB", "127.0.0.1", 3306)
    return MARIADB_DSN


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail fast, not hang: Locust's gevent patches must not reach this process's tests."""
    import sys

    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading") and not os.environ.get("FLASHSALE_GEVENT_OK"):
            raise pytest.UsageError(
                "a test module imported Locust at collection (gevent patched threading/socket); "
                "uvloop tests hang under it — import locust only in subprocesses"
            )


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1280,1000",
)


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("FLASHSALE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and FLASHSALE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium (selenium), a fresh profile, the console log captured.

    Skips where Chromium, chromedriver or selenium is missing, unless
    FLASHSALE_REQUIRE_SERVICES=1 (CI): then it fails.
    """
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
