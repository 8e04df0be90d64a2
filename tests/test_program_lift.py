"""The whole programme's lift (``shop.program_lift``): the global control group against every other customer.

Shops with a planted difference (customers of the control group buy at one rate, everyone else at another, by
construction), checked against the counts computed by hand from the planted data and against the pure reference
(:func:`shopcrm.program_lift.reference_outcomes` over :func:`shopcrm.measurement.conversions`); the hash in SQL
against the ids hashed in Python; the sample-ratio test on a population whose split is wrong; the advertising
cost behind iROAS from a real tick and dispatch; the refusal without a global control group; the CLI."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

from shopcrm import ProgramLift, Shop
from shopcrm.campaigns import MessagingPolicy, in_global_control
from shopcrm.campaigns._policy import global_control_point
from shopcrm.channels import KINDS, Accepted, Channel, Message, SendResult
from shopcrm.cli import main
from shopcrm.dispatching import Dispatcher
from shopcrm.program_lift import advertising_cost, control_threshold, reference_outcomes

T0 = datetime(2026, 10, 1)
UNTIL = T0 + timedelta(days=30)
NOW = T0 + timedelta(days=40)
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                         global_control_percent=10, global_control_salt="gc-2026")


def _planted(n: int, control_rate: float, rest_rate: float, seed: int = 7) -> tuple[list[str], list[dict[str, Any]]]:
    """Customers c0..c{n-1}; each buys in the period with the rate of their group (one order, sometimes recorded
    twice), plus noise outside the period that must not count."""
    rng = random.Random(seed)
    ids = [f"c{i}" for i in range(n)]
    events: list[dict[str, Any]] = []
    for i, cid in enumerate(ids):
        rate = control_rate if in_global_control(cid, POLICY) else rest_rate
        events.append({"customer_id": cid, "event": "session_started", "ts": T0, "amount": None, "order_id": None})
        if rng.random() < rate:
            at = T0 + timedelta(seconds=rng.randrange(30 * 86_400))
            amount = float(rng.choice([10_000, 25_000, 40_000]))
            events.append({"customer_id": cid, "event": "order_completed", "ts": at, "amount": amount, "order_id": f"o{i}"})
            if i % 3 == 0:  # the shop recorded the order twice: one conversion, at the first event's revenue
                events.append({"customer_id": cid, "event": "order_completed", "ts": at + timedelta(minutes=1),
                               "amount": 1.0, "order_id": f"o{i}"})
        if i % 11 == 0:  # before the period, after it, after now: none counts
            for at in (T0 - timedelta(days=1), UNTIL, NOW + timedelta(days=1)):
                events.append({"customer_id": cid, "event": "order_completed", "ts": at, "amount": 5.0,
                               "order_id": f"x{i}-{at:%j}"})
    return ids, events


def _shop(ids: Sequence[str], events: list[dict[str, Any]], policy: MessagingPolicy = POLICY) -> Shop:
    shop = Shop.open()
    shop.load_customers([{"customer_id": c, "name": "김민서", "phone": f"010-0000-{i:04d}", "sms_consent": True}
                         for i, c in enumerate(ids)])
    shop.load_events(events)
    shop.messaging_policy = policy
    return shop


def _by_hand(ids: Sequence[str], events: list[dict[str, Any]]) -> dict[bool, tuple[int, int, float]]:
    """(members, converters, revenue) per group, straight from the planted rows: first event of each order."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        if e["event"] == "order_completed":
            key = (e["customer_id"], e["order_id"])
            if key not in first or e["ts"] < first[key]["ts"]:
                first[key] = e
    revenue: dict[str, float] = {}
    for e in first.values():
        if T0 <= e["ts"] < UNTIL:
            revenue[e["customer_id"]] = revenue.get(e["customer_id"], 0.0) + e["amount"]
    out = {}
    for group in (True, False):
        members = [c for c in ids if in_global_control(c, POLICY) == group]
        out[group] = (len(members), sum(c in revenue for c in members), sum(revenue.get(c, 0.0) for c in members))
    return out


