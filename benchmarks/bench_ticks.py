"""Watermark ticks at scale (issue 15): a tick reads only what arrived since the last one.

    python benchmarks/bench_ticks.py                  # 1M customers, ~11M events
    python benchmarks/bench_ticks.py --scale 100000
    python benchmarks/bench_ticks.py --quick          # 20,000 customers

The shop: the synthetic generator's customers and events (cached as Parquet like the other benchmarks) in a
DuckDB file, the cart reminder, order confirmation, first-purchase cross-sell and VIP-upgrade playbooks enabled two
days before the shop's last morning, and a first tick at 10:00 Seoul recorded (it reads every scenario whole and
leaves the marks).  The file is built once (``benchmarks/data/ticks-v2-scale-N.duckdb``; v2: loaded since the customers
load keeps its index on the ids) and copied for each run.

Then, side by side in one process, each a dry run (nothing recorded, so it can be repeated: best of three,
alternating), a watermark tick against the same tick reading every scenario whole (``full=True``):

1. the idle tick 5 minutes later (no new event; a few reminders come due) -- target under 200 ms;
2. after one hour of new events (about 50,000: views, cart additions and orders copied from the shop's own
   events into the next hour, loaded with ``load_events``) -- target under 1 s.

Both ticks of a pair must plan the same messages, each equal whole (the script fails if they differ).  Never fails on timing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
from bench_segments import DATA, dataset, peak_rss_mib, yardstick

import shopcrm
from shopcrm.campaigns import MessagingPolicy

SCENARIO_NOW = datetime(2026, 11, 24, 1)  # 10:00 in Seoul, an hour after the synthetic shop's last event
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
PLAYBOOKS = ("cart_reminder", "order_completed", "first_purchase_cross_sell", "vip_upgrade")


def built(scale: int) -> Path:
    path = DATA / f"ticks-v2-scale-{scale}.duckdb"
    if path.exists():
        return path
    customers, events = dataset(scale)
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with shopcrm.Shop.open(partial) as shop:
        shop.load_customers(customers)
        shop.load_events(events)
        shop.messaging_policy = POLICY
        shop.save_settings()
        for name in PLAYBOOKS:
            shop.enable_playbook(name, now=SCENARIO_NOW - timedelta(days=2))
        first = shop.tick(now=SCENARIO_NOW)
    partial.rename(path)
    print(f"built {path.name} in {time.perf_counter() - started:.0f}s (first tick: {len(first.messages):,} planned)")
    return path


def best(runs: int, *measures: Callable[[], object]) -> list[tuple[float, object]]:
    """Each measure ``runs`` times, alternating; the best time of each and its last result."""
    times: list[list[float]] = [[] for _ in measures]
    results: list[object] = [None] * len(measures)
    for _ in range(runs):
        for i, measure in enumerate(measures):
            started = time.perf_counter()
            results[i] = measure()
            times[i].append(time.perf_counter() - started)
    return [(min(t), r) for t, r in zip(times, results, strict=True)]


def keys(result: object) -> set[str]:
    return {m.key for m in result.messages}  # type: ignore[attr-defined]


def messages(result: object) -> list[object]:
    return sorted(result.messages, key=lambda m: m.key)  # type: ignore[attr-defined]


def pair(shop: shopcrm.Shop, now: datetime, label: str, target: float) -> None:
    (fast, got), (slow, whole) = best(3, lambda: shop.tick(now=now, dry_run=True),
                                      lambda: shop.tick(now=now, dry_run=True, full=True))
    if keys(got) != keys(whole):
        raise SystemExit(f"{label}: the watermark tick planned {len(keys(got))} messages, the whole tick {len(keys(whole))}")
    if messages(got) != messages(whole):  # each message whole: renderings, contacts, instants, cost
        raise SystemExit(f"{label}: the watermark tick planned the same keys as the whole tick but other messages")
    verdict = "meets" if fast < target else "MISSES"
    print(f"  {label:<46} watermark {fast * 1000:8.0f} ms   whole {slow * 1000:8.0f} ms   = {slow / fast:5.1f}x faster"
          f"   ({len(keys(got)):,} planned; {verdict} the {target * 1000:.0f} ms target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--new-events", type=int, default=50_000)
    args = parser.parse_args()
    scale = 20_000 if args.quick else args.scale
    source = built(scale)
    print(f"\nshopcrm watermark ticks: {scale:,} customers, four scenarios, dry runs side by side (best of 3)")
    print(f"  {yardstick()}")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "shop.duckdb"
        shutil.copy(source, copy)
        with shopcrm.Shop.open(copy) as shop:
            pair(shop, SCENARIO_NOW + timedelta(minutes=5), "1. idle tick, 5 minutes later", 0.2)
            hour = SCENARIO_NOW + timedelta(minutes=5)
            con = duckdb.connect()
            _, events = dataset(scale)
            new = con.sql(
                f"SELECT * REPLACE (TIMESTAMP '{hour:%Y-%m-%d %H:%M:%S}' + to_microseconds(CAST(hash(row_number() OVER ()) "
                f"% 3600000000 AS BIGINT)) AS ts) FROM (SELECT * FROM read_parquet('{events}') "
                "WHERE event IN ('product_viewed', 'cart_added', 'order_completed')) "
                f"USING SAMPLE reservoir({int(args.new_events)} ROWS) REPEATABLE (7)"
            ).to_arrow_table()
            shop.load_events(new)
            counts = dict(con.execute("SELECT event, count(*) FROM new GROUP BY ALL ORDER BY ALL").fetchall())
            pair(shop, hour + timedelta(hours=1), f"2. after an hour of {new.num_rows:,} new events", 1.0)
            print(f"     new events: {counts}")
            started = time.perf_counter()
            recorded = shop.tick(now=hour + timedelta(hours=1))
            print(f"  the same tick recorded (outbox and marks)     {1000 * (time.perf_counter() - started):8.0f} ms   "
                  f"({recorded.recorded:,} rows)")
    print(f"\n  peak memory (RSS, whole process): {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
