"""The catalog on the embedded store: load_products (replace, the history it keeps, refusals), load_product_history,
shop.products(), and the product situations read as events by rules and as scenario triggers."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.errors import CampaignWarning, UnseenEventWarning
from shopcrm.sources.duckdb_store import LoadError

T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                         unsubscribe_url="https://shop.example/u/{customer_id}")


def _history(shop: Shop) -> list[tuple[Any, ...]]:
    return shop.source.con.execute(  # type: ignore[attr-defined, no-any-return]
        "SELECT product_id, ts, price, stock, available FROM product_history ORDER BY product_id, ts").fetchall()


@pytest.fixture
def shop() -> Shop:
    result = Shop.open()
    result.messaging_policy = POLICY
    result.load_customers([{"customer_id": c, "name": "김민서", "phone": "010-1111-2222", "sms_consent": True}
                           for c in ("c1", "c2", "c3")])
    result.load_events([{"customer_id": "c1", "event": "product_viewed", "ts": T0 - timedelta(days=9), "product_id": "P1"}])
    return result


def test_a_product_loaded_again_replaces_its_row_and_only_changes_enter_the_history(shop: Shop) -> None:
    assert shop.schema.products is None
    assert shop.schema.product_history is None
    shop.load_products(pa.table({"product_id": ["P1", "P2"], "name": ["머그", "컵"], "price": [10000, 5000],
                                 "stock": [3, 0], "available": [True, True]}), at=T0)
    shop.load_products([{"product_id": "P1", "name": "머그컵", "price": 10000, "stock": 3, "available": True},
                        {"product_id": "P3", "name": "접시", "price": 7000, "stock": 9}], at=T0 + timedelta(hours=1))
    shop.load_products([{"product_id": "P2", "name": "컵", "price": 4500, "stock": 0, "available": True}],
                       at=T0 + timedelta(hours=2))
    catalog = shop.products()
    assert catalog.column("product_id").to_pylist() == ["P1", "P2", "P3"]
    assert catalog.column("name").to_pylist() == ["머그컵", "컵", "접시"]
    assert _history(shop) == [
        ("P1", T0, 10000.0, 3, True),  # the rename at +1h changed no price, stock or availability
        ("P2", T0, 5000.0, 0, True), ("P2", T0 + timedelta(hours=2), 4500.0, 0, True),
        ("P3", T0 + timedelta(hours=1), 7000.0, 9, None),
    ]
    assert shop.schema.products is not None
    assert shop.schema.products.has("image_url") is False
    assert shop.schema.product_history is not None
    assert shop.schema.product_history.has("stock")


def test_a_change_at_the_same_instant_replaces_that_history_row(shop: Shop) -> None:
    shop.load_products([{"product_id": "P1", "price": 100, "stock": 1}], at=T0)
    shop.load_products([{"product_id": "P1", "price": 90, "stock": 1}], at=T0)
    assert _history(shop) == [("P1", T0, 90.0, 1, None)]


def test_bad_catalog_data_is_refused_whole_with_what_to_do(shop: Shop) -> None:
    shop.load_products([{"product_id": "P1", "price": 100, "stock": 1}], at=T0)
    with pytest.raises(LoadError, match="history only moves forward"):
        shop.load_products([{"product_id": "P1", "price": 90}, {"product_id": "P9", "price": 1}], at=T0 - timedelta(days=1))
    with pytest.raises(LoadError, match=r"product ids must be unique within one load; repeated: 'P2' \(rows 0, 1"):
        shop.load_products([{"product_id": "P2", "price": 1}, {"product_id": "P2", "price": 2}], at=T0)
    with pytest.raises(LoadError, match="no product_id"):
        shop.load_products([{"product_id": None, "price": 1}], at=T0)
    with pytest.raises(LoadError, match="has no 'product_id' column"):
        shop.load_products([{"sku": "x"}], at=T0)
    with pytest.raises(LoadError, match=r"products.price holds BIGINT values.*'cheap'"):
        shop.load_products([{"product_id": "P5", "price": "cheap"}], at=T0 + timedelta(days=1))
    with pytest.raises(LoadError, match="already has a row for 'P1'"):
        shop.load_product_history([{"product_id": "P1", "ts": T0, "price": 5}])
    with pytest.raises(LoadError, match=r"unique within one load.*'P7 at"):
        shop.load_product_history([{"product_id": "P7", "ts": T0, "price": 5}, {"product_id": "P7", "ts": T0, "price": 6}])
    with pytest.raises(LoadError, match=r"product_history\.stock holds BIGINT values"):
        shop.load_product_history([{"product_id": "P7", "ts": T0, "stock": 1.5}])
    assert shop.products().column("product_id").to_pylist() == ["P1"]
    assert _history(shop) == [("P1", T0, 100.0, 1, None)]


def test_a_history_the_shop_already_has_is_appended_with_its_own_types(shop: Shop, tmp_path: Any) -> None:
    path = tmp_path / "history.csv"
    path.write_text("product_id,ts,price,stock,available\nP1,2026-11-01T09:00:00+09:00,1000,5,true\n"
                    "P1,2026-11-02T00:00:00Z,900,0,false\n")
    assert shop.load_product_history(path) == 2
    assert _history(shop) == [("P1", datetime(2026, 11, 1), 1000.0, 5, True), ("P1", datetime(2026, 11, 2), 900.0, 0, False)]
    with pytest.raises(LoadError, match="moves forward"):  # the catalog never rewrites what the history says
        shop.load_products([{"product_id": "P1", "price": 1}], at=datetime(2026, 11, 1, 12))


def _cart_shop(shop: Shop) -> Shop:
    shop.load_products([{"product_id": "P1", "name": "머그", "price": 10000, "stock": 10, "available": True}],
                       at=T0 - timedelta(days=3))
    shop.load_events([
        {"customer_id": "c1", "event": "cart_added", "ts": T0 - timedelta(days=2), "product_id": "P1"},
        {"customer_id": "c2", "event": "cart_added", "ts": T0 - timedelta(days=2), "product_id": "P1"},
        {"customer_id": "c2", "event": "cart_removed", "ts": T0 - timedelta(days=1), "product_id": "P1"},
        {"customer_id": "c3", "event": "wishlist_added", "ts": T0 - timedelta(days=2), "product_id": "P1"},
    ])
    return shop


def test_rules_read_the_product_situations_as_events(shop: Shop) -> None:
    _cart_shop(shop)
    dropped = {"performed": "cart_item_price_dropped", "within": {"last": "7d"}}
    low = {"performed": "wishlist_item_low_stock", "within": {"last": "7d"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnseenEventWarning)
        assert shop.members(dropped, now=T0) == []
        shop.load_products([{"product_id": "P1", "name": "머그", "price": 8900, "stock": 4, "available": True}],
                           at=T0 + timedelta(hours=1))
        assert shop.members(dropped, now=T0 + timedelta(hours=1)) == []  # ts < now only
        later = T0 + timedelta(hours=2)
        assert shop.members(dropped, now=later) == ["c1"]  # c2 removed it before the drop
        assert shop.members(low, now=later) == ["c3"]
        assert shop.count_many([dropped, low, {"performed": "cart_added"}], now=later) == [1, 1, 2]
        deep = {"performed": "cart_item_price_dropped", "where": {"percent": {"gte": 11}, "name": "머그"}}
        assert shop.members(deep, now=later) == ["c1"]
        assert shop.members({"performed": "cart_item_price_dropped", "where": {"percent": {"gte": 12}}}, now=later) == []
        assert shop.members(dropped, now=later + timedelta(days=8)) == []  # out of the window
    situations = shop.product_situations(now=later).to_pylist()
    assert [(r["customer_id"], r["event"], r["old_price"], r["new_price"], r["name"]) for r in situations] == [
        ("c1", "cart_item_price_dropped", 10000.0, 8900.0, "머그"), ("c3", "wishlist_item_low_stock", None, None, "머그")]


def save(shop: Shop, campaign: dict[str, Any]) -> None:
    shop.save_campaign(campaign, now=T0)


def test_a_price_drop_triggers_a_scenario_exactly_once(shop: Shop) -> None:
    _cart_shop(shop)
    with warnings.catch_warnings():  # the checks know the derived events and their columns: no warning
        warnings.simplefilter("error", CampaignWarning)
        save(shop, {
        "id": "price-drop", "purpose": "informational", "channels": ["sms"],
        "variants": [{"name": "a", "content": {
            "text": "{{ event.name }} {{ event.old_price|int }}원 → {{ event.new_price|int }}원 ({{ event.percent|round|int }}% 인하)"}}],
        "schedule": {"kind": "triggered", "on": "cart_item_price_dropped", "steps": [{"send": "drop"}]},
        })
    assert shop.tick(now=T0).messages == ()
    shop.load_products([{"product_id": "P1", "name": "머그", "price": 8000, "stock": 10, "available": True}],
                       at=T0 + timedelta(minutes=5))
    shop.load_products([{"product_id": "P1", "name": "머그", "price": 7000, "stock": 10, "available": True}],
                       at=T0 + timedelta(minutes=6))  # deeper, but the stay's drop already happened
    first = shop.tick(now=T0 + timedelta(minutes=10))
    assert [m.customer_id for m in first.messages] == ["c1"]
    assert first.messages[0].chain[0].text.startswith("머그 10000원 → 8000원 (20% 인하)")
    assert shop.tick(now=T0 + timedelta(minutes=20)).messages == ()
    assert shop.tick(now=T0 + timedelta(hours=5)).messages == ()
    preview = shop.preview("price-drop", now=T0 + timedelta(minutes=30))  # the scenario's audience: its triggers
    assert preview.audience == 1


def _sqlite_shop(path: Any, *, own_names: bool) -> Any:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (customer_id TEXT, name TEXT)")
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT, product_id TEXT)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [("c1", "김민서"), ("c2", "이서준")])
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [
        ("c1", "cart_added", "2026-11-20 00:00:00", "P1"), ("c2", "wishlist_added", "2026-11-20 00:00:00", "P1")])
    catalog, changes = ("items", "item_changes") if own_names else ("products", "product_history")
    sku, price, qty, on_sale, at = ("sku", "sale_price", "qty", "on_sale", "changed_at") if own_names else (
        "product_id", "price", "stock", "available", "ts")
    con.execute(f"CREATE TABLE {catalog} ({sku} TEXT, title TEXT, {price} REAL, {qty} INTEGER, {on_sale} BOOLEAN)")
    con.execute(f"INSERT INTO {catalog} VALUES ('P1', '머그', 8000, 0, 1)")
    con.execute(f"CREATE TABLE {changes} ({sku} TEXT, {at} TEXT, {price} REAL, {qty} INTEGER, {on_sale} BOOLEAN)")
    con.executemany(f"INSERT INTO {changes} VALUES (?, ?, ?, ?, ?)", [
        ("P1", "2026-11-01 00:00:00", 10000, 0, 1), ("P1", "2026-11-21 00:00:00", 9000, 0, 1),
        ("P1", "2026-11-22 00:00:00", 8000, 3, 1)])
    con.commit()
    return con


def test_a_db_api_shop_maps_its_own_catalog_tables(tmp_path: Any) -> None:
    from shopcrm.errors import MappingError
    from shopcrm.mapping import Mapping, ProductHistoryMap, ProductsMap

    con = _sqlite_shop(str(tmp_path / "own.db"), own_names=True)
    mapping = Mapping(products=ProductsMap("items", id="sku", columns={"name": "title", "price": "sale_price",
                                                                        "stock": "qty", "available": "on_sale"}),
                      product_history=ProductHistoryMap("item_changes", id="sku", ts="changed_at",
                                                        columns={"price": "sale_price", "stock": "qty", "available": "on_sale"}))
    assert Mapping.from_dict(mapping.to_dict()) == mapping
    shop = Shop.from_dbapi(con, dialect="sqlite", mapping=mapping)
    assert shop.products().to_pylist() == [{"product_id": "P1", "name": "머그", "price": 8000.0, "stock": 0, "available": 1}]
    now = datetime(2026, 11, 23)
    assert shop.members({"performed": "cart_item_price_dropped"}, now=now) == ["c1"]
    assert shop.members({"performed": "wishlist_item_back_in_stock"}, now=now) == ["c2"]
    drop = shop.product_situations(now=now, names=["cart_item_price_dropped"]).to_pylist()
    assert [(r["ts"], r["old_price"], r["new_price"], r["name"]) for r in drop] == [
        ("2026-11-21 00:00:00", 10000.0, 9000.0, "머그")]  # exactly 10% below counts; one per cart stay
    from shopcrm import ProductSituations

    shop.product_situations_policy = ProductSituations(price_drop_percent=25)  # 20% is not enough any more
    assert shop.members({"performed": "cart_item_price_dropped"}, now=now) == []
    reopened = Shop.from_dbapi(con, dialect="sqlite")  # the saved mapping names the catalog too
    assert reopened.members({"performed": "cart_item_price_dropped"}, now=now) == []  # and the thresholds
    assert reopened.schema.product_history is not None
    assert reopened.schema.product_history.name == "item_changes"
    with pytest.raises(MappingError, match="no table 'goods'"):
        Shop.from_dbapi(con, dialect="sqlite", mapping=Mapping(products=ProductsMap("goods")))
    with pytest.raises(MappingError, match="no column 'price_krw'"):
        Shop.from_dbapi(con, dialect="sqlite", mapping=Mapping(products=ProductsMap("items", id="sku", columns={"price": "price_krw"})))


def test_a_db_api_shop_reads_tables_named_like_the_library_without_a_mapping(tmp_path: Any) -> None:
    con = _sqlite_shop(str(tmp_path / "plain.db"), own_names=False)
    shop = Shop.from_dbapi(con, dialect="sqlite")
    assert shop.schema.products is not None
    assert shop.schema.products.name == "products"
    assert shop.members({"performed": "cart_item_price_dropped"}, now=datetime(2026, 11, 23)) == ["c1"]
    con.execute("DROP TABLE product_history")
    con.execute("DROP TABLE products")
    bare = Shop.from_dbapi(con, dialect="sqlite")
    assert bare.schema.products is None
    assert bare.schema.product_history is None
    with pytest.warns(UnseenEventWarning, match="cart_item_price_dropped"):  # without a history it never occurs
        assert bare.members({"performed": "cart_item_price_dropped"}, now=datetime(2026, 11, 23)) == []


def test_a_catalog_without_stock_leaves_the_history_stock_as_it_was(shop: Shop) -> None:
    shop.load_product_history([{"product_id": "P1", "ts": T0, "price": 100, "stock": 4, "available": True}])
    shop.load_products([{"product_id": "P1", "name": "머그"}], at=T0 + timedelta(hours=1))  # no state at all
    shop.load_products([{"product_id": "P1", "name": "머그", "price": 90}], at=T0 + timedelta(hours=2))
    assert _history(shop) == [("P1", T0, 100.0, 4, True), ("P1", T0 + timedelta(hours=2), 90.0, 4, True)]


def test_the_shop_s_thresholds_apply_to_rules_and_are_saved_with_it(tmp_path: Any) -> None:
    from shopcrm import ProductSituations

    path = tmp_path / "shop.duckdb"
    with Shop.open(path) as stored:
        stored.load_customers([{"customer_id": "c1"}])
        stored.load_products([{"product_id": "P1", "price": 10000, "stock": 10}], at=T0 - timedelta(days=3))
        stored.load_events([{"customer_id": "c1", "event": "cart_added", "ts": T0 - timedelta(days=2), "product_id": "P1"}])
        stored.load_products([{"product_id": "P1", "price": 8500, "stock": 10}], at=T0 - timedelta(days=1))
        dropped = {"performed": "cart_item_price_dropped"}
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnseenEventWarning)
            assert stored.members(dropped, now=T0) == ["c1"]  # 15% >= the default 10%
            stored.product_situations_policy = ProductSituations(price_drop_percent=20)
            assert stored.members(dropped, now=T0) == []
            assert stored.product_situations(now=T0).num_rows == 0
    with Shop.open(path) as reopened, warnings.catch_warnings():
        warnings.simplefilter("error", UnseenEventWarning)
        assert reopened.product_situations_policy == ProductSituations(price_drop_percent=20)
        assert reopened.members(dropped, now=T0) == []
        reopened.product_situations_policy = ProductSituations(price_drop_percent=15)
        assert reopened.members(dropped, now=T0) == ["c1"]  # exactly 15% counts
        assert reopened.product_situations(now=T0).column("percent").to_pylist() == [15.0]


def test_the_profile_shows_the_wish_list(shop: Shop) -> None:
    shop.load_customers([{"customer_id": "w1"}])
    shop.load_events([
        {"customer_id": "w1", "event": "wishlist_added", "ts": T0 - timedelta(days=3), "product_id": "P7"},
        {"customer_id": "w1", "event": "wishlist_added", "ts": T0 - timedelta(days=2), "product_id": "P8"},
        {"customer_id": "w1", "event": "order_completed", "ts": T0 - timedelta(days=1), "product_id": "P8"},  # bought
    ])
    profile = shop.profile("w1", now=T0)
    assert [item.product_id for item in profile.wishlist] == ["P7"]
    assert "wish list:\n    P7" in str(profile)
    assert "<h4>Wish list</h4><ul><li>P7" in profile._repr_html_()
