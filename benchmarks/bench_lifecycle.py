"""Lifecycle benchmark on the synthetic shop: shop.lifecycle at scale, side by side with its parts.

    python benchmarks/bench_lifecycle.py                 # 1M customers, ~11M events
    python benchmarks/bench_lifecycle.py --quick

Prints times and peak memory; never fails on timing.
"""

from __future__ import annotations

import argparse

from bench_segments import NOW, best_of, dataset, peak_rss_mib

import shopcrm
from shopcrm.compiler import render
from shopcrm.lifecycle._sql import compile_lifecycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale, repeat = (20_000, 1) if args.quick else (args.scale, args.repeat)
    customers, events = dataset(scale)
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers(customers)
    shop.load_events(events)
    con = shop.source.con  # type: ignore[attr-defined]
    sql = render(compile_lifecycle(shop.schema, now=NOW, dialect="duckdb"), "duckdb")
    query_s, rows = best_of(repeat, lambda: con.execute(sql).fetchall())
    rows_s, _ = best_of(repeat, lambda: shop.lifecycle_rows(now=NOW))
    table_s, table = best_of(repeat, lambda: shop.lifecycle(now=NOW))
    summary_s, summary = best_of(repeat, lambda: shop.lifecycle_summary(now=NOW))
    rule_s, count = best_of(repeat, lambda: shop.count({"lifecycle": "first_purchase", "moment": "cart_abandoned"}, now=NOW))
    print(f"\nshopcrm lifecycle benchmark: {scale:,} customers, best of {repeat}")
    print(f"{'lifecycle SQL on DuckDB, rows fetched':<52} {query_s * 1000:>9.0f}ms")
    print(f"{'shop.lifecycle_rows (+ Python row objects)':<52} {rows_s * 1000:>9.0f}ms")
    print(f"{'shop.lifecycle (Arrow table)':<52} {table_s * 1000:>9.0f}ms")
    print(f"{'shop.lifecycle_summary':<52} {summary_s * 1000:>9.0f}ms")
    print(f"{'count first_purchase/cart_abandoned (a DSL rule)':<52} {rule_s * 1000:>9.0f}ms  ({count:,} customers)")
    try:
        import pandas as pd
        from lifetimes.utils import summary_data_from_transaction_data
    except ImportError:
        print("(install the bench extra for the lifetimes comparison: pip install -e '.[bench]')")
    else:
        orders = pd.read_parquet(events, columns=["customer_id", "event", "ts", "amount"])
        orders = orders[(orders["event"] == "order_completed") & (orders["ts"] < pd.Timestamp(NOW))]
        lt_s, summary_lt = best_of(
            repeat,
            lambda: summary_data_from_transaction_data(
                orders, "customer_id", "ts", monetary_value_col="amount", observation_period_end=pd.Timestamp(NOW), freq="D"
            ),
        )
        print(f"{'lifetimes summary_data_from_transaction_data':<52} {lt_s * 1000:>9.0f}ms  "
              f"shop.lifecycle {lt_s / table_s:.1f}x faster (target >= 3x; {len(summary_lt):,} buyers)")
    print(f"{'peak memory (RSS, whole process)':<52} {peak_rss_mib():>9.0f}MiB")
    print(f"rows: {len(rows):,}; table columns: {', '.join(table.column_names)}")
    print(f"stages: {dict(summary.by_stage)}")



if __name__ == "__main__":
    main()
