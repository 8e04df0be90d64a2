"""The notebook helpers (members_frame, breakdown, overlap, count_many with names, trend) agree with
shop.count and shop.members on PostgreSQL and MariaDB too."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from engines.loaders import MySQLLoader, PostgresLoader
from strategies import RandomShop, rules, shops
from test_notebook import check_helpers

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
