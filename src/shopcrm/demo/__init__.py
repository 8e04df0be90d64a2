"""The demo shop: a synthetic Korean shop, its example segments, and ``shopcrm demo``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopcrm.demo._experiment import (
    DEMO_TRACKING_SECRET,
    EXPERIMENT_TICKS,
    PLANTED,
    PLANTED_EFFECTS,
    REPORT_AFTER,
    Planted,
    SimulatedResponses,
    simulate_responses,
)
from shopcrm.demo._generator import DEMO_NOW, PLANTED_PAIRS, DemoShop, generate

if TYPE_CHECKING:
    from shopcrm.report import CampaignReport

__all__ = [
    "DEMO_NOW", "DEMO_PLAYBOOKS", "PLANTED", "PLANTED_EFFECTS", "PLANTED_PAIRS", "REPORT_AFTER", "SEED_RULES", "DemoShop", "Planted", "SimulatedResponses",
    "generate", "run", "simulate_responses", "write_parquet",
]

SEED_RULES: dict[str, dict[str, Any]] = {
    "shoe_buyers_20s_30s": {
        "and": [
            {"performed": "product_viewed", "where": {"category": "shoes"}, "within": {"last": "30d"}, "times": {"gte": 3}},
            {"or": [
                {"performed": "order_completed", "where": {"product_id": "P1"}},
                {"performed": "order_completed", "where": {"product_id": "P2"}},
            ]},
            {"not": {"performed": "promotion_joined", "where": {"promotion_id": "PROMO1"}}},
            {"attribute": "age", "between": [20, 39]},
        ]
    },
    "vip_spenders": {
        "aggregate": "sum", "of": "amount", "performed": "order_completed", "within": {"last": "90d"}, "gte": 300000,
    },
    "signup_dropoff": {
        "and": [
            {"attribute": "signed_up_at", "ago": {"gte": "1d", "lt": "7d"}},
            {"performed": "order_completed", "times": {"eq": 0}},
        ]
    },
    "cart_abandoned": {
        "performed": "cart_added",
        "within": {"ago": {"gte": "1d", "lt": "7d"}},
        "not_followed_by": {"performed": "order_completed"},
    },
    "buyers_no_session_90d": {
        "and": [
            {"performed": "order_completed"},
            {"not": {"performed": "session_started", "within": {"last": "90d"}}},
        ]
    },
    "cooling_off_buyers": {
        "and": [
            {"performed": "order_completed", "times": {"gte": 2}},
            {"last_performed": "session_started", "ago": {"gte": "30d", "lt": "60d"}},
        ]
    },
    "seoul_gold_kakao": {
        "and": [
            {"attribute": "region", "eq": "서울"},
            {"attribute": "grade", "in": ["골드", "VIP"]},
            {"attribute": "kakao_consent", "eq": True},
        ]
    },
    "vip_holdout_10pct": {
        "and": [{"in_segment": "vip_spenders"}, {"sample": {"percent": 10, "salt": "2026-winter-holdout"}}]
    },
}

LABELS = {
    "shoe_buyers_20s_30s": "신발 관심 20-30대 구매자 (seed example)",
    "vip_spenders": "90일 30만원 이상 구매 (VIP spend)",
    "signup_dropoff": "가입 후 미구매 1-7일 (signup drop-off)",
    "cart_abandoned": "장바구니 이탈 1-7일 (abandoned cart)",
    "buyers_no_session_90d": "구매 고객 중 90일 세션 없음 (not the lifecycle 'lapsed')",
    "cooling_off_buyers": "재구매 고객 30-60일 미방문 (cooling off)",
    "seoul_gold_kakao": "서울 골드/VIP 카카오 수신동의",
    "vip_holdout_10pct": "VIP 10% 대조군 (holdout)",
}


#: the playbooks the demo enables: those whose data the demo shop has (its catalog history gives the cart price
#: drops and low wish-list stock); the others need a membership_saved column, payment, points, delivery or coupon
#: events, or dates and winners a shop sets itself
DEMO_PLAYBOOKS = (
    "welcome_coupon", "signup_dropoff", "cart_reminder", "cart_price_drop", "wishlist_low_stock", "order_completed",
    "first_purchase_cross_sell", "vip_upgrade", "cooling_off", "lapsed_winback",
)


def write_parquet(demo: DemoShop, directory: str | Path) -> tuple[Path, Path]:
    """Write the demo tables as Parquet files; returns (customers, events) paths."""
    import pyarrow.parquet as pq

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    customers, events = folder / "customers.parquet", folder / "events.parquet"
    pq.write_table(demo.customers, customers)
    pq.write_table(demo.events, events)
    return customers, events


def run(
    path: str,
    scale: int = 100_000,
    seed: int = 0,
    now: datetime | None = None,
    out: Callable[[str], None] = print,
    progress: bool = False,
) -> CampaignReport:
    """Build the demo shop in a DuckDB file, print each example segment's audience, run the demo's campaigns
    (two ticks, each dispatched into a JSON-lines file), simulate customers' responses with the planted effects
    (:data:`PLANTED`) and print the campaign report of the measured campaigns, which it returns.  ``progress``
    draws bars on stderr for the loads, the preview and the ticks."""
    from shopcrm.shop import Shop

    when = now or DEMO_NOW
    target = Path(path)
    if path != ":memory:":
        for leftover in (target, target.with_name(target.name + ".wal"), _sent_path(target)):
            leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    demo = generate(scale, seed, when)
    generated = time.perf_counter() - started
    with Shop.open(path) as shop:
        started = time.perf_counter()
        shop.load_customers(demo.customers, progress=progress)
        shop.load_events(demo.events, progress=progress)
        if demo.product_history is not None and demo.products is not None:
            # the history first: the catalog as of now then matches its last rows and adds none
            shop.load_product_history(demo.product_history)
            shop.load_products(demo.products, at=when)
        loaded = time.perf_counter() - started
        products = f", {demo.products.num_rows:,} products" if demo.products is not None else ""
        out(f"shopcrm demo shop: {demo.customers.num_rows:,} customers, {demo.events.num_rows:,} events{products} -> {path}")
        out(f"  generated in {generated:.2f}s, loaded in {loaded:.2f}s; segments as of {when.isoformat()}")
        for name, rule in SEED_RULES.items():
            shop.save_segment(name, rule, LABELS.get(name), now=when)
        started = time.perf_counter()
        counts = shop.count_many([{"in_segment": name} for name in SEED_RULES], now=when)
        elapsed = time.perf_counter() - started
        out("")
        out(f"  {'segment':<22} {'customers':>10}  description")
        for (name, _), count in zip(SEED_RULES.items(), counts, strict=True):
            out(f"  {name:<22} {count:>10,}  {LABELS.get(name, '')}")
        out(f"  ({len(counts)} audiences counted in one query: {elapsed * 1000:.0f} ms)")
        out("")
        out("Why the seed example's audience is what it is (shop.explain):")
        out(str(shop.explain(shop.segment("shoe_buyers_20s_30s"), now=when)))
        out("")
        started = time.perf_counter()
        summary = shop.lifecycle_summary(now=when)
        out(f"Lifecycle dashboard (shop.lifecycle_summary, {time.perf_counter() - started:.2f}s):")
        out(str(summary))
        out("  (the moment 'lapsed' is no activity of any kind -- session, view, cart, order -- for 90 days, buyers or"
            " not; the segment buyers_no_session_90d is buyers with no session_started for 90 days)")
        out("")
        if demo.products is not None:
            _recommendations(shop, when, out)
            out("")
        _campaigns(shop, when, out, progress)
        out("")
        report = _measure(shop, when, seed, None if path == ":memory:" else _sent_path(target), out, progress)
        out("")
        out("Open it again (in Python):")
        out(f"  import datetime, shopcrm; shopcrm.Shop.open({path!r}).count({{'in_segment': 'vip_spenders'}}, "
            f"now={when!r})")
    return report


def _recommendations(shop: Any, when: datetime, out: Callable[[str], None]) -> None:
    """A landing page of one customer, and the planted pairs found by also-bought for every buyer at once."""
    stocked = {r["product_id"] for r in shop.products().to_pylist() if r["available"] and (r["stock"] or 0) > 0}
    a, b = next(((a, b) for a, b in PLANTED_PAIRS if b in stocked), PLANTED_PAIRS[0])  # the filter hides sold-out ones
    buyers = {"performed": "order_completed", "where": {"product_id": a}}
    started = time.perf_counter()
    everyone = shop.recommend(buyers, k=3, strategy="also_bought", now=when, not_bought=True, in_stock=True)
    elapsed = time.perf_counter() - started
    first = [r["product_id"] for r in everyone.to_pylist() if r["rank"] == 1]
    customer = everyone.column("customer_id")[0].as_py() if everyone.num_rows else None
    out(f"Recommendations (shop.recommend; docs/products.md): also-bought for the {len(first):,} buyers of {a} in one "
        f"query ({elapsed:.2f}s, in stock, not bought yet): {first.count(b):,} get {b} first, the partner the "
        "generator planted")
    if customer is None:
        return
    page = shop.recommend(customer, k=5, strategy="personal", now=when, in_stock=True, not_bought=True)
    out(f"  a landing page for {customer} (personal, falling back to also-bought and popular):")
    for row in page.to_pylist():
        price = f"{row['price']:,.0f}원" if row["price"] is not None else ""
        out(f"    {row['rank']}. {row['product_id']:<5} {row['name'] or '':<22} {price:>10}  {row['category']:<12} "
            f"({row['strategy']})")


def _sent_path(target: Path) -> Path:
    """Where the demo's dispatcher writes the messages it sends: beside the shop's file."""
    return target.with_name(target.stem + "-sent.jsonl")


def _campaigns(shop: Any, when: datetime, out: Callable[[str], None], progress: bool = False) -> None:
    """Enable the playbooks, preview a broadcast, and run the morning's tick (nothing is sent: the outbox fills)."""
    from datetime import timedelta

    from shopcrm.campaigns import MessagingPolicy
    from shopcrm.tracking import TrackingPolicy

    # assigned, the policy is saved with the shop: Shop.open(path) and `shopcrm tick --db path` use it again;
    # tracked links ({{ link(url) }}) are signed with a demo secret (a real shop keeps its own secret private)
    shop.messaging_policy = MessagingPolicy(
        sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000",
        tracking=TrackingPolicy(base_url="https://shop.example.com/r", secret=DEMO_TRACKING_SECRET),
    )
    for name in DEMO_PLAYBOOKS:
        if name == "lapsed_winback":  # measured: a 20% holdout (the playbook has 10%), the copy with a tracked link
            shop.enable_playbook(name, now=when - timedelta(days=2), holdout_percent=20, variants=[{"name": "기본", "content": {
                "text": "{{ name }}님, 오랜만이에요! 다시 찾아 주시면 15% 할인 쿠폰을 드려요. "
                        f"{{{{ link('{PLANTED['lapsed_winback'].link}') }}}}"}}])
        else:
            shop.enable_playbook(name, now=when - timedelta(days=2))
    vip_link = f" {{{{ link('{PLANTED['vip_winter_sale'].link}') }}}}"
    sale = shop.save_campaign({
        "id": "vip_winter_sale", "name": "VIP 겨울 세일", "purpose": "advertising", "holdout_percent": 20,
        "audience": {"in_segment": "vip_spenders"}, "channels": ["brand_message", "sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name|은는 }} VIP 겨울 세일 대상이에요. 20% 할인 쿠폰을 드려요." + vip_link}},
                     {"name": "b", "content": {"text": "{{ name }}님, VIP 고객님께만 오늘 20% 할인!" + vip_link}}],
        "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"},
    }, now=when - timedelta(days=1))
    # the placebo: a notice to recent buyers outside the VIPs (so no member is in two measured campaigns)
    shop.save_campaign({
        "id": "delivery_notice", "name": "연말 배송 일정 안내 (placebo)", "purpose": "informational", "holdout_percent": 20,
        "audience": {"and": [{"performed": "order_completed", "within": {"last": "30d"}},
                             {"not": {"in_segment": "vip_spenders"}}]},
        "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 연말 택배 물량이 많아 12월 배송이 1-2일 늦어질 수 있어요. "
                                                        f"배송 일정: {{{{ link('{PLANTED['delivery_notice'].link}') }}}}"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-24T11:00:00"},
    }, now=when - timedelta(days=1))
    morning = when + timedelta(hours=1)  # 10:00 in Seoul
    out(f"Campaigns: {len(DEMO_PLAYBOOKS)} playbooks enabled, one broadcast saved (and a placebo notice for 11:00); the "
        f"broadcast's audience preview:")
    previewed = shop.preview(sale.id, now=morning, progress=progress)
    out(str(previewed))
    out("")
    started = time.perf_counter()
    result = shop.tick(now=morning, progress=progress)
    out(f"The 10:00 tick (shop.tick, {time.perf_counter() - started:.2f}s; the outbox holds the plan for the dispatcher):")
    out(str(result))
    counts = result.by_campaign().get(sale.id, {})
    planned = counts.get("planned", 0)
    if planned != previewed.planned:
        # the preview counted caps against the outbox as it was; the tick planned the playbooks (higher priority) first
        out(f"  {sale.id}: the preview promised {previewed.planned:,} messages and the tick planned {planned:,}: the "
            f"playbooks, planned first in the same tick (higher priority), had used the frequency caps of "
            f"{counts.get('capped', 0):,} of its customers ({previewed.holdout - counts.get('holdout', 0):,} of them "
            f"in the holdout).")