def test_the_planted_difference_is_found_and_equals_the_hand_count() -> None:
    ids, events = _planted(6000, control_rate=0.05, rest_rate=0.20)
    shop = _shop(ids, events)
    found = shop.program_lift(since=T0, until=UNTIL, now=NOW)
    assert isinstance(found, ProgramLift)
    assert found.method == "sql"
    hand = _by_hand(ids, events)
    assert (found.control.n, found.control.converted) == hand[True][:2]
    assert (found.rest.n, found.rest.converted) == hand[False][:2]
    assert math.isclose(found.control.revenue.total, hand[True][2])
    assert math.isclose(found.rest.revenue.total, hand[False][2])
    assert found.control.n + found.rest.n == 6000
    lift = found.lift
    assert lift is not None
    assert lift.absolute_interval is not None
    assert lift.relative_interval is not None
    # the planted 15-point difference: inside the interval, which excludes zero
    assert lift.absolute_interval.contains(0.15)
    assert lift.absolute_interval.excludes_zero
    assert lift.absolute_lift == pytest.approx(found.rest.rate - found.control.rate)  # type: ignore[operator]
    assert lift.incremental_conversions == pytest.approx(lift.absolute_lift * found.rest.n)  # type: ignore[operator]
    assert lift.revenue is not None
    assert lift.revenue.interval is not None
    assert lift.revenue.interval.low > 0
    assert found.srm is not None
    assert not found.srm.mismatch
    assert found.srm.holdout_share == 0.10
    assert found.cost == 0.0
    assert lift.iroas is None


def test_sql_python_and_the_pure_reference_agree() -> None:
    ids, events = _planted(3000, control_rate=0.1, rest_rate=0.1, seed=3)
    shop = _shop(ids, events)
    sql = shop.program_lift(since=T0, until=UNTIL, now=NOW, method="sql")
    python = shop.program_lift(since=T0, until=UNTIL, now=NOW, method="python")
    control, rest = reference_outcomes(ids, events, POLICY, shop.attribution_policy, T0, UNTIL)
    for got in (sql, python):
        assert (got.control.n, got.control.converted, got.rest.n, got.rest.converted) == (
            control.n, control.converted, rest.n, rest.converted)
        assert math.isclose(got.control.revenue.total, control.revenue.total)
        assert math.isclose(got.rest.revenue.sum_squares, rest.revenue.sum_squares)
    assert python.method == "python"
    # no planted difference: the interval covers 0
    assert sql.lift is not None
    assert sql.lift.absolute_interval is not None
    assert sql.lift.absolute_interval.contains(0.0)


def test_now_cuts_the_period_and_orders_seen_before_it_do_not_count_again() -> None:
    ids = ["a", "b", "c"]
    events = [
        # b's order was first recorded before the period: its repeat inside the period is not a conversion
        {"customer_id": "b", "event": "order_completed", "ts": T0 - timedelta(hours=1), "amount": 9.0, "order_id": "o"},
        {"customer_id": "b", "event": "order_completed", "ts": T0 + timedelta(hours=1), "amount": 9.0, "order_id": "o"},
        # c's two orders without an order id are two conversions; the one after now does not count
        {"customer_id": "c", "event": "order_completed", "ts": T0 + timedelta(days=1), "amount": 4.0, "order_id": None},
        {"customer_id": "c", "event": "order_completed", "ts": T0 + timedelta(days=1), "amount": 4.0, "order_id": None},
        {"customer_id": "c", "event": "order_completed", "ts": T0 + timedelta(days=3), "amount": 100.0, "order_id": "p"},
        # a purchase by someone not in the customers table counts nowhere
        {"customer_id": "zz", "event": "order_completed", "ts": T0 + timedelta(days=1), "amount": 50.0, "order_id": "q"},
    ]
    policy = attrs.evolve(POLICY, global_control_percent=50)
    shop = _shop(ids, events, policy)
    found = shop.program_lift(since=T0, until=UNTIL, now=T0 + timedelta(days=2))
    assert found.end == T0 + timedelta(days=2)
    assert found.control.n + found.rest.n == 3
    assert found.control.converted + found.rest.converted == 1
    assert found.control.revenue.total + found.rest.revenue.total == 8.0
    assert found.control.revenue.sum_squares + found.rest.revenue.sum_squares == 64.0


