"""The grouped preview on PostgreSQL (its MD5 buckets, SHA-256 line, ``TRIM`` of white space and ``C`` text order)
equals the per-customer preview on random customers tables, as on DuckDB and SQLite
(``tests/campaigns/test_preview_sql.py``)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from preview_shops import COLUMNS, _compare, _extras, campaigns, policies, tables
from shopcrm.campaigns import Campaign, MessagingPolicy


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(campaigns(), policies(), tables(), st.data())
def test_postgres_groups_equal_the_per_customer_preview(
    postgres_loader: Any, campaign: Campaign, policy: MessagingPolicy, rows: list[tuple[Any, ...]], data: st.DataObject,
) -> None:
    ledger, outs = _extras(data.draw, rows)
    connection = postgres_loader.con
    cursor = connection.cursor()
    # the library's opt-outs too: the per-customer preview reads them, and other engine tests on this server
    # record some (a customer "c4" opted out of Kakao made the two previews differ only after those tests)
    for table in ("pg_customers", "pg_events", "shopcrm_opt_outs"):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute("CREATE TABLE pg_customers (customer_id TEXT, name TEXT, phone TEXT, email TEXT, kakao_friend BOOLEAN, "
                   "night_consent BOOLEAN, sms_consent BOOLEAN, kakao_consent BOOLEAN, timezone TEXT)")
    cursor.execute("CREATE TABLE pg_events (customer_id TEXT, event TEXT, ts TIMESTAMP)")
    cursor.executemany(f"INSERT INTO pg_customers VALUES ({', '.join(['%s'] * len(COLUMNS))})", rows)
    cursor.close()
    connection.commit()
    shop = shopcrm.Shop.from_dbapi(connection, dialect="postgres", customers="pg_customers", events="pg_events")
    try:
        _compare(shop, campaign, policy, ledger, outs)
    finally:  # the server is shared by the engine tests: leave the default policy behind
        shop.messaging_policy = MessagingPolicy()
