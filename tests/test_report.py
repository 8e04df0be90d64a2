"""The campaign report (``shop.report``): an embedded DuckDB shop and a SQLite DB-API shop with one campaign of two
variants and a 30% holdout, sent through a scripted channel (some AlimTalks fall back to LMS), clicked, bought from
and opted out of; every figure is checked against hand-computed values and against the pure reference."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from shopcrm import CampaignReport, Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import KINDS, Accepted, Channel, Message, Rejected, SendResult
from shopcrm.cli import main
from shopcrm.dispatching import Dispatcher
from shopcrm.measurement import Click, Send, attribute, summarise
from shopcrm.measurement.stats import RevenueStats

T0 = datetime(2026, 11, 25, 1)  # the send time: 10:00 in Seoul
NOW = T0 + timedelta(days=7, hours=1)
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
ORDER = {"text": "{{ name }}님, 주문하신 겨울 외투가 오늘 출고되었습니다. 배송 조회는 마이페이지에서 하실 수 있습니다. "
                 "문의는 고객센터로 연락 주세요.",
         "alimtalk": {"template_code": "O1", "body": "#{고객명}님, 주문 출고", "variables": {"고객명": "{{ name }}"}}}
CAMPAIGN = {"id": "spring", "purpose": "informational", "channels": ["alimtalk", "sms"], "holdout_percent": 30,
            "variants": [{"name": "A", "content": ORDER}, {"name": "B", "content": ORDER}],
            "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}
PEOPLE = [{"customer_id": f"c{i}", "name": "김민서", "phone": f"010-0000-{i:04d}", "sms_consent": True,
           "kakao_consent": True, "kakao_friend": True, "night_consent": False} for i in range(20)]


class Scripted(Channel):
    name = "scripted"
    kinds = KINDS

    def __init__(self, answer: Callable[[Message], SendResult]) -> None:
        self.answer = answer

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return [self.answer(m) for m in batch]


def _plan_and_send(shop: Shop) -> tuple[list[str], list[str]]:
    """Tick and dispatch; the treated customers' first four AlimTalks fall back to LMS.  Returns (treated, held out)."""
    shop.messaging_policy = POLICY
    shop.save_campaign(CAMPAIGN, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    rows = shop.outbox(status=None)
    treated = sorted((r.customer_id for r in rows if r.status == "planned"), key=lambda c: int(c[1:]))
    held = sorted((r.customer_id for r in rows if r.status == "holdout"), key=lambda c: int(c[1:]))
    falls = set(treated[:4])
    kakao = Scripted(lambda m: Rejected("카카오톡 미사용자", code="3104") if m.customer_id in falls else Accepted(provider_id="k"))
    texts = Scripted(lambda m: Accepted(provider_id="s"))
    asyncio.run(Dispatcher(shop, {"alimtalk": kakao, "sms": texts}, clock=lambda: T0, seed=1).run())
    return treated, held


def _keys(shop: Shop) -> dict[str, str]:
    return {r.customer_id: r.key for r in shop.source.campaign_store().sends()}


def _activity(treated: list[str], held: list[str], keys: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(clicks, conversion events): see the hand computation in ``test_the_report_equals_the_hand_computed_figures``."""
    t = treated
    clicks = [
        {"customer_id": t[0], "event": "message_clicked", "ts": T0 + timedelta(hours=1), "message_key": keys[t[0]], "campaign_id": "spring"},
        {"customer_id": t[0], "event": "message_clicked", "ts": T0 + timedelta(hours=2), "message_key": keys[t[0]], "campaign_id": "spring"},
        {"customer_id": t[1], "event": "message_clicked", "ts": T0 + timedelta(hours=2), "message_key": keys[t[1]], "campaign_id": "spring"},
        # before its message was sent: not a click
        {"customer_id": t[2], "event": "message_clicked", "ts": T0 - timedelta(hours=1), "message_key": keys[t[2]], "campaign_id": "spring"},
    ]
    orders = [
        (t[0], T0 + timedelta(hours=3), 50000.0, "o1"),
        (t[0], T0 + timedelta(hours=3, minutes=5), 50000.0, "o1"),  # the same order again: one conversion
        (t[1], T0 + timedelta(days=6), 20000.0, "o2"),  # after the click window, inside the measurement window
        (t[2], T0 + timedelta(hours=2), 10000.0, "o3"),  # no click; inside the LMS's 12-hour receipt window
        (t[5], T0 + timedelta(hours=30), 15000.0, "o4"),  # after the AlimTalk's 1-day receipt window
        (held[0], T0 + timedelta(days=1), 30000.0, "o5"),
        (held[1], T0 + timedelta(days=8), 99000.0, "o6"),  # after now
        (t[6], T0 - timedelta(days=3), 7000.0, "o7"),  # before the campaign
        # an order first recorded before the send, recorded again after it: one conversion, before the send (not
        # credited, not in t[7]'s measurement window), also in a report whose range starts between the two
        (t[7], T0 - timedelta(hours=1), 8000.0, "o8"),
        (t[7], T0 + timedelta(hours=1), 8000.0, "o8"),
    ]
    return clicks, [{"customer_id": c, "event": "order_completed", "ts": ts, "amount": a, "order_id": o}
                    for c, ts, a, o in orders]


def _embedded() -> tuple[Shop, list[str], list[str]]:
    shop = Shop.open()
    shop.load_customers(PEOPLE)
    shop.load_events([{"customer_id": "c0", "event": "page_viewed", "ts": T0 - timedelta(days=30), "amount": None,
                       "order_id": None}])
    treated, held = _plan_and_send(shop)
    clicks, orders = _activity(treated, held, _keys(shop))
    shop.load_events(clicks + orders)
    shop.record_opt_out(treated[3], "kakao", at=T0 + timedelta(days=2))
    shop.record_opt_out(held[1], "all", at=T0 + timedelta(days=2))  # never sent anything: not fatigue
    return shop, treated, held


def _sqlite() -> tuple[Shop, list[str], list[str]]:
    con = sqlite3.connect(":memory:", check_same_thread=False)
    con.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT, sms_consent BOOLEAN, "
                "kakao_consent BOOLEAN, kakao_friend BOOLEAN, night_consent BOOLEAN)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", [tuple(p.values()) for p in PEOPLE])
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP, amount REAL, order_id TEXT, "
                "message_key TEXT, campaign_id TEXT)")
    con.commit()
    shop = Shop.from_dbapi(con, dialect="sqlite")
    treated, held = _plan_and_send(shop)
    clicks, orders = _activity(treated, held, _keys(shop))
    columns = ("customer_id", "event", "ts", "amount", "order_id", "message_key", "campaign_id")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [tuple(e["ts"].isoformat(sep=" ") if c == "ts" else e.get(c) for c in columns) for e in clicks + orders])
    con.commit()
    shop.record_opt_out(treated[3], "kakao", at=T0 + timedelta(days=2))
    shop.record_opt_out(held[1], "all", at=T0 + timedelta(days=2))
    return shop, treated, held


@pytest.fixture(scope="module")
def embedded() -> tuple[Shop, list[str], list[str]]:
    return _embedded()


def test_the_report_equals_the_hand_computed_figures(embedded: tuple[Shop, list[str], list[str]]) -> None:
    shop, treated, held = embedded
    assert (len(treated), len(held)) == (15, 5)
    report = shop.report("spring", now=NOW)
    assert isinstance(report, CampaignReport)
    row = report.row("spring")
    cost = 4 * 39 + 11 * 10  # four LMS fallbacks, eleven AlimTalks
    assert {k: row[k] for k in ("audience", "held_out", "planned", "sent", "delivered", "fallen_back", "failed",
                                "recipients", "clicked")} == {
        "audience": 20, "held_out": 5, "planned": 15, "sent": 15, "delivered": 0, "fallen_back": 4, "failed": 0,
        "recipients": 15, "clicked": 2}
    assert row["ctr"] == pytest.approx(2 / 15)
    # attributed: only treated[0]'s order follows a click within 5 days (treated[1]'s comes 6 days after)
    assert (row["attributed_conversions"], row["attributed_revenue"]) == (1, 50000.0)
    # influenced: treated[0] (3 h after an LMS) and treated[2] (2 h after an LMS); treated[5]'s is 30 h after an AlimTalk
    assert (row["influenced_conversions"], row["influenced_revenue"]) == (2, 60000.0)
    assert row["cost"] == cost
    assert row["roas"] == pytest.approx(50000 / cost)
    assert row["cost_per_conversion"] == cost
    assert row["messages_per_purchase"] == 15
    assert row["opt_outs_after"] == 1
    # the holdout lift: within 7 days of exposure treated[0, 1, 2, 5] bought, and held[0]
    lift = report.lifts["spring"]
    assert (lift.treated_n, lift.treated_conversions, lift.holdout_n, lift.holdout_conversions) == (15, 4, 5, 1)
    assert lift.treated_revenue == RevenueStats.from_values([50000, 20000, 10000, 15000] + [0] * 11)
    assert lift.holdout_revenue == RevenueStats.from_values([30000, 0, 0, 0, 0])
    assert lift.lift is not None
    assert lift.srm is not None
    assert lift.lift.absolute_lift == pytest.approx(4 / 15 - 1 / 5)
    assert lift.lift.incremental_revenue == pytest.approx((95000 / 15 - 30000 / 5) * 15)
    assert lift.lift.iroas == pytest.approx((95000 / 15 - 30000 / 5) * 15 / cost)
    assert lift.srm.holdout_share == 0.3
    assert not lift.srm.mismatch
    assert row["absolute_lift"] == pytest.approx(4 / 15 - 1 / 5)
    assert row["srm_p_value"] == pytest.approx(lift.srm.p_value)


def test_the_report_equals_the_pure_reference(embedded: tuple[Shop, list[str], list[str]]) -> None:
    shop, treated, held = embedded
    keys = _keys(shop)
    ledger = {r.key: r for r in shop.source.campaign_store().sends()}
    variants = {r.key: r.variant for r in shop.outbox()}
    sends = [Send(message_key=k, customer_id=r.customer_id, campaign_id="spring", variant=variants[k], step="main",
                  channel=r.channel, kind=r.kind, sent_at=T0, cost=r.cost) for k, r in ledger.items()]
    clicks, orders = _activity(treated, held, keys)
    credits = attribute(sends, [Click(message_key=c["message_key"], clicked_at=c["ts"]) for c in clicks],
                        [{**o, "properties": {"amount": o["amount"], "order_id": o["order_id"]}} for o in orders if o["ts"] < NOW])
    for by in ((), ("variant",), ("channel", "kind"), ("step",)):
        report = shop.report(now=NOW, by=by)
        assert list(report.summaries) == summarise(credits, by)
        for summary in report.summaries:
            row = report.row("spring", **dict(summary.cell))
            assert {k: v for k, v in row.items() if k in summary.to_dict()} == summary.to_dict()
    by_variant = shop.report(now=NOW, by="variant")
    assert sum(r["attributed_revenue"] for r in by_variant.rows) == 50000
    # the held-out members have no variant: their cell is the empty one, with no sends
    assert by_variant.row("spring", variant="")["held_out"] == 5
    assert by_variant.row("spring", variant="")["ctr"] is None
    assert sum(r["planned"] for r in by_variant.rows) == 15
    by_channel = shop.report(now=NOW, by="channel")
    assert {r["channel"]: (r["sent"], r["fallen_back"], r["audience"]) for r in by_channel.rows} == {
        "alimtalk": (11, 0, None), "sms": (4, 4, None)}


def test_a_range_before_the_sends_has_no_messages_and_undefined_ratios(embedded: tuple[Shop, list[str], list[str]]) -> None:
    shop, _, _ = embedded
    report = shop.report("spring", since=T0 - timedelta(days=10), until=T0 - timedelta(days=1), now=NOW)
    assert report.rows == ()
    assert report.lifts == {}
    assert "no messages in this range" in str(report)
    # a campaign sent but not yet bought from: ROAS 0, cost per conversion and messages per purchase undefined
    early = shop.report("spring", now=T0 + timedelta(minutes=30)).row("spring")
    assert (early["sent"], early["roas"], early["cost_per_conversion"], early["messages_per_purchase"]) == (15, 0.0, None, None)
    table = shop.report("spring", now=T0 + timedelta(minutes=30)).to_arrow()
    assert table.column("cost_per_conversion").null_count == 1
    text = str(shop.report("spring", now=T0 + timedelta(minutes=30)))
    assert "cost per conversion" in text
    assert "  -" in text
    with pytest.raises(KeyError, match="no campaign 'autumn'"):
        shop.report("autumn", now=NOW)
    with pytest.raises(ValueError, match="choose among"):
        shop.report(now=NOW, by="persona")


def test_the_report_as_arrow_pandas_polars_and_html(embedded: tuple[Shop, list[str], list[str]]) -> None:
    shop, _, _ = embedded
    report = shop.report(now=NOW, by="variant")
    table = report.to_arrow()
    assert table.num_rows == len(report.rows) == 3
    assert table.column_names == report.columns
    assert table.column("variant").to_pylist() == ["", "A", "B"]
    assert report.to_pandas()["sent"].sum() == 15
    assert report.to_polars()["attributed_revenue"].sum() == 50000
    page = report._repr_html_()
    assert "<table>" in page
    assert "influenced" in page


def test_a_sqlite_shop_gives_the_same_report(embedded: tuple[Shop, list[str], list[str]]) -> None:
    shop, _, _ = embedded
    other, _, _ = _sqlite()
    for by in ((), ("variant",), ("channel",)):
        mine, theirs = shop.report(now=NOW, by=by).to_arrow(), other.report(now=NOW, by=by).to_arrow()
        assert mine.drop_columns(["srm_p_value"]).to_pylist() == theirs.drop_columns(["srm_p_value"]).to_pylist()
        assert math.isclose(mine.column("srm_p_value")[0].as_py() or 0, theirs.column("srm_p_value")[0].as_py() or 0)


def test_the_cli_prints_the_report(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shop.duckdb"
    shop = Shop.open(path)
    shop.load_customers(PEOPLE)
    _plan_and_send(shop)
    shop.close()
    assert main(["report", "--db", str(path), "--campaign", "spring", "--now", NOW.isoformat(), "--by", "variant"]) == 0
    out = capsys.readouterr().out
    assert "spring / variant=A" in out
    assert "fallen back" in out
    assert "holdout lift of 'spring'" in out
    assert main(["report", "--db", str(path), "--campaign", "autumn", "--now", NOW.isoformat()]) == 2
    assert "no campaign 'autumn'" in capsys.readouterr().err
    shop = Shop.open(path)
    shop.save_segment("first_five", SEGMENTS["first_five"])
    shop.close()
    assert main(["report", "--db", str(path), "--campaign", "spring", "--now", NOW.isoformat(), "--by", "segment",
                 "--segment", "first_five", "--segments-at", T0.isoformat(), "--sequential"]) == 0
    out = capsys.readouterr().out
    assert "spring / segment=first_five" in out
    assert "spring / segment=(none)" in out
    assert "A/B test of 'spring'" in out


def test_without_the_statistics_packages_the_counts_remain(embedded: tuple[Shop, list[str], list[str]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from shopcrm.measurement import stats

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise ImportError("No module named 'statsmodels'")

    monkeypatch.setattr(stats, "lift", missing)
    shop, _, _ = embedded
    report = shop.report("spring", now=NOW)
    lift = report.lifts["spring"]
    assert (lift.lift, lift.srm) == (None, None)
    assert (lift.treated_n, lift.treated_conversions, lift.holdout_n, lift.holdout_conversions) == (15, 4, 5, 1)
    assert "shopcrm[measurement]" in str(report)
    assert report.row("spring")["treated_rate"] == pytest.approx(4 / 15)
    assert report.row("spring")["absolute_lift"] is None


def test_a_message_whose_every_step_failed_counts_as_failed_not_sent() -> None:
    shop = Shop.open()
    shop.load_customers(PEOPLE[:6])
    shop.messaging_policy = POLICY
    shop.save_campaign({**CAMPAIGN, "holdout_percent": 0}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    lost = {"c0", "c1"}
    refuse = Scripted(lambda m: Rejected("없는 번호", code="3059") if m.customer_id in lost else Accepted(provider_id="x"))
    asyncio.run(Dispatcher(shop, {"alimtalk": refuse, "sms": refuse}, clock=lambda: T0, seed=1).run())
    row = shop.report("spring", now=NOW).row("spring")
    assert (row["planned"], row["held_out"], row["sent"], row["failed"], row["fallen_back"]) == (6, 0, 4, 2, 0)
    assert row["cost"] == 4 * 10
    assert shop.report("spring", now=NOW).lifts == {}  # no holdout: no lift
    by_channel = shop.report("spring", now=NOW, by="channel")
    assert sum(r["failed"] for r in by_channel.rows) == 2
    for by in ((), ("variant",), ("step",), ("variant", "step"), ("channel",), ("kind", "variant")):
        _same_reports(shop, now=NOW, by=by)
    _same_reports(shop, since=T0 + timedelta(hours=1), now=NOW)  # the failed decisions' exposure is out of range


def _same_reports(shop: Shop, **kwargs: Any) -> None:
    """The engine's report (SQL) equals the pure reference's, figure by figure."""
    sql = shop.report(method="sql", **kwargs)
    ref = shop.report(method="reference", **kwargs)
    assert (sql.method, ref.method) == ("sql", "reference")
    assert len(sql.rows) == len(ref.rows)
    for got, want in zip(sql.rows, ref.rows, strict=True):
        assert got.keys() == want.keys()
        for column, value in want.items():
            if isinstance(value, float):
                assert got[column] == pytest.approx(value, rel=1e-9), column
            else:
                assert got[column] == value, (column, got, want)
    assert [d[:3] for d in sql.daily] == [d[:3] for d in ref.daily]
    assert [d[3] for d in sql.daily] == pytest.approx([d[3] for d in ref.daily])
    assert sql.lifts.keys() == ref.lifts.keys()
    for campaign_id, lift in ref.lifts.items():
        assert sql.lifts[campaign_id].columns() == pytest.approx(lift.columns(), nan_ok=True)
    assert sql.ab_tests.keys() == ref.ab_tests.keys()


@pytest.mark.parametrize("build", [_embedded, _sqlite], ids=["duckdb", "sqlite"])
def test_the_engines_report_equals_the_reference_path(build: Callable[[], tuple[Shop, list[str], list[str]]]) -> None:
    shop, _, _ = build()
    assert shop.report(now=NOW).method == "sql"
    for by in ((), ("variant",), ("step", "channel"), ("kind",), ("variant", "kind")):
        _same_reports(shop, now=NOW, by=by)
    _same_reports(shop, since=T0, until=T0 + timedelta(hours=1), now=NOW)
    _same_reports(shop, now=T0 + timedelta(hours=2, minutes=30))
    _same_reports(shop, campaign="spring", since=T0 + timedelta(hours=1), now=NOW)


def test_the_report_tests_the_variants(embedded: tuple[Shop, list[str], list[str]]) -> None:
    shop, _, _ = embedded
    report = shop.report("spring", now=NOW)
    test = report.ab_tests["spring"]
    assert test.control == "A"  # the campaign's first variant
    assert [c.name for c in test.comparisons] == ["B"]
    outcomes = {r.variant for r in shop.outbox() if r.status == "planned"}
    assert outcomes == {"A", "B"}
    assert test.control_n + test.comparisons[0].n == 15
    assert test.control_conversions + test.comparisons[0].conversions == 4
    assert "A/B test of 'spring'" in str(report)
    sequential = shop.report("spring", now=NOW, sequential=True).ab_tests["spring"]
    assert sequential.sequential
    assert sequential.chi_square_p_value is None


def test_the_method_is_checked() -> None:
    shop = Shop.open()
    with pytest.raises(ValueError, match="method is 'sql'"):
        shop.report(now=NOW, method="spark")


SEGMENTS = {"first_five": {"attribute": "customer_id", "in": [f"c{i}" for i in range(5)]},
            "kakao_friends": {"attribute": "kakao_friend", "eq": True}}


@pytest.mark.parametrize("build", [_embedded, _sqlite], ids=["duckdb", "sqlite"])
def test_a_breakdown_by_segment_partitions_the_recipients(build: Callable[[], tuple[Shop, list[str], list[str]]]) -> None:
    shop, treated, held = build()
    whole = shop.report("spring", now=NOW).row("spring")
    report = shop.report("spring", now=NOW, by="segment", segments=SEGMENTS, segments_at=T0)
    assert report.method == "sql"
    cells = {r["segment"]: r for r in report.rows}
    # every customer is a kakao friend, so the second segment takes everyone but the first five
    first = {f"c{i}" for i in range(5)}
    assert set(cells) == {"first_five", "kakao_friends"}
    assert cells["first_five"]["sent"] == len(first & set(treated))
    assert cells["first_five"]["held_out"] == len(first & set(held))
    for column in ("sent", "planned", "held_out", "clicked", "attributed_conversions", "attributed_revenue", "cost"):
        assert sum(r[column] for r in report.rows) == whole[column], column
    _same_reports(shop, now=NOW, by=("segment", "variant"), segments=SEGMENTS, segments_at=T0)
    _same_reports(shop, since=T0 - timedelta(hours=1), now=NOW, by="segment", segments={"nobody": {
        "attribute": "customer_id", "in": ["zz"]}})  # nobody in it: every recipient in the empty cell


def test_a_segment_breakdown_explains_what_it_needs(embedded: tuple[Shop, list[str], list[str]]) -> None:
    shop, _, _ = embedded
    with pytest.raises(ValueError, match="reads membership at one instant"):
        shop.report("spring", now=NOW, by="segment", segments=SEGMENTS)
    with pytest.raises(ValueError, match="has none saved"):
        shop.report("spring", now=NOW, by="segment", segments_at=T0)
    with pytest.raises(ValueError, match="add by='segment'"):
        shop.report("spring", now=NOW, segments=SEGMENTS)
    with pytest.raises(ValueError, match="write segments=\\['vip'\\]"):
        shop.report("spring", now=NOW, by="segment", segments="vip", segments_at=T0)
    shop.save_segment("everyone_else", {"everyone": True})
    try:
        saved = shop.report("spring", since=T0, now=NOW, by="segment")
        assert {r["segment"] for r in saved.rows} == {"everyone_else"}
    finally:
        shop.delete_segment("everyone_else")


def test_members_planned_twice_count_once_at_their_earliest_exposure() -> None:
    """A daily campaign reaches the same customers on two days: each member counts once per campaign, in the
    group and variant of their first exposure, on the engine's path (which ranks them) as on the reference's."""
    shop = Shop.open()
    shop.load_customers(PEOPLE)
    shop.messaging_policy = POLICY
    daily = {**CAMPAIGN, "id": "daily", "schedule": {"kind": "recurring", "at": "10:00", "reentry": "every_time"}}
    shop.save_campaign(daily, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    shop.tick(now=T0 + timedelta(days=1))
    decided = [r for r in shop.outbox(status=None) if r.status in ("planned", "holdout")]
    assert len(decided) == 40  # twenty customers, two days
    texts = Scripted(lambda m: Accepted(provider_id="s"))
    asyncio.run(Dispatcher(shop, {"alimtalk": texts, "sms": texts}, clock=lambda: T0 + timedelta(days=1), seed=1).run())
    first = {}
    for r in sorted(decided, key=lambda r: r.due_at):
        first.setdefault(r.customer_id, r)
    buyers = [c for c, r in first.items() if r.status == "planned"][:3] + [c for c, r in first.items() if r.status == "holdout"][:1]
    shop.load_events([{"customer_id": c, "event": "order_completed", "ts": T0 + timedelta(days=1, hours=5),
                       "amount": 1000.0, "order_id": f"o-{c}"} for c in buyers])
    report = shop.report("daily", now=T0 + timedelta(days=3))
    lift = report.lifts["daily"]
    assert lift.treated_n + lift.holdout_n == 20
    assert lift.treated_n == sum(1 for r in first.values() if r.status == "planned")
    assert (lift.treated_conversions, lift.holdout_conversions) == (3, 1)
    _same_reports(shop, now=T0 + timedelta(days=3))
    _same_reports(shop, now=T0 + timedelta(days=3), by="variant")


def test_sends_whose_ledger_rows_lack_the_channel_take_it_from_the_outbox() -> None:
    """Ledger rows written before the ledger kept the carrying channel and kind (an upgraded store): the engine's
    report then reads them from the outbox, as the reference does."""
    shop, _, _ = _embedded()
    shop.source.con.execute("UPDATE shopcrm_sends SET channel = NULL, kind = NULL WHERE chain_index = 0")  # type: ignore[attr-defined]
    by_channel = shop.report("spring", now=NOW, by=("channel", "kind"))
    assert {(r["channel"], r["kind"]): r["sent"] for r in by_channel.rows} == {("alimtalk", "alimtalk"): 11,
                                                                              ("sms", "lms"): 4}
    _same_reports(shop, now=NOW)
    _same_reports(shop, now=NOW, by=("channel", "kind"))


def test_the_ledger_keeps_each_send_time_and_rows_without_it_read_the_message_sent_event() -> None:
    """The dispatcher writes a send's time twice, in its ``message_sent`` event and in its ledger row's ``sent_at``
    (which the report reads); rows without it (written before the ledger kept it) read the event, as before."""
    shop, _, _ = _embedded()
    con = shop.source.con  # type: ignore[attr-defined]
    events = dict(con.execute("SELECT message_key, ts FROM events WHERE event = 'message_sent'").fetchall())
    ledger = {r.key: r.sent_at for r in shop.source.campaign_store().sends() if r.state in ("sent", "delivered")}
    assert len(ledger) == 15
    assert ledger == {key: events[key] for key in ledger}
    before = [shop.report(now=NOW, by=by).rows for by in ((), ("channel",))]
    con.execute("UPDATE shopcrm_sends SET sent_at = NULL")
    assert [shop.report(now=NOW, by=by).rows for by in ((), ("channel",))] == before
    _same_reports(shop, now=NOW)
    # and a send time moved (by hand) is read from the ledger, by the engine and the reference alike
    con.execute("UPDATE shopcrm_sends SET sent_at = '2026-11-26 01:00:00.000000' WHERE chain_index = 1")
    moved = shop.report(now=NOW, since=T0 + timedelta(hours=12))
    assert moved.row("spring")["sent"] == 4
    _same_reports(shop, now=NOW, since=T0 + timedelta(hours=12))


@pytest.mark.parametrize("odd", ["김민서", 'c"q', "c\\b", "c\tt", "é"], ids=["hangul", "quote", "backslash", "tab", "accent"])
def test_customer_ids_that_are_not_plain_text_are_compared_exactly(odd: str) -> None:
    """The engine compares customers as the library's JSON text when every converting customer's id is plain
    ASCII; an id that JSON escapes (or quotes differently) turns that off.  Either way the report equals the
    reference, with the odd customer converting and not."""
    people = [{**p, "customer_id": f"{odd}{i}"} for i, p in enumerate(PEOPLE[:8])]
    shop = Shop.open()
    shop.load_customers(people)
    shop.messaging_policy = POLICY
    shop.save_campaign({**CAMPAIGN, "holdout_percent": 25}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    asyncio.run(Dispatcher(shop, {"alimtalk": Scripted(lambda m: Accepted(provider_id="k")),
                                  "sms": Scripted(lambda m: Accepted(provider_id="s"))}, clock=lambda: T0, seed=1).run())
    keys = _keys(shop)
    sent = sorted(keys)
    held = sorted(r.customer_id for r in shop.outbox(status="holdout"))
    shop.load_events([
        {"customer_id": sent[0], "event": "message_clicked", "ts": T0 + timedelta(hours=1), "message_key": keys[sent[0]],
         "campaign_id": "spring"},
        {"customer_id": sent[0], "event": "order_completed", "ts": T0 + timedelta(hours=2), "amount": 30000.0, "order_id": "o1"},
        {"customer_id": held[0], "event": "order_completed", "ts": T0 + timedelta(hours=3), "amount": 10000.0, "order_id": "o2"},
        {"customer_id": "plain", "event": "order_completed", "ts": T0 + timedelta(hours=4), "amount": 5000.0, "order_id": "o3"},
    ])
    shop.record_opt_out(sent[1], "kakao", at=T0 + timedelta(days=1))
    row = shop.report("spring", now=NOW).row("spring")
    assert (row["clicked"], row["attributed_conversions"], row["attributed_revenue"], row["opt_outs_after"]) == (1, 1, 30000.0, 1)
    assert shop.report("spring", now=NOW).lifts["spring"].holdout_conversions == 1
    _same_reports(shop, now=NOW)
    _same_reports(shop, now=NOW, by=("variant",))


@pytest.mark.parametrize("build", [_embedded, _sqlite], ids=["duckdb", "sqlite"])
def test_an_order_first_recorded_before_since_is_no_conversion_of_the_range(
        build: Callable[[], tuple[Shop, list[str], list[str]]]) -> None:
    """Contract section 1: one customer's events of one order are one conversion, the earliest.  treated[7]'s order
    o8 was first recorded an hour before the send and again an hour after it: a report whose range starts between
    the two must not turn the retry into a conversion (influenced by the AlimTalk, inside the measurement window)."""
    shop, _, _ = build()
    whole = shop.report("spring", now=NOW).row("spring")
    for method in ("sql", "reference"):
        ranged = shop.report("spring", since=T0 - timedelta(minutes=30), now=NOW, method=method).row("spring")
        assert (ranged["influenced_conversions"], ranged["influenced_revenue"]) == (2, 60000.0), method
        assert (ranged["treated_conversions"], ranged["holdout_conversions"]) == (4, 1), method
        for column in ("sent", "attributed_conversions", "influenced_conversions", "treated_conversions",
                       "holdout_conversions", "absolute_lift"):
            assert ranged[column] == whole[column], (method, column)
    _same_reports(shop, since=T0 - timedelta(minutes=30), now=NOW)
    _same_reports(shop, since=T0 - timedelta(minutes=30), now=NOW, by="variant")


def _contest(shop: Shop, load: Callable[[list[dict[str, Any]]], None]) -> None:
    """Two campaigns of one AlimTalk each, ``spring`` at T0 and ``autumn`` a day later, to c0..c3 (no holdout).
    c0 clicks spring, then autumn, then orders: autumn's click is the last.  c1 clicks autumn, then spring (its
    message of the day before), then orders: spring's click is the last.  ``load`` adds the events to the shop."""
    shop.messaging_policy = POLICY
    for campaign, at in (("spring", "2026-11-25T10:00:00"), ("autumn", "2026-11-26T10:00:00")):
        shop.save_campaign({**CAMPAIGN, "id": campaign, "holdout_percent": 0, "variants": CAMPAIGN["variants"][:1],
                            "schedule": {"kind": "one_off", "at": at}}, now=T0 - timedelta(days=1))
    accept = Scripted(lambda m: Accepted(provider_id="k"))
    for day in (T0, T0 + timedelta(days=1)):
        shop.tick(now=day)
        asyncio.run(Dispatcher(shop, {"alimtalk": accept, "sms": accept}, clock=lambda day=day: day, seed=1).run())
    keys = {(r.campaign_id, r.customer_id): r.key for r in shop.source.campaign_store().sends()}
    assert len(keys) == 8

    def click(customer: str, campaign: str, at: datetime) -> dict[str, Any]:
        return {"customer_id": customer, "event": "message_clicked", "ts": at, "amount": None, "order_id": None,
                "message_key": keys[(campaign, customer)], "campaign_id": campaign}

    def bought(customer: str, at: datetime, amount: float) -> dict[str, Any]:
        return {"customer_id": customer, "event": "order_completed", "ts": at, "amount": amount,
                "order_id": f"o-{customer}", "message_key": None, "campaign_id": None}

    day = T0 + timedelta(days=1)
    load([click("c0", "spring", T0 + timedelta(hours=1)), click("c0", "autumn", day + timedelta(hours=1)),
          bought("c0", day + timedelta(hours=2), 100.0),
          click("c1", "autumn", day + timedelta(hours=1)), click("c1", "spring", day + timedelta(hours=3)),
          bought("c1", day + timedelta(hours=4), 200.0)])


def _check_contest(shop: Shop) -> None:
    """Each order goes to its last click in every report, whichever campaigns and range the report selects; so the
    campaigns' own reports add up to the whole, and the engine's figures equal the reference's."""
    now = T0 + timedelta(days=7)
    spring_only = T0 + timedelta(hours=12)  # until: spring's sends only; since: autumn's only

    def credited(**kwargs: Any) -> dict[str, tuple[int, float, int]]:
        found = {}
        for method in ("sql", "reference"):
            report = shop.report(now=now, method=method, **kwargs)
            found[method] = {r["campaign_id"]: (r["attributed_conversions"], r["attributed_revenue"], r["clicked"])
                             for r in report.rows}
        assert found["sql"] == found["reference"], kwargs
        return found["sql"]

    whole = {"spring": (1, 200.0, 2), "autumn": (1, 100.0, 2)}
    assert credited() == whole
    assert credited(campaign="spring") == {"spring": whole["spring"]}
    assert credited(campaign="autumn") == {"autumn": whole["autumn"]}
    assert credited(until=spring_only) == {"spring": whole["spring"]}
    assert credited(since=spring_only) == {"autumn": whole["autumn"]}
    assert credited(campaign="spring", since=spring_only) == {}
    for kwargs in ({}, {"campaign": "spring"}, {"campaign": "autumn", "by": "variant"}, {"until": spring_only},
                   {"since": spring_only, "by": ("channel",)}):
        _same_reports(shop, now=now, **kwargs)


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_the_last_click_is_chosen_among_every_campaigns_clicks(engine: str) -> None:
    """Contract section 3: among the clicks covering a conversion the latest wins, whatever campaign or time its
    message belongs to; a report of one campaign, or of a range, credits its sends only the conversions they win."""
    if engine == "duckdb":
        shop = Shop.open()
        shop.load_customers(PEOPLE[:4])
        _contest(shop, shop.load_events)
    else:
        con = sqlite3.connect(":memory:", check_same_thread=False)
        con.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT, sms_consent BOOLEAN, "
                    "kakao_consent BOOLEAN, kakao_friend BOOLEAN, night_consent BOOLEAN)")
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", [tuple(p.values()) for p in PEOPLE[:4]])
        con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP, amount REAL, order_id TEXT, "
                    "message_key TEXT, campaign_id TEXT)")
        con.commit()
        shop = Shop.from_dbapi(con, dialect="sqlite")
        columns = ("customer_id", "event", "ts", "amount", "order_id", "message_key", "campaign_id")

        def load(events: list[dict[str, Any]]) -> None:
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [tuple(e["ts"].isoformat(sep=" ") if c == "ts" else e[c] for c in columns) for e in events])
            con.commit()

        _contest(shop, load)
    _check_contest(shop)
