"""Tracked segments at 1M customers: an incremental refresh after one hour of new events against a full recount
of the same segments, side by side in one run.

    python benchmarks/bench_membership.py                 # 1M customers, ~11M events, 50,000 new events an hour
    python benchmarks/bench_membership.py --quick         # 100k customers, 5,000 an hour
    python benchmarks/bench_membership.py --hours 5

Each hour: 50,000 events (sampled from the shop's own, moved into the hour) are appended (and checkpointed,
outside the timings: DuckDB's automatic checkpoint would otherwise land in whichever commit comes next), then the incremental
refresh (``shop.refresh_segments``: candidates, members, next changes, the membership tables, the entry and exit
events) and the anchor (``shop.members`` of every tracked segment's rule: what a refresh without boundaries must
at least compute) run at the hour's end.  Best of the hours for each.  Never fails on timing.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench_segments import yardstick

import shopcrm
from shopcrm.demo import DEMO_NOW

DATA = Path(__file__).parent / "data"
SEGMENTS: dict[str, dict[str, Any]] = {
    "buyers_30d": {"performed": "order_completed", "within": {"last": "30d"}},
    "big_spenders_90d": {"aggregate": "sum", "of": "amount", "performed": "order_completed", "within": {"last": "90d"},
                         "gte": 200_000},
    "lapsed": {"and": [{"performed": "order_completed"},
                       {"not": {"performed": "order_completed", "within": {"last": "60d"}}}]},
    "shoe_browsers_7d": {"performed": "product_viewed", "where": {"category": "shoes"}, "within": {"last": "7d"},
                         "times": {"gte": 3}},
    "new_this_week": {"attribute": "signed_up_at", "ago": {"lt": "7d"}},
}


def hour_of_events(shop: shopcrm.Shop, events: Path, start: Any, count: int, seed: int) -> Any:
    """``count`` of the shop's events, sampled, spread evenly over the hour from ``start`` (an Arrow table)."""
    con = shop.source.con  # type: ignore[attr-defined]
    return con.sql(
        f"SELECT customer_id, event, CAST(? AS TIMESTAMP) + to_microseconds(CAST((row_number() OVER () - 1) * "
        f"3600000000 // {count} AS BIGINT)) AS ts, category, product_id, price, amount, order_id, promotion_id "
        f"FROM (SELECT * FROM read_parquet(?) USING SAMPLE reservoir({count} ROWS) REPEATABLE ({seed}))",
        params=[start, str(events)]).to_arrow_table()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the 100k-customer shop")
    parser.add_argument("--hours", type=int, default=3)
    args = parser.parse_args()
    scale, per_hour = (100_000, 5_000) if args.quick else (1_000_000, 50_000)
    folder = DATA / f"v2-scale-{scale}-seed-0"
    if not (folder / "events.parquet").exists():
        raise SystemExit(f"no cached shop in {folder}; run benchmarks/bench_segments.py --scale {scale} once to make it")
    started = time.perf_counter()
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers(folder / "customers.parquet")
    shop.load_events(folder / "events.parquet")
    print(f"loaded {scale:,} customers in {time.perf_counter() - started:.1f}s")
    for name, rule in SEGMENTS.items():
        shop.save_segment(name, rule)
        shop.track_segment(name, now=DEMO_NOW)
    started = time.perf_counter()
    first = shop.refresh_segments(now=DEMO_NOW)
    print(f"first (full) refresh, members recorded: {time.perf_counter() - started:.2f}s")
    print(first)
    incremental, recount = float("inf"), float("inf")
    last: Any = None
    for hour in range(args.hours):
        start = DEMO_NOW + timedelta(hours=hour)
        shop.load_events(hour_of_events(shop, folder / "events.parquet", start, per_hour, seed=hour))
        # the hour's rows written to storage now: DuckDB checkpoints at whichever later commit finds enough written,
        # so the refresh pays only for the checkpoint its own writes bring (measured at 1M: rewriting the key index
        # of the next changes it moved, 0.5-1.2 s on a loaded machine; without those writes ~0.02 s)
        shop.source.con.execute("CHECKPOINT")  # type: ignore[attr-defined]
        now = start + timedelta(hours=1)
        gc.collect()
        began = time.perf_counter()
        last = shop.refresh_segments(now=now)
        incremental = min(incremental, time.perf_counter() - began)
        gc.collect()
        began = time.perf_counter()
        counted = {name: len(shop.members(name_rule, now=now)) for name, name_rule in SEGMENTS.items()}
        recount = min(recount, time.perf_counter() - began)
        assert counted == {c.segment: c.members for c in last.segments}, (counted, last)
    print(last)
    print(f"\n{'after one hour of ' + format(per_hour, ',') + ' events, ' + str(len(SEGMENTS)) + ' segments':<52} "
          f"{'best of ' + str(args.hours):>10}")
    print(yardstick())
    print(f"{'incremental refresh (entries, exits, events)':<52} {incremental:>9.3f}s   target < 1 s")
    print(f"{'full recount of the same segments (members)':<52} {recount:>9.3f}s")
    print(f"{'ratio (recount / incremental)':<52} {recount / incremental:>9.1f}x")


if __name__ == "__main__":
    main()
