"""Developer sessions: tests, lint, typecheck, bench, docs, and one per server engine."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite: every engine (PostgreSQL and MariaDB start themselves)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def postgres(session: nox.Session) -> None:
    """Only the PostgreSQL differential tests."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "postgres", *session.posargs)


@nox.session(python=PYTHON)
def mysql(session: nox.Session) -> None:
    """Only the MySQL/MariaDB differential tests."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "mysql", *session.posargs)


@nox.session(python=PYTHON)
def spark(session: nox.Session) -> None:
    """Only the Spark differential tests (needs Java 17)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "spark", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, and the import-linter contract that keeps the core free of I/O."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks at 1M customers / ~11M events (pass --scale N or --quick)."""
    session.install("-e", ".[dev,bench]")
    args = session.posargs or ["--scale", "1000000"]
    session.run("python", "benchmarks/bench_segments.py", *args)
    session.run("python", "benchmarks/bench_lifecycle.py", *args)
    session.run("python", "benchmarks/bench_planner.py", *args)
    session.run("python", "benchmarks/bench_ticks.py", *args)  # issue 15: watermark ticks
    session.run("python", "benchmarks/bench_preview.py", *args)
    session.run("python", "benchmarks/bench_report.py", *args)
    session.run("python", "benchmarks/bench_recommend.py", *args)  # issue 14: recommendations
    session.run("python", "benchmarks/bench_membership.py", *(["--quick"] if "--quick" in args else []))  # issue 15
    session.run("python", "benchmarks/bench_dispatch.py", *(["--quick"] if "--quick" in args else []))
    session.run("python", "benchmarks/bench_spark.py", *(["--quick"] if "--quick" in args else []))  # issue 15


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (broken links fail)."""
    session.install("-e", ".", "mkdocs-material", "mkdocs<2")
    session.run("mkdocs", "build", "--strict")
