"""Private database servers for the test session: PostgreSQL 15 and MariaDB.

The test suite starts its own servers from the Debian packages' binaries (into
temporary directories, on free loopback ports) so that one command runs every
engine on any machine with the packages installed.  ``SHOPCRM_TEST_POSTGRES`` /
``SHOPCRM_TEST_MYSQL`` point the tests at existing servers instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_worker(variable: str) -> None:
    """An existing server is one database for every test worker (pytest-xdist): they would race on its tables."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        raise RuntimeError(f"{variable} points all {workers} test workers at one existing server, where they would "
                           "race on the same tables; run these tests on one worker: pytest -n 0")


def _postgres_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser") if Path(p).exists()), "runuser"
    )
    return [runuser, "-u", "postgres", "--", *command]


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, Any] | None]:
    """Connection keywords for psycopg, or None when no server can be had."""
    dsn = os.environ.get("SHOPCRM_TEST_POSTGRES")
    if dsn:
        _one_worker("SHOPCRM_TEST_POSTGRES")
        yield {"conninfo": dsn}
        return
    bindir = _postgres_bin()
    if bindir is None or (os.geteuid() == 0 and not _user_exists("postgres")):
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="shopcrm-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    init = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "shopcrm", "-E", "UTF8"]
    # a case-aware locale makes the tests prove that string order does not depend on it
    icu = subprocess.run(
        _as_postgres_user([*init, "--locale-provider=icu", "--icu-locale=en-US", "--locale=C.UTF-8"]),
        capture_output=True, text=True,
    )
    if icu.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        subprocess.run(_as_postgres_user(init), check=True, capture_output=True)
    log = root / "server.log"
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run(
        _as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]),
        check=True, capture_output=True,
    )
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "shopcrm", "dbname": "postgres"}
    finally:
        subprocess.run(
            _as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def mysql_server() -> Iterator[dict[str, Any] | None]:
    """Connection keywords for PyMySQL, or None when no server can be had."""
    dsn = os.environ.get("SHOPCRM_TEST_MYSQL")
    if dsn:  # mysql://user:password@host:port/database
        _one_worker("SHOPCRM_TEST_MYSQL")
        from urllib.parse import urlparse

        url = urlparse(dsn)
        yield {
            "host": url.hostname or "127.0.0.1", "port": url.port or 3306, "user": url.username or "root",
            "password": url.password or "", "database": (url.path or "/shopcrm_test").lstrip("/"),
        }
        return
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    daemon = shutil.which("mariadbd") or shutil.which("mysqld") or (
        "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
    )
    if install is None or daemon is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="shopcrm-my-"))
    data, sock = root / "data", root / "mysqld.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", *user, "--auth-root-authentication-method=normal",
         "--skip-test-db"],
        check=True, capture_output=True,
    )
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [daemon, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
         "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0",
         f"--pid-file={root / 'mysqld.pid'}", *user],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        import pymysql

        deadline = time.monotonic() + 60
        while True:
            try:
                conn = pymysql.connect(host="127.0.0.1", port=port, user="root", charset="utf8mb4")
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"MariaDB did not start: {(root / 'server.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE shopcrm_test CHARACTER SET utf8mb4")
        conn.close()
        yield {"host": "127.0.0.1", "port": port, "user": "root", "password": "", "database": "shopcrm_test"}
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        if process.poll() is None:
            process.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