def _measure(
    shop: Any, when: datetime, seed: int, sent_path: Path | None, out: Callable[[str], None], progress: bool = False,
) -> CampaignReport:
    """Dispatch the morning's plan, tick and dispatch at 11:00, simulate the responses, print the report."""
    import tempfile
    from datetime import timedelta

    from shopcrm.channels import JsonlChannel

    with tempfile.TemporaryDirectory() as scratch:
        channel = JsonlChannel(sent_path or Path(scratch) / "sent.jsonl")
        channels = {"sms": channel, "brand_message": channel, "alimtalk": channel}
        started = time.perf_counter()
        morning, eleven = when + EXPERIMENT_TICKS[0], when + EXPERIMENT_TICKS[1]
        dispatched = shop.dispatch(channels, clock=lambda: morning, progress=progress)
        ticked = shop.tick(now=eleven, progress=progress)
        dispatched_later = shop.dispatch(channels, clock=lambda: eleven, progress=progress)
        elapsed = time.perf_counter() - started
    out(f"Sending (shop.dispatch into {'a JSON-lines file' if sent_path is None else sent_path}, no network), the 11:00 "
        f"tick and sending again ({elapsed:.2f}s):")
    out(f"  10:00  {dispatched}".replace("\n", "\n         "))
    out(f"  11:00  {ticked}".replace("\n", "\n         "))
    out(f"  11:00  {dispatched_later}".replace("\n", "\n         "))
    out("")
    started = time.perf_counter()
    simulated = simulate_responses(shop, seed=seed)
    simulation = time.perf_counter() - started
    out(f"Simulated responses ({simulation:.2f}s): {simulated.orders:,} orders and {simulated.clicks:,} clicks "
        f"(through shop.record_click) by the members of the measured campaigns, with these planted effects:")
    for campaign_id, truth in PLANTED.items():
        treated, held = simulated.members.get(campaign_id, (0, 0))
        out(f"  {campaign_id:<16} baseline {truth.baseline:.0%} for everyone, +{truth.effect * 100:.0f} pp for the "
            f"{treated:,} planned ({held:,} held out)")
    out("")
    started = time.perf_counter()
    report: CampaignReport = shop.report(list(PLANTED), since=when, until=when + timedelta(days=1), now=when + REPORT_AFTER)
    out(f"The campaign report (shop.report, {time.perf_counter() - started:.2f}s), read "
        f"{(when + REPORT_AFTER).isoformat()} when every 7-day window has closed:")
    out(str(report))
    out("")
    out("Planted versus measured (absolute lift in conversion rate, 95% interval):")
    for campaign_id, effect in PLANTED_EFFECTS.items():
        out("  " + _compare(campaign_id, effect, report))
    placebo = next((c for c, effect in PLANTED_EFFECTS.items() if effect == 0), None)
    if placebo is not None and placebo in report.lifts:
        credited = report.row(placebo)["attributed_conversions"]
        out(f"  The placebo {placebo!r} is credited with {credited:,} attributed (last-click) conversions: purchases its "
            f"readers made anyway. Only the holdout tells them apart from what a message causes.")
    out("  (The demo draws a 95% interval from one simulated week: about 1 in 20 misses its planted effect by "
        "chance, and below --scale 50000 the holdouts are small and the intervals wide.)")
    return report


