"""Recommendations at scale against hand-written DuckDB queries (issue 14, "Benchmarks").

    python benchmarks/bench_recommend.py                  # 1M customers (~11M events)
    python benchmarks/bench_recommend.py --scale 100000   # a tenth of it
    python benchmarks/bench_recommend.py --quick          # 20,000 customers

The shop is the demo generator's (``shopcrm.demo.generate``, cached as Parquet like the other benchmarks) loaded
into a DuckDB file (``benchmarks/data/recommend-v1-scale-N.duckdb``, built once).  Two measurements, each run
one after the other in one process, best of three:

1. ``shop.recommend(strategy=also_bought, fallback=())``: top-10 also-bought (lift, min_support 2) for EVERY
   customer, as an Arrow table, against ONE hand-written DuckDB query computing the same lists (to Arrow);
2. ``shopcrm.recommend.for_customers``: the recommendations a message template receives at plan time for a
   100,000-customer audience (also-bought falling back to popular, k=10, the dicts the templates read), against
   the hand-written query for the same audience fetched to Python tuples; and the query alone against the
   hand-written one, both to Arrow.

Prints both times and their ratio (the target: within 1.5x) and fails if the lists differ.  Never fails on timing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import duckdb
from bench_segments import DATA, best_of, dataset

import shopcrm
from shopcrm.demo import DEMO_NOW
from shopcrm.recommend import for_customers

VERSION = 1
NOW = DEMO_NOW
K = 10


def build(scale: int) -> Path:
    path = DATA / f"recommend-v{VERSION}-scale-{scale}.duckdb"
    if not path.exists():
        customers, events = dataset(scale)
        started = time.perf_counter()
        with shopcrm.Shop.open(path) as shop:
            shop.load_customers(customers)
            shop.load_events(events)
        print(f"loaded {scale:,} customers into {path} in {time.perf_counter() - started:.1f}s")
    return path


def hand_written(audience: str | None, fallback: bool) -> str:
    """Also-bought by lift (pairs of at least 2 distinct buyers; a customer's score for a product its best pair
    with anything they bought), top 10 per customer, ties by product id; optionally topped up by popularity."""
    now = NOW.strftime("%Y-%m-%d %H:%M:%S")
    who = "customers" if audience is None else audience
    # each product's category (the smallest its events name) and latest price, as the items carry them
    attributes = f"""
    , attrs AS (SELECT product_id AS p, min(category) AS category, arg_max(price, (ts, price)) AS price FROM events
                WHERE event IN ('product_viewed', 'cart_added', 'order_completed') AND ts < TIMESTAMP '{now}'
                  AND customer_id IS NOT NULL AND product_id IS NOT NULL GROUP BY ALL)"""
    popular = f"""
    , pop AS (SELECT p, count(*)::DOUBLE AS score FROM b GROUP BY p
              QUALIFY row_number() OVER (ORDER BY count(*) DESC, p) <= {K})
    , chain AS (SELECT c, p, score, 0 AS s, rn FROM ab
                UNION ALL
                SELECT a.customer_id, pop.p, pop.score, 1, row_number() OVER (PARTITION BY a.customer_id
                       ORDER BY pop.score DESC, pop.p) FROM {who} a, pop)
    , firsts AS (SELECT * FROM chain QUALIFY row_number() OVER (PARTITION BY c, p ORDER BY s, rn) = 1)
    , ranked AS (SELECT c, row_number() OVER (PARTITION BY c ORDER BY s, rn) AS rank, p, score,
                 CASE s WHEN 0 THEN 'also_bought' ELSE 'popular' END AS strategy FROM firsts QUALIFY rank <= {K})
    SELECT ranked.*, attrs.category, attrs.price FROM ranked LEFT JOIN attrs USING (p)""" if fallback else f"""
    SELECT c, rn AS rank, p, score, 'also_bought' AS strategy, attrs.category, attrs.price
    FROM ab LEFT JOIN attrs USING (p) WHERE rn <= {K} ORDER BY c, rank"""
    audience_join = "" if audience is None else f"SEMI JOIN {audience} a ON a.customer_id = b.c"
    return f"""
    WITH b AS (SELECT DISTINCT customer_id AS c, product_id AS p FROM events
               WHERE event = 'order_completed' AND ts < TIMESTAMP '{now}' AND product_id IS NOT NULL
                 AND customer_id IS NOT NULL),
    n AS (SELECT p, count(*) AS n FROM b GROUP BY p),
    tot AS (SELECT count(DISTINCT c) AS n FROM b),
    pairs AS (SELECT b1.p AS a, b2.p AS q, count(*) AS n FROM b b1 JOIN b b2 ON b1.c = b2.c AND b1.p <> b2.p
              GROUP BY ALL HAVING count(*) >= 2),
    lift AS (SELECT a, q, pairs.n::DOUBLE * tot.n::DOUBLE / (na.n::DOUBLE * nq.n::DOUBLE) AS lift
             FROM pairs JOIN n na ON na.p = pairs.a JOIN n nq ON nq.p = pairs.q, tot
             QUALIFY row_number() OVER (PARTITION BY a ORDER BY lift DESC, q) <= {K}),
    mine AS (SELECT * FROM b {audience_join}),
    per AS (SELECT mine.c, lift.q AS p, max(lift.lift) AS score FROM mine JOIN lift ON lift.a = mine.p GROUP BY ALL),
    ab AS (SELECT c, p, score, row_number() OVER (PARTITION BY c ORDER BY score DESC, p) AS rn FROM per)
    {attributes}
    {popular}
    """


def _lists(rows: Any) -> dict[Any, list[tuple[str, str]]]:
    out: dict[Any, list[tuple[int, str, str]]] = {}
    for c, rank, p, _score, strategy, *_ in rows:
        out.setdefault(c, []).append((int(rank), p, strategy))
    return {c: [(p, s) for _, p, s in sorted(items)] for c, items in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1_000_000, help="customers (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 customers")
    parser.add_argument("--audience", type=int, default=100_000, help="plan-time audience (default 100,000)")
    args = parser.parse_args()
    scale = 20_000 if args.quick else args.scale
    path = build(scale)
    with shopcrm.Shop.open(path, read_only=True) as shop:
        con: duckdb.DuckDBPyConnection = shop.source.con  # type: ignore[attr-defined]
        # 1. every customer's top-10 also-bought
        ours_s, ours = best_of(3, lambda: shop.recommend(strategy="also_bought", fallback=(), k=K, now=NOW))
        sql = hand_written(None, fallback=False)
        hand_s, hand = best_of(3, lambda: con.sql(sql).to_arrow_table())
        mine = _lists(zip(*[ours.column(c).to_pylist() for c in ("customer_id", "rank", "product_id", "score",
                                                                   "strategy")], strict=True))
        theirs = _lists(zip(*[hand.column(c).to_pylist() for c in ("c", "rank", "p", "score", "strategy")], strict=True))
        if mine != theirs:
            raise SystemExit("also-bought: shop.recommend and the hand-written query disagree")
        print(f"top-{K} also-bought, every customer ({scale:,}; {len(mine):,} with a list, {ours.num_rows:,} rows):")
        print(f"  shop.recommend {ours_s:7.2f}s   hand-written DuckDB {hand_s:7.2f}s   ratio {ours_s / hand_s:4.2f}x")

        # 2. a plan-time audience
        ids = [r[0] for r in con.sql(f"SELECT customer_id FROM customers ORDER BY hash(customer_id) "
                                     f"LIMIT {args.audience}").fetchall()]
        plan_s, planned = best_of(3, lambda: for_customers(shop, ids, strategy="also_bought", k=K, now=NOW))
        import pyarrow as pa

        from shopcrm.recommend._shop import _fetch

        query_s, _ = best_of(3, lambda: _fetch(shop, ids, strategy="also_bought", k=K, now=NOW, exclude=None,
                                                arrow=True))
        con.register("bench_audience", pa.table({"customer_id": ids}))
        sql = hand_written("bench_audience", fallback=True)
        hand_s, rows = best_of(3, lambda: con.sql(sql).fetchall())
        hand_arrow_s, _ = best_of(3, lambda: con.sql(sql).to_arrow_table())
        con.unregister("bench_audience")
        theirs = _lists(rows)
        mine = {c: [(i["product_id"], i["strategy"]) for i in items] for c, items in planned.items() if items}
        if mine != theirs:
            raise SystemExit("plan time: for_customers and the hand-written query disagree")
        items = sum(len(v) for v in planned.values())
        print(f"plan time, {len(ids):,} customers, also-bought -> popular ({items:,} items):")
        print(f"  for_customers  {plan_s:7.2f}s   hand-written DuckDB {hand_s:7.2f}s   ratio {plan_s / hand_s:4.2f}x"
              "   (dicts for the templates / the query's tuples)")
        print(f"  its query      {query_s:7.2f}s   hand-written DuckDB {hand_arrow_s:7.2f}s   "
              f"ratio {query_s / hand_arrow_s:4.2f}x   (both to Arrow)")


if __name__ == "__main__":
    main()