def test_revenue_and_order_ids_from_json_properties() -> None:
    ids = ["a", "b"]
    shop = Shop.open()
    shop.load_customers([{"customer_id": c} for c in ids])
    shop.load_events([
        {"customer_id": "a", "event": "order_completed", "ts": T0 + timedelta(days=1),
         "properties": json.dumps({"amount": "1200.5", "order_id": 7})},
        {"customer_id": "a", "event": "order_completed", "ts": T0 + timedelta(days=2),
         "properties": json.dumps({"amount": 99, "order_id": "7"})},  # order 7 again (compared as text)
        {"customer_id": "b", "event": "order_completed", "ts": T0 + timedelta(days=1),
         "properties": json.dumps({"amount": "free", "order_id": "8"})},  # not a number: converted, revenue 0
    ])
    shop.messaging_policy = attrs.evolve(POLICY, global_control_percent=50)
    found = shop.program_lift(since=T0, until=UNTIL, now=NOW)
    total = found.control.revenue.total + found.rest.revenue.total
    assert (found.control.converted + found.rest.converted, total) == (2, 1200.5)


def test_a_wrong_split_is_flagged() -> None:
    """A population whose ids were picked by their hash (a quarter of it in a 10% group) fails the SRM test."""
    inside = [f"k{i}" for i in range(20_000) if in_global_control(f"k{i}", POLICY)][:250]
    outside = [f"k{i}" for i in range(5_000) if not in_global_control(f"k{i}", POLICY)][:750]
    shop = _shop(inside + outside, [{"customer_id": "k0", "event": "session_started", "ts": T0, "amount": None,
                                     "order_id": None}])
    found = shop.program_lift(since=T0, until=UNTIL, now=NOW)
    assert (found.control.n, found.rest.n) == (250, 750)
    assert found.srm is not None
    assert found.srm.mismatch
    assert found.srm.p_value is not None
    assert found.srm.p_value < 0.001
    assert "SAMPLE-RATIO MISMATCH" in str(found)


def test_without_a_global_control_group_the_error_says_what_to_set() -> None:
    ids, events = _planted(50, 0.1, 0.1)
    shop = _shop(ids, events, attrs.evolve(POLICY, global_control_percent=0))
    with pytest.raises(ValueError, match=r"global_control_percent is 0\. Set it"):
        shop.program_lift(since=T0, until=UNTIL, now=NOW)
    shop.messaging_policy = POLICY
    with pytest.raises(ValueError, match=r"until .* must be after since"):
        shop.program_lift(since=UNTIL, until=T0, now=NOW)
    with pytest.raises(ValueError, match="method is 'sql' or 'python'"):
        shop.program_lift(since=T0, until=UNTIL, now=NOW, method="spark")


@pytest.mark.parametrize("percent", [0.001, 1.0, 5.0, 10.0, 12.5, 33.3333, 50.0, 99.999])
def test_the_sql_threshold_draws_the_same_line_as_the_python_hash(percent: float) -> None:
    threshold = control_threshold(percent)
    assert (threshold - 1) / 2.0 ** 64 * 100.0 < percent <= threshold / 2.0 ** 64 * 100.0
    policy = attrs.evolve(POLICY, global_control_percent=percent)
    for i in range(2000):
        point = global_control_point(f"id{i}", policy.global_control_salt)
        assert (point < percent) == in_global_control(f"id{i}", policy)


def test_sqlite_through_dbapi_agrees_with_duckdb() -> None:
    ids, events = _planted(1500, control_rate=0.05, rest_rate=0.25, seed=11)
    embedded = _shop(ids, events).program_lift(since=T0, until=UNTIL, now=NOW)
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (customer_id TEXT, name TEXT)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [(c, "x") for c in ids])
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP, amount REAL, order_id TEXT)")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                    [(e["customer_id"], e["event"], e["ts"].isoformat(sep=" "), e["amount"], e["order_id"]) for e in events])
    con.commit()
    shop = Shop.from_dbapi(con, dialect="sqlite")
    shop.messaging_policy = POLICY
    found = shop.program_lift(since=T0, until=UNTIL, now=NOW)
    assert found.method == "sql"
    assert found.columns()["control_n"] == embedded.control.n
    for name in ("control_converted", "rest_converted", "absolute_lift", "rest_revenue_per_customer"):
        assert found.columns()[name] == pytest.approx(embedded.columns()[name])


class _Accepting(Channel):
    name = "accepting"
    kinds = KINDS

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return [Accepted(provider_id="p") for _ in batch]