def _compare(campaign_id: str, effect: float, report: CampaignReport) -> str:
    """One line: the planted effect, the measured lift and its interval, and whether the interval covers it."""
    lift = report.lifts.get(campaign_id)
    if lift is None:
        return f"{campaign_id:<16} planted {effect * 100:+.1f} pp, measured: no holdout lift in the report"
    row = lift.columns()
    measured, low, high = row["absolute_lift"], row["absolute_lift_low"], row["absolute_lift_high"]
    if measured is None:
        counts = (f"{lift.treated_conversions:,}/{lift.treated_n:,} treated vs {lift.holdout_conversions:,}/"
                  f"{lift.holdout_n:,} held out")
        if lift.treated_n and lift.holdout_n:
            difference = lift.treated_conversions / lift.treated_n - lift.holdout_conversions / lift.holdout_n
            counts = f"{difference * 100:+.1f} pp ({counts})"
        why = lift.note or ("a group is empty" if not (lift.treated_n and lift.holdout_n) else "undefined")
        return f"{campaign_id:<16} planted {effect * 100:+.1f} pp, measured {counts}, no interval: {why}"
    if low is None or high is None:
        return f"{campaign_id:<16} planted {effect * 100:+.1f} pp, measured {measured * 100:+.1f} pp (interval undefined)"
    verdict = "covers the planted effect" if low <= effect <= high else "MISSES the planted effect"
    return (f"{campaign_id:<16} planted {effect * 100:+.1f} pp, measured {measured * 100:+.1f} pp "
            f"[{low * 100:+.1f}, {high * 100:+.1f}]: {verdict}")
