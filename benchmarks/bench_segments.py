"""Segment benchmarks on the synthetic shop: ratios measured side by side in one run.

    python benchmarks/bench_segments.py                 # 1M customers, ~11M events
    python benchmarks/bench_segments.py --quick         # 20k customers, smoke run
    python benchmarks/bench_segments.py --scale 200000 --repeat 5 --json

Never fails on timing: it prints times, ratios against the targets, and peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import shopcrm
from shopcrm.demo import DEMO_NOW, SEED_RULES, generate, write_parquet

DATA = Path(__file__).parent / "data"
NOW = DEMO_NOW


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def yardstick() -> str:
    """How fast this machine is, in two figures that do not depend on the library: the best of 3 of a pure-Python
    loop (the sum of 10 million integers, one core) and of a DuckDB aggregate (the hash of 50 million integers, every
    core).  The benchmarks print it first: a figure from a machine whose yardstick is twice as long is not a
    regression (docs/demo.md lists the yardsticks of the machines its figures come from)."""
    import duckdb

    def timed(work: Callable[[], object]) -> float:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started

    python = min(timed(lambda: sum(range(10_000_000))) for _ in range(3))
    con = duckdb.connect()
    engine = min(timed(lambda: con.execute("SELECT sum(hash(i)) FROM range(50000000) t(i)").fetchall()) for _ in range(3))
    return f"machine yardstick: Python loop {python * 1000:.0f} ms, DuckDB hash {engine * 1000:.0f} ms (lower is faster)"


def dataset(scale: int) -> tuple[Path, Path]:
    # the generator's version is part of the name: v2 added the kakao_friend column
    folder = DATA / f"v2-scale-{scale}-seed-0"
    customers, events = folder / "customers.parquet", folder / "events.parquet"
    if not events.exists():
        started = time.perf_counter()
        write_parquet(generate(scale, seed=0, now=NOW), folder)
        print(f"generated {scale:,} customers in {time.perf_counter() - started:.1f}s -> {folder}")
    return customers, events


def hand_written_seed_sql() -> str:
    """The best hand-written DuckDB SQL for the seed rule: set operations over filtered subqueries."""
    now = NOW.strftime("%Y-%m-%d %H:%M:%S")
    since = (NOW - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
    return f"""
    SELECT COUNT(*) FROM (
        SELECT customer_id FROM events
        WHERE event = 'product_viewed' AND category = 'shoes'
          AND ts > TIMESTAMP '{since}' AND ts < TIMESTAMP '{now}'
        GROUP BY customer_id HAVING COUNT(*) >= 3
        INTERSECT
        SELECT customer_id FROM events
        WHERE event = 'order_completed' AND product_id IN ('P1', 'P2') AND ts < TIMESTAMP '{now}'
        INTERSECT
        SELECT customer_id FROM customers WHERE age BETWEEN 20 AND 39
        EXCEPT
        SELECT customer_id FROM events
        WHERE event = 'promotion_joined' AND promotion_id = 'PROMO1' AND ts < TIMESTAMP '{now}'
    )"""


def pandas_seed(customers: Any, events: Any) -> int:
    """A straightforward pandas implementation of the seed rule."""
    import pandas as pd

    now = pd.Timestamp(NOW)
    past = events[events["ts"] < now]
    views = past[(past["event"] == "product_viewed") & (past["category"] == "shoes") & (past["ts"] > now - pd.Timedelta(days=30))]
    viewers = views.groupby("customer_id").size()
    viewers = set(viewers[viewers >= 3].index)
    buyers = set(past.loc[(past["event"] == "order_completed") & past["product_id"].isin(["P1", "P2"]), "customer_id"])
    joined = set(past.loc[(past["event"] == "promotion_joined") & (past["promotion_id"] == "PROMO1"), "customer_id"])
    aged = set(customers.loc[customers["age"].between(20, 39), "customer_id"])
    return len((viewers & buyers & aged) - joined)


def twenty_rules() -> list[dict[str, Any]]:
    categories = ["shoes", "bags", "outer", "tops", "bottoms", "beauty", "kids", "living", "sports", "accessories"]
    rules: list[dict[str, Any]] = [
        {"performed": "product_viewed", "where": {"category": c}, "within": {"last": "30d"}, "times": {"gte": 2}} for c in categories
    ]
    rules += [
        SEED_RULES["shoe_buyers_20s_30s"],
        SEED_RULES["vip_spenders"],
        SEED_RULES["signup_dropoff"],
        SEED_RULES["buyers_no_session_90d"],
        SEED_RULES["cooling_off_buyers"],
        SEED_RULES["seoul_gold_kakao"],
        {"aggregate": "count_distinct", "of": "product_id", "performed": "order_completed", "within": {"last": "180d"}, "gte": 3},
        {"and": [{"performed": "cart_added", "within": {"last": "7d"}}, {"performed": "order_completed", "within": {"last": "7d"}, "times": {"eq": 0}}]},
        {"last_performed": "order_completed", "ago": {"gte": "60d", "lt": "120d"}},
        {"and": [{"attribute": "age", "lt": 25}, {"not": {"sample": {"percent": 10, "salt": "bench"}}}]},
    ]
    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20k customers, one repeat")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    scale, repeat = (20_000, 1) if args.quick else (args.scale, args.repeat)
    customers_path, events_path = dataset(scale)
    results: dict[str, Any] = {"scale": scale}

    # -- load
    shop = shopcrm.Shop.open(":memory:")
    started = time.perf_counter()
    shop.load_customers(customers_path)
    loaded_events = shop.load_events(events_path)
    results["load_s"] = time.perf_counter() - started
    results["events"] = loaded_events
    results["rss_after_load_mib"] = peak_rss_mib()

    # -- the seed rule: Shop.count vs hand-written set-operation SQL vs pandas
    seed = SEED_RULES["shoe_buyers_20s_30s"]
    con = shop.source.con  # type: ignore[attr-defined]
    shop_s, shop_count = best_of(repeat, lambda: shop.count(seed, now=NOW))
    hand_s, hand_row = best_of(repeat, lambda: con.execute(hand_written_seed_sql()).fetchone())
    assert shop_count == hand_row[0], (shop_count, hand_row)
    import pandas as pd

    customers_df = pd.read_parquet(customers_path, columns=["customer_id", "age"])
    events_df = pd.read_parquet(events_path, columns=["customer_id", "event", "ts", "category", "product_id", "promotion_id"])
    pandas_s, pandas_count = best_of(repeat, lambda: pandas_seed(customers_df, events_df))
    assert pandas_count == shop_count, (pandas_count, shop_count)
    customers_df = events_df = None  # free the memory before the next measurements
    results.update(seed_count=shop_count, shop_count_s=shop_s, hand_sql_s=hand_s, pandas_s=pandas_s)

    # -- 20 rules: one count_many vs 20 counts
    rules = twenty_rules()
    for name, rule in SEED_RULES.items():
        shop.save_segment(name, rule)
    # alternating, best of `repeat` each: count_many and its anchor under the same load
    many_s = single_s = float("inf")
    for _ in range(repeat):
        once, many = best_of(1, lambda: shop.count_many(rules, now=NOW))
        many_s = min(many_s, once)
        once, singles = best_of(1, lambda: [shop.count(r, now=NOW) for r in rules])
        single_s = min(single_s, once)
    assert many == singles
    # the same 20 counts as 20 one-pass queries: what count_many shares
    from shopcrm.compiler import render
    from shopcrm.compiler._compile import QueryBuilder
    from shopcrm.compiler._dialects import dialect_for
    from shopcrm.dsl import parse_rule

    def one_pass(rule: Any) -> int:
        builder = QueryBuilder(shop.schema, NOW, dialect_for("duckdb"))
        return int(con.execute(render(builder.counts([parse_rule(rule)]), "duckdb")).fetchone()[0])

    one_pass_s, one_pass_counts = best_of(repeat, lambda: [one_pass(r) for r in rules])
    assert one_pass_counts == many
    results.update(count_many_20_s=many_s, count_20_separately_s=single_s, count_20_one_pass_s=one_pass_s)
    results["peak_rss_mib"] = peak_rss_mib()

    ratio_hand = shop_s / hand_s
    ratio_pandas = pandas_s / shop_s
    ratio_many = single_s / many_s
    print()
    print(f"shopcrm segment benchmarks: {scale:,} customers, {loaded_events:,} events, best of {repeat}")
    print(yardstick())
    print(f"{'measure':<46} {'time':>10}  {'ratio':>8}  target")
    print(f"{'load customers + events from Parquet':<46} {results['load_s']:>9.2f}s  {'':>8}  < 10 s")
    print(f"{'seed rule: Shop.count':<46} {shop_s * 1000:>8.1f}ms  {'1.00x':>8}")
    print(f"{'seed rule: hand-written DuckDB set operations':<46} {hand_s * 1000:>8.1f}ms  {ratio_hand:>7.2f}x  Shop within 1.3x")
    print(f"{'seed rule: pandas':<46} {pandas_s * 1000:>8.1f}ms  {ratio_pandas:>7.1f}x  Shop >= 5x faster")
    print(f"{'20 rules: one count_many':<46} {many_s * 1000:>8.1f}ms  {'1.00x':>8}")
    print(f"{'20 rules: 20 separate counts':<46} {single_s * 1000:>8.1f}ms  {ratio_many:>7.1f}x  count_many >= 3x faster")
    print(f"{'20 rules: 20 separate one-pass queries':<46} {one_pass_s * 1000:>8.1f}ms  {one_pass_s / many_s:>7.1f}x  (what count_many shares)")
    print(f"{'peak memory (RSS, whole process)':<46} {results['peak_rss_mib']:>8.0f}MiB")
    print(f"seed rule audience: {shop_count:,} customers")
    results.update(ratio_shop_vs_hand=ratio_hand, ratio_pandas_vs_shop=ratio_pandas, ratio_separate_vs_many=ratio_many)
    if args.json:
        print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
