"""A durable store beside any engine (issue 15): a SQLite shop whose library tables live in another SQLite file or
a DuckDB file lives the same life as the embedded shop, and a second Shop over the same store sees it all."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

import shopcrm
from shopcrm.report_sql import can_compute
from shopcrm.sources._store import Store, library_beside, library_of, store_from
from store_scenario import T0, check, embedded, live, sqlite_shop_file


def _with_store(tmp_path: Path, store: str) -> Callable[[], shopcrm.Shop]:
    data = sqlite_shop_file(tmp_path / "shop.db")

    def make() -> shopcrm.Shop:
        return shopcrm.Shop.connect(f"sqlite:///{data}", store=store)

    return make


@pytest.mark.parametrize("kind", ["sqlite", "duckdb"])
def test_a_sqlite_shop_keeps_its_library_tables_in_another_file_and_lives_as_the_embedded_one(
    tmp_path: Path, kind: str,
) -> None:
    (tmp_path / "reference").mkdir()
    reference = live(embedded(tmp_path / "reference"), tmp_path / "reference")
    check(reference)
    store = f"sqlite:///{tmp_path / 'crm.db'}" if kind == "sqlite" else str(tmp_path / "crm.duckdb")
    seen = live(_with_store(tmp_path, store), tmp_path)
    check(seen)
    for name in reference:
        if name not in ("report", "message_events"):
            assert seen[name] == reference[name], name
    # the embedded shop writes outcomes into its events table; a store keeps them in shopcrm_message_events
    assert reference["message_events"] == []
    assert seen["message_events"] == [("c0", "message_delivered"), ("c0", "message_sent"), ("c1", "message_sent"),
                                      ("c2", "message_sent"), ("c3", "message_sent")]
    # the report computes in Python over the store, and says the same as the embedded shop's SQL
    assert [dict(r) for r in seen["report"]] == [dict(r) for r in reference["report"]]
    # nothing was written beside the shop's own tables
    tables = {r[0] for r in sqlite3.connect(tmp_path / "shop.db").execute("SELECT name FROM sqlite_master")}
    assert tables == {"customers", "events"}


def test_the_library_tables_are_beside_the_events_only_on_one_connection(tmp_path: Path) -> None:
    data = sqlite_shop_file(tmp_path / "shop.db")
    connection = sqlite3.connect(data)
    plain = shopcrm.Shop.from_dbapi(connection, dialect="sqlite")
    assert library_beside(plain.source) is not None
    assert can_compute(plain)
    apart = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", store=f"sqlite:///{tmp_path / 'crm.db'}")
    assert library_beside(apart.source) is None
    assert library_of(apart.source) is apart.source.store.library  # type: ignore[union-attr]
    assert not can_compute(apart)  # the report reads the store, not a join across two databases
    with pytest.raises(ValueError, match="method='reference'"):
        apart.report(now=T0, method="sql")
    same = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", store=Store(connection, dialect="sqlite",
                                                                              library_prefix="crm_"))
    beside = library_beside(same.source)
    assert beside is not None
    assert beside.tables.prefix == "crm_"
    assert can_compute(same)
    apart.close()


def test_settings_and_the_saved_mapping_live_in_the_store(tmp_path: Path) -> None:
    from shopcrm.campaigns import MessagingPolicy
    from shopcrm.mapping import CustomersMap, EventsMap, Mapping
    from shopcrm.products import ProductSituations

    data = sqlite_shop_file(tmp_path / "shop.db")
    store = f"sqlite:///{tmp_path / 'crm.db'}"
    connection = sqlite3.connect(data)
    connection.execute("ALTER TABLE customers RENAME TO members")
    connection.commit()
    policy = MessagingPolicy(sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000")
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", mapping=Mapping(CustomersMap("members"), EventsMap()),
                                   store=store)
    shop.messaging_policy = policy
    shop.product_situations_policy = ProductSituations(low_stock=3)
    shop.close()
    again = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", store=store)
    assert again.messaging_policy == policy
    assert again.product_situations_policy == ProductSituations(low_stock=3)
    assert again.count({"attribute": "grade", "eq": "VIP"}, now=T0) == 3  # the saved mapping names "members"
    saved = sqlite3.connect(tmp_path / "crm.db").execute("SELECT name FROM shopcrm_settings ORDER BY name").fetchall()
    assert [r[0] for r in saved] == ["library", "mapping", "messaging_policy", "product_situations"]


@pytest.mark.parametrize(("store", "message"), [
    ("oracle://db/crm", "unknown database URL scheme 'oracle'.*postgresql://, mysql://, sqlite:/// or duckdb:///"),
    ("sqlite://host/crm.db", "name a file, not a host"),
    ("postgresql://user:secret@localhost:1/", r"user:\*\*\*@localhost:1/' names no database"),
    ("sqlite:///crm.db?prefix=x", "unknown URL parameter 'prefix'; the URL may set library_schema, library_prefix"),
])
def test_a_bad_store_url_says_what_was_wrong_and_what_is_accepted(tmp_path: Path, store: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store_from(store)


def test_a_store_needs_a_known_dialect_and_a_connection() -> None:
    with pytest.raises(ValueError, match=r"dialect 'oracle'; use one of postgres, mysql \(or mariadb\), sqlite or duckdb"):
        Store(sqlite3.connect(":memory:"), dialect="oracle")
    with pytest.raises(TypeError, match=r"wrap an open connection as shopcrm.Store\(connection, dialect='postgres'\)"):
        store_from(sqlite3.connect(":memory:"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a duckdb store needs a duckdb connection"):
        Store(sqlite3.connect(":memory:"), dialect="duckdb")
    with pytest.raises(TypeError, match="needs an open DB-API connection"):
        Store("crm.db", dialect="sqlite")


def test_a_source_with_library_tables_of_its_own_takes_no_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keeps the library's tables itself"):
        shopcrm.Shop.from_source(shopcrm.Shop.open().source, store=str(tmp_path / "crm.duckdb"))
    with pytest.raises(ValueError, match="the embedded DuckDB shop keeps the library's tables in its own file"):
        shopcrm.Shop.connect(f"duckdb:///{tmp_path / 'shop.duckdb'}", store=str(tmp_path / "crm.duckdb"))


def test_a_store_over_an_open_duckdb_connection_is_left_open(tmp_path: Path) -> None:
    connection = duckdb.connect(str(tmp_path / "crm.duckdb"))
    store = Store(connection, dialect="duckdb")
    data = sqlite_shop_file(tmp_path / "shop.db")
    shop = shopcrm.Shop.from_dbapi(sqlite3.connect(data), dialect="sqlite", store=store)
    shop.save_segment("vip", {"attribute": "grade", "eq": "VIP"}, now=T0)
    shop.close()
    rows: list[Any] = connection.execute("SELECT name FROM shopcrm_segments").fetchall()
    assert rows == [("vip",)]
    assert repr(store) == "Store(duckdb, tables shopcrm_*)"


@given(st.one_of(st.text(), st.integers(), st.sampled_from(['a"b', "a\\b", "\x7f", "김민서", "c\tt"])))
def test_a_customer_id_is_stored_as_its_json_text(customer_id: object) -> None:
    """The library's tables keep a customer id as ``json.dumps`` writes it; plain text takes a shorter way there."""
    from shopcrm.sources._library import stored_id

    assert stored_id(customer_id) == json.dumps(customer_id)
