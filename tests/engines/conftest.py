"""Engines for the differential tests; servers are started once per test session.

Without an engine's binaries the tests skip locally, but fail when ``CI`` is set:
a CI run that silently skips its engines proves nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engines import servers
from engines.loaders import MySQLLoader, PostgresLoader, SparkLoader


def _unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not available, and CI must run every engine; install it (.ci/run does)")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="session")
def postgres_loader() -> Iterator[PostgresLoader]:
    psycopg = pytest.importorskip("psycopg") if not os.environ.get("CI") else __import__("psycopg")
    with servers.postgres_server() as params:
        if params is None:
            _unavailable("PostgreSQL (Debian package postgresql)")
        conn = psycopg.connect(**params)
        try:
            yield PostgresLoader(conn)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def mysql_loader() -> Iterator[MySQLLoader]:
    pymysql = pytest.importorskip("pymysql") if not os.environ.get("CI") else __import__("pymysql")
    with servers.mysql_server() as params:
        if params is None:
            _unavailable("MariaDB/MySQL (Debian package mariadb-server)")
        conn = pymysql.connect(**params, charset="utf8mb4", autocommit=False)
        try:
            yield MySQLLoader(conn)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def spark_loader() -> Iterator[SparkLoader]:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _unavailable("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("Java 17 (Debian package openjdk-17-jre-headless)")
    os.environ["TZ"] = "UTC"
    time.tzset()
    spark: Any = (
        SparkSession.builder.master("local[1]")
        .appName("shopcrm-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.ansi.enabled", "false")
        # The tests' tables hold a few rows and each test runs hundreds of small queries: compiling Java
        # for each query (whole-stage and expression code generation, the JIT's top tier) costs more than
        # it saves, so the tests' Spark interprets (the same SQL semantics; a third less time in CI).
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC -XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield SparkLoader(spark)
    finally:
        spark.stop()
