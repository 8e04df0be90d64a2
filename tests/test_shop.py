"""The Shop facade: named segments, explain, count_many, to_sql."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import shopcrm
from shopcrm.dsl import attr, did

NOW = datetime(2026, 3, 10)


@pytest.fixture
def shop() -> shopcrm.Shop:
    s = shopcrm.Shop.open()
    s.load_customers([{"customer_id": f"c{i}", "age": 18 + i * 3, "grade": "VIP" if i % 4 == 0 else "일반"} for i in range(12)])
    s.load_events([
        {"customer_id": f"c{i}", "event": "order_completed", "ts": NOW - timedelta(days=i), "amount": 10000 * i}
        for i in range(1, 12)
    ] + [{"customer_id": f"c{i}", "event": "product_viewed", "ts": NOW - timedelta(hours=i), "category": "shoes"} for i in range(6)])
    return s


def test_counts_members_and_count_many_agree_with_the_reference(shop: shopcrm.Shop) -> None:
    rules = [
        did("order_completed").within("7d"),
        attr("age").between(20, 39) & ~did("product_viewed"),
        {"aggregate": "sum", "of": "amount", "performed": "order_completed", "gte": 50000},
        {"everyone": True},
    ]
    customers = [{"customer_id": f"c{i}", "age": 18 + i * 3} for i in range(12)]
    events = [
        {"customer_id": f"c{i}", "event": "order_completed", "ts": NOW - timedelta(days=i), "amount": 10000 * i} for i in range(1, 12)
    ] + [{"customer_id": f"c{i}", "event": "product_viewed", "ts": NOW - timedelta(hours=i), "category": "shoes"} for i in range(6)]
    expected = [shopcrm.evaluate(r, customers, events, now=NOW) for r in rules]
    assert shop.count_many(rules, now=NOW) == [len(e) for e in expected]
    for rule, members in zip(rules, expected, strict=True):
        assert shop.members(rule, now=NOW) == sorted(members)
        assert shop.count(rule, now=NOW) == len(members)
    assert shop.count_many([], now=NOW) == []


def test_segments_resolve_reject_cycles_and_protect_their_users(shop: shopcrm.Shop) -> None:
    shop.save_segment("buyers", did("order_completed"))
    shop.save_segment("vip_buyers", {"and": [{"in_segment": "buyers"}, {"attribute": "grade", "eq": "VIP"}]})
    assert shop.members({"in_segment": "vip_buyers"}, now=NOW) == ["c4", "c8"]
    with pytest.raises(shopcrm.SegmentCycleError, match="buyers -> vip_buyers -> buyers"):
        shop.save_segment("buyers", {"in_segment": "vip_buyers"})
    assert shop.segment("buyers") == did("order_completed").to_rule()  # unchanged by the refused save
    with pytest.raises(shopcrm.RuleError, match="used by vip_buyers"):
        shop.delete_segment("buyers")
    shop.delete_segment("vip_buyers")
    shop.delete_segment("buyers")
    assert shop.segments() == []
    with pytest.raises(KeyError, match="no segment named 'buyers'"):
        shop.segment("buyers")


@pytest.mark.parametrize("name", ["", " padded", "x" * 101, "tab\there"])
def test_segment_names_are_checked(shop: shopcrm.Shop, name: str) -> None:
    with pytest.raises(ValueError, match="is not a segment name"):
        shop.save_segment(name, {"everyone": True})


def test_saving_checks_fields_against_the_tables(shop: shopcrm.Shop) -> None:
    with pytest.raises(shopcrm.SchemaError, match="no column 'colour'"):
        shop.save_segment("bad", {"performed": "x", "where": {"colour": "red"}})
    assert shop.segments() == []


def test_explain_counts_every_node_in_one_query(shop: shopcrm.Shop) -> None:
    rule = {"and": [{"performed": "product_viewed", "where": {"category": "shoes"}},
                    {"not": {"attribute": "grade", "eq": "VIP"}}]}
    explanation = shop.explain(rule, now=NOW)
    assert explanation.total == 12
    assert explanation.count == shop.count(rule, now=NOW) == 4
    first, negation = explanation.children
    assert (first.path, first.count) == ("and[0]", 5)  # c0 viewed exactly at now: not yet
    assert (negation.path, negation.count, negation.children[0].path, negation.children[0].count) == ("and[1]", 9, "and[1].not", 3)
    text = str(explanation)
    assert "performed product_viewed where category = 'shoes'" in text
    assert "41.7%)" in text
    html = explanation._repr_html_()
    assert "<details>" in html
    assert "&#x27;shoes&#x27;" in html
    assert "<script" not in html
    assert explanation.to_dict()["children"][1]["children"][0]["count"] == 3


def test_to_sql_uses_the_shop_dialect_or_another(shop: shopcrm.Shop) -> None:
    assert '"customers" AS c' in shop.to_sql({"attribute": "age", "gt": 1}, now=NOW)
    assert "`customers` AS c" in shop.to_sql({"attribute": "age", "gt": 1}, now=NOW, dialect="mysql")


def test_loading_into_a_foreign_database_is_refused() -> None:
    import sqlite3

    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (customer_id TEXT)")
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT)")
    with pytest.raises(TypeError, match="needs the embedded DuckDB shop"):
        shopcrm.Shop.from_dbapi(con, dialect="sqlite").load_customers([{"customer_id": "a"}])


@pytest.mark.parametrize(("ids", "given", "stored"), [([1, 2], "1", 1), (["1", "2"], 1, "1"), ([1, 2], 1.0, 1), (["a", "b"], "a", "a")])
def test_an_opt_out_takes_the_customers_table_id_type(ids: list[object], given: object, stored: object) -> None:
    from shopcrm.campaigns import MessagingPolicy

    shop = shopcrm.Shop.open()
    shop.messaging_policy = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
    shop.load_customers([{"customer_id": i, "phone": "010-1111-2222", "sms_consent": True} for i in ids])
    shop.record_opt_out(given, "sms", at=datetime(2026, 11, 1))
    assert shop.source.campaign_store().opt_outs() == {stored: {"sms": datetime(2026, 11, 1)}}
    shop.save_campaign({
        "id": "sale", "purpose": "advertising", "channels": ["sms"], "variants": [{"name": "a", "content": {"text": "세일"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    }, now=datetime(2026, 11, 24))
    result = shop.tick(now=datetime(2026, 11, 25, 1))
    assert {s.customer_id: s.reason for s in result.suppressions} == {stored: "opted_out"}
    assert [m.customer_id for m in result.messages] == [ids[1]]


def test_an_opt_out_for_no_customer_is_refused() -> None:
    shop = shopcrm.Shop.open()
    with pytest.raises(KeyError, match="no customers table"):
        shop.record_opt_out("c1")
    shop.load_customers([{"customer_id": 1}, {"customer_id": 2}])
    with pytest.raises(KeyError, match=r"no customer 3 in 'customers'"):
        shop.record_opt_out(3)
    with pytest.raises(KeyError, match=r"no customer 'c1': the ids in 'customers' are integers"):
        shop.record_opt_out("c1")
    with pytest.raises(KeyError, match="True is not a customer id"):
        shop.record_opt_out(True)
    assert shop.source.campaign_store().opt_outs() == {}