def _sqlite_shop(ids: Sequence[str], events: list[dict[str, Any]]) -> Shop:
    """The shop in SQLite through DB-API: message events go to the library's ``shopcrm_message_events``."""
    con = sqlite3.connect(":memory:", check_same_thread=False)
    con.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT, sms_consent BOOLEAN)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                    [(c, "김민서", f"010-0000-{i:04d}", True) for i, c in enumerate(ids)])
    con.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP, amount REAL, order_id TEXT)")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                    [(e["customer_id"], e["event"], e["ts"].isoformat(sep=" "), e["amount"], e["order_id"]) for e in events])
    con.commit()
    shop = Shop.from_dbapi(con, dialect="sqlite")
    shop.messaging_policy = POLICY
    return shop


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_iroas_divides_by_the_cost_of_the_periods_advertising_sends(engine: str) -> None:
    ids, events = _planted(400, control_rate=0.05, rest_rate=0.3, seed=5)
    shop = _shop(ids, events) if engine == "duckdb" else _sqlite_shop(ids, events)
    sent_at = T0 + timedelta(days=2, hours=1)  # 10:00 in Seoul
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 가을 세일 20% 할인"}}],
                        "schedule": {"kind": "one_off", "at": "2026-10-03T10:00:00"}}, now=T0)
    shop.tick(now=sent_at)
    statuses = {r.customer_id: r.status for r in shop.outbox(status=None)}
    assert {c for c, s in statuses.items() if s == "global_control"} == {c for c in ids if in_global_control(c, POLICY)}
    asyncio.run(Dispatcher(shop, {"sms": _Accepting()}, clock=lambda: sent_at, seed=1).run())
    sends = shop.source.campaign_store().sends()
    assert sends
    assert all(s.state == "sent" for s in sends)
    cost = math.fsum(s.cost for s in sends)
    assert cost > 0
    found = shop.program_lift(since=T0, until=UNTIL, now=NOW)
    assert found.cost == pytest.approx(cost)
    # one SQL sum over the ledger and the message events; the same as reading the ledger into Python
    for since, until in ((T0, UNTIL), (sent_at, sent_at + timedelta(minutes=1)), (sent_at + timedelta(seconds=1), UNTIL)):
        assert advertising_cost(shop, since, until) == pytest.approx(advertising_cost(shop, since, until, method="python"))
    assert advertising_cost(shop, sent_at + timedelta(seconds=1), UNTIL) == 0.0
    assert found.lift is not None
    assert found.lift.incremental_revenue is not None
    assert found.lift.iroas == pytest.approx(found.lift.incremental_revenue / cost)
    # a period without the sends costs nothing
    later = shop.program_lift(since=T0 + timedelta(days=3), until=UNTIL, now=NOW)
    assert later.cost == 0.0
    assert later.lift is not None
    assert later.lift.iroas is None


def test_text_columns_and_dicts() -> None:
    ids, events = _planted(800, control_rate=0.05, rest_rate=0.2)
    found = _shop(ids, events).program_lift(since=T0, until=UNTIL, now=NOW)
    text = str(found)
    assert text.startswith("Global control group (10% of customers, salt 'gc-2026') against everyone else")
    for label in ("everyone else", "global control", "absolute lift", "relative lift", "incremental revenue",
                  "iROAS", "sample ratio"):
        assert label in text
    columns = found.columns()
    assert columns["control_n"] == found.control.n
    assert columns["srm_mismatch"] is False
    assert columns["absolute_lift_low"] < columns["absolute_lift"] < columns["absolute_lift_high"]
    assert json.loads(json.dumps(found.to_dict()))["control"]["n"] == found.control.n
    assert "<table>" in found._repr_html_()


def test_the_cli_prints_it(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ids, events = _planted(500, control_rate=0.05, rest_rate=0.2)
    path = tmp_path / "shop.duckdb"
    with Shop.open(path) as shop:
        shop.load_customers([{"customer_id": c} for c in ids])
        shop.load_events(events)
        shop.messaging_policy = POLICY
        shop.save_settings()
    argv = ["program-lift", "--db", str(path), "--since", T0.isoformat(), "--until", UNTIL.isoformat(),
            "--now", NOW.isoformat()]
    assert main(argv) == 0
    assert "Global control group (10% of customers" in capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["percent"] == 10.0
    assert main(["program-lift", "--db", str(path), "--since", UNTIL.isoformat(), "--until", T0.isoformat()]) == 2
    assert "must be after since" in capsys.readouterr().err
