"""The notebook helpers (members_frame, breakdown, overlap, count_many with names, trend) agree with
shop.count and shop.members on PostgreSQL and MariaDB too."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from engines.loaders import MySQLLoader, PostgresLoader
from strategies import RandomShop, rules, shops
from test_notebook import check_helpers

NOW = datetime(2026, 3, 1)
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.postgres
@SETTINGS
@given(data=shops(max_customers=8, max_events=25), rule=rules(max_depth=2), other=rules(max_depth=1))
def test_postgres(postgres_loader: PostgresLoader, data: RandomShop, rule: Any, other: Any) -> None:
    check_helpers(postgres_loader(data), data, rule, other)


@pytest.mark.mysql
@SETTINGS
@given(data=shops(max_customers=8, max_events=25), rule=rules(max_depth=2), other=rules(max_depth=1))
def test_mysql(mysql_loader: MySQLLoader, data: RandomShop, rule: Any, other: Any) -> None:
    check_helpers(mysql_loader(data), data, rule, other)


def _cased_shop() -> RandomShop:
    """Grades that differ only by case or a trailing space: MySQL's default collation would fold them."""
    from strategies import _schema

    grades = ["A", "a", "a ", "A", None]
    customers = [{"customer_id": f"c{i}", "age": None, "grade": g, "score": None, "vip": None, "signed_up_at": None}
                 for i, g in enumerate(grades)]
    return RandomShop(customers=customers, events=[], now=NOW, id_kind="str", schema=_schema("str"))


@pytest.mark.mysql
def test_a_mysql_breakdown_keeps_values_that_differ_only_by_case_or_padding(mysql_loader: MySQLLoader) -> None:
    shop = mysql_loader(_cased_shop())
    found = shop.breakdown({"everyone": True}, "grade", now=NOW).to_dict()
    assert found == {"A": 2, "a": 1, "a ": 1, None: 1}


@pytest.mark.postgres
def test_a_postgres_breakdown_keeps_values_that_differ_only_by_case_or_padding(postgres_loader: PostgresLoader) -> None:
    shop = postgres_loader(_cased_shop())
    assert shop.breakdown({"everyone": True}, "grade", now=NOW).to_dict() == {"A": 2, "a": 1, "a ": 1, None: 1}

