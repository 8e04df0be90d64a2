"""A shop's own table and column names, declared once: the mapping as a value, the schema checks at
construction, and a mapped SQLite shop answering exactly as the same data under the library's names."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import shopcrm
from mapping_shop import MAPPING, NOW, answers, campaign_run, fill, reference_shop
from shopcrm.compiler import render
from shopcrm.mapping import CustomersMap, EventsMap, Mapping
from shopcrm.schema import ColumnType


def test_a_mapping_survives_json() -> None:
    data = json.loads(json.dumps(MAPPING.to_dict()))
    assert Mapping.from_dict(data) == MAPPING
    assert data["events"] == {"table": "activity_log", "id": "member_no", "name": "event_type", "ts": "occurred_at",
                              "properties": "payload", "columns": {}}
    assert Mapping.from_dict({}) == Mapping() == Mapping(CustomersMap("customers"), EventsMap("events"))
    assert Mapping.from_dict({"events": {"table": "log"}}).events == EventsMap("log")


def test_a_malformed_mapping_says_what_would_be_right() -> None:
    with pytest.raises(ValueError, match=r"events has no key 'nmae' \(did you mean 'name'\?\)"):
        Mapping.from_dict({"events": {"nmae": "event_type"}})
    with pytest.raises(ValueError, match="'member no' is not a valid id column"):
        CustomersMap("members", id="member no")
    with pytest.raises(ValueError, match="not a valid table table name"):
        EventsMap("log; DROP TABLE x")
    with pytest.raises(ValueError, match="maps both 'order_completed' and 'paid' to the shop's 'ORDER_PAID'"):
        Mapping(event_names={"order_completed": "ORDER_PAID", "paid": "ORDER_PAID"})
    with pytest.raises(ValueError, match="several library names to the same column 'x'"):
        CustomersMap(columns={"a": "x", "b": "x"})


def _shop(**kinds: str) -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    fill(connection, "?", **{"id_type": "INTEGER", "json_type": "TEXT", **kinds})
    return connection


def test_a_mapped_sqlite_shop_answers_like_the_library_names(tmp_path: Path) -> None:
    reference = reference_shop()
    shop = shopcrm.Shop.from_dbapi(_shop(), dialect="sqlite", mapping=MAPPING)
    expected = answers(reference)
    assert expected["counts"][1] == 3  # the ORDER_PAID rows are the rule's order_completed
    assert answers(shop) == expected
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sent = campaign_run(shop, tmp_path / "a")
    assert len(sent) == 3
    assert sent == campaign_run(reference, tmp_path / "b")


def test_the_tables_are_read_under_the_library_names() -> None:
    shop = shopcrm.Shop.from_dbapi(_shop(), dialect="sqlite", mapping=MAPPING)
    assert list(shop.schema.customers.columns) == ["customer_id", "grade", "name", "phone", "signed_up_at"]
    assert shop.schema.events.columns["properties"] is ColumnType.STRING
    assert render(shop.schema.events.relation("e"), "sqlite") == (
        '(SELECT "member_no" AS "customer_id", CASE WHEN "event_type" = \'ORDER_PAID\' THEN \'order_completed\' '
        'ELSE "event_type" END AS "event", "occurred_at" AS "ts", "payload" AS "properties", "amount" AS "amount" '
        'FROM "activity_log") AS e'
    )
    assert shop.profile(3, now=NOW).attributes["grade"] == "VIP"
    # a shop under the library's names reads its tables as before: no derived table
    plain = reference_shop()
    assert render(plain.schema.events.relation("e"), "duckdb") == '"events" AS e'


def test_a_shop_column_named_like_a_mapped_library_column_is_hidden() -> None:
    connection = _shop()
    connection.execute("ALTER TABLE activity_log ADD COLUMN event TEXT")
    connection.execute("UPDATE activity_log SET event = 'noise'")
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", mapping=MAPPING)
    assert shop.count({"performed": "noise"}, now=NOW) == 0
    assert shop.count({"performed": "order_completed"}, now=NOW) == 4


def _error(connection: sqlite3.Connection, mapping: Mapping) -> shopcrm.MappingError:
    with pytest.raises(shopcrm.MappingError) as caught:
        shopcrm.Shop.from_dbapi(connection, dialect="sqlite", mapping=mapping)
    assert isinstance(caught.value, shopcrm.SchemaError)
    assert isinstance(caught.value, ValueError)
    return caught.value


def test_a_missing_table_is_found_at_construction() -> None:
    error = _error(_shop(), Mapping(customers=CustomersMap("member", id="member_no"), events=MAPPING.events))
    assert error.path == "customers.table"
    assert str(error).startswith("customers.table: no table 'member' is visible through this sqlite connection "
                                 "(did you mean 'members'?)")


def test_a_missing_column_is_found_at_construction() -> None:
    mapping = Mapping(customers=MAPPING.customers,
                      events=EventsMap("activity_log", id="member_no", name="event_type", ts="occured_at"))
    error = _error(_shop(), mapping)
    assert error.path == "events.ts"
    assert str(error).startswith("events.ts: the events table 'activity_log' has no column 'occured_at' (did you mean "
                                 "'occurred_at'?); its columns are member_no, event_type, occurred_at, payload, amount; "
                                 "name the column that holds 'ts'")
    error = _error(_shop(), Mapping(customers=CustomersMap("members", id="member_no", columns={"grade": "grade"}),
                                    events=MAPPING.events))
    assert error.path == "customers.columns.grade"
    assert "its columns are member_no, member_grade, name, phone, signed_up" in str(error)
    # the library's own name, unmapped and absent
    error = _error(_shop(), Mapping(customers=CustomersMap("members"), events=MAPPING.events))
    assert error.path == "customers.id"
    assert str(error).endswith("the customers table 'members' has no 'customer_id' column; its columns are member_no, "
                               "member_grade, name, phone, signed_up: say which column holds it (customers.id=...)")


def test_customer_ids_of_different_types_compare_by_value_on_sqlite() -> None:
    """SQLite compares a text id with an integer one by value; the check is for the engines that cannot
    (tests/engines/test_mapping_engines.py)."""
    connection = _shop()
    connection.execute("ALTER TABLE members RENAME TO old_members")
    connection.execute("CREATE TABLE members AS SELECT CAST(member_no AS TEXT) AS member_no, member_grade, name, phone, "
                       "signed_up FROM old_members")
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", mapping=MAPPING)
    assert shop.members({"performed": "order_completed", "within": {"last": "30d"}}, now=NOW) == ["1", "2", "3"]


def test_a_properties_column_without_json_is_found_at_construction() -> None:
    error = _error(_shop(json_type="INTEGER"), MAPPING)
    assert error.path == "events.properties"
    assert "the properties column activity_log.payload is INTEGER, which holds no JSON" in str(error)


def test_tables_are_named_once() -> None:
    with pytest.raises(ValueError, match="either with customers=/events= or in the mapping"):
        shopcrm.Shop.from_dbapi(_shop(), dialect="sqlite", customers="members", mapping=MAPPING)
    # the old arguments still work, and check the same way when asked
    shop = shopcrm.Shop.from_dbapi(_shop(), dialect="sqlite", customers="members", events="activity_log")
    with pytest.raises(shopcrm.MappingError, match="has no 'customer_id' column"):
        shop.count({"everyone": True}, now=NOW)


def test_property_columns_and_types_are_renamed_by_the_library_names() -> None:
    connection = sqlite3.connect(":memory:")
    connection.executescript("""
        CREATE TABLE members (member_no INTEGER, joined TEXT);
        CREATE TABLE activity_log (member_no INTEGER, event_type TEXT, occurred_at TEXT, total_krw INTEGER);
        INSERT INTO members VALUES (1, '2026-03-01 00:00:00'), (2, '2025-01-01 00:00:00');
        INSERT INTO activity_log VALUES (1, 'ORDER_PAID', '2026-03-05 10:00:00', 30000),
                                        (1, 'ORDER_PAID', '2026-03-06 10:00:00', 20000),
                                        (2, 'ORDER_PAID', '2026-03-07 10:00:00', 9000);
    """)
    mapping = Mapping(
        customers=CustomersMap("members", id="member_no", columns={"signed_up_at": "joined"}),
        events=EventsMap("activity_log", id="member_no", name="event_type", ts="occurred_at",
                         columns={"amount": "total_krw"}),
        event_names={"order_completed": "ORDER_PAID"},
    )
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", mapping=mapping, types={"signed_up_at": "timestamp"})
    assert shop.schema.customers.columns["signed_up_at"] is ColumnType.TIMESTAMP
    assert shop.members({"attribute": "signed_up_at", "ago": {"lt": "30d"}}, now=NOW) == [1]
    assert shop.members({"aggregate": "sum", "of": "amount", "performed": "order_completed", "gte": 40000}, now=NOW) == [1]
    assert {r.customer_id: r.monetary for r in shop.lifecycle_rows(now=NOW)} == {1: 50000, 2: 9000}
    assert shop.source.mapping == mapping


def test_the_mapping_is_saved_with_the_shop_and_read_back_by_a_later_open(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    fill(connection, "?", id_type="INTEGER", json_type="TEXT")
    connection.commit()
    expected = answers(shopcrm.Shop.from_dbapi(connection, dialect="sqlite", mapping=MAPPING))
    connection.close()
    again = shopcrm.Shop.from_dbapi(sqlite3.connect(path), dialect="sqlite")  # no mapping given: the saved one
    assert again.source.mapping == MAPPING  # type: ignore[attr-defined]
    assert answers(again) == expected
    through_url = shopcrm.connect(f"sqlite:///{path}")  # and so does the CLI's --db URL
    assert answers(through_url) == expected
