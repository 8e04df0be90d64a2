"""The recommendation compiler on SQLite, PostgreSQL, MySQL (MariaDB) and Spark against the pure reference, on
random small shops (DuckDB's run is tests/recommend/test_recommend_sql.py): the same lists on every engine."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings

from engines.loaders import duckdb_shop, sqlite_shop
from recommend.recommend_shops import EVENT_COLUMNS, PRODUCT_COLUMNS, RecShop, check, relations, shops
from shopcrm.compiler._dialects import dialect_for
from shopcrm.recommend import for_customers
from shopcrm.recommend._sql import recommend_query
from strategies import RandomShop
from strategies import shops as rule_shops

SLOW = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
COLUMNS = {"events": EVENT_COLUMNS, "products": PRODUCT_COLUMNS, "audience": ("customer",),
           "exclusions": ("customer", "product_id")}


def _ddl(shop: RecShop, text: str, big: str, double: str, boolean: str) -> dict[str, str]:
    id_type = big if shop.id_kind == "int" else text
    return {
        "events": f"(customer {id_type}, event {text}, product_id {text}, category {text}, price {double}, ts_us {big})",
        "products": f"(product_id {text}, category {text}, price {double}, stock {big}, available {boolean}, "
                    f"image_url {text})",
        "audience": f"(customer {id_type})",
        "exclusions": f"(customer {id_type}, product_id {text})",
    }


def _load_dbapi(con: Any, shop: RecShop, ddl: dict[str, str], mark: str, prefix: str) -> None:
    cur = con.cursor()
    for name, columns in ddl.items():
        cur.execute(f"DROP TABLE IF EXISTS {prefix}{name}")
        cur.execute(f"CREATE TABLE {prefix}{name} {columns}")
        rows = shop.rows(name)
        if rows:
            cur.executemany(f"INSERT INTO {prefix}{name} VALUES ({', '.join([mark] * len(COLUMNS[name]))})", rows)
    cur.close()
    con.commit()


def _run(con: Any, shop: RecShop, dialect: str, prefix: str = "") -> list[tuple[Any, ...]]:
    query = recommend_query(shop.request, dialect=dialect_for(dialect), now_us=shop.now_us, everyone=shop.everyone, **relations(shop, prefix))
    cur = con.cursor()
    try:
        cur.execute(query.sql(dialect))
        return [tuple(r) for r in cur.fetchall()]
    except Exception:
        con.rollback()
        raise
    finally:
        cur.close()


@SLOW
@given(shop=shops())
def test_sqlite_agrees(shop: RecShop) -> None:
    con = sqlite3.connect(":memory:")
    _load_dbapi(con, shop, _ddl(shop, "TEXT", "INTEGER", "REAL", "BOOLEAN"), "?", "")
    check(_run(con, shop, "sqlite"), shop)


@SLOW
@given(shop=shops())
def test_postgres_agrees(postgres_loader: Any, shop: RecShop) -> None:
    con = postgres_loader.con
    prefix = f"rec_{shop.id_kind}_"
    _load_dbapi(con, shop, _ddl(shop, "TEXT", "BIGINT", "DOUBLE PRECISION", "BOOLEAN"), "%s", prefix)
    check(_run(con, shop, "postgres", prefix), shop)
    con.commit()


@SLOW
@given(shop=shops())
def test_mysql_agrees(mysql_loader: Any, shop: RecShop) -> None:
    con = mysql_loader.con
    prefix = f"rec_{shop.id_kind}_"
    _load_dbapi(con, shop, _ddl(shop, "VARCHAR(40)", "BIGINT", "DOUBLE", "BOOLEAN"), "%s", prefix)
    check(_run(con, shop, "mysql", prefix), shop)
    con.commit()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(shop=shops())
def test_spark_agrees(spark_loader: Any, shop: RecShop) -> None:
    from pyspark.sql import types as T

    spark = spark_loader.spark
    id_type = T.LongType() if shop.id_kind == "int" else T.StringType()
    types = {"customer": id_type, "price": T.DoubleType(), "ts_us": T.LongType(), "stock": T.LongType(),
             "available": T.BooleanType()}
    for name, columns in COLUMNS.items():
        schema = T.StructType([T.StructField(c, types.get(c, T.StringType())) for c in columns])
        spark.createDataFrame(shop.rows(name), schema).createOrReplaceTempView(f"rec_{name}")
    query = recommend_query(shop.request, dialect=dialect_for("spark"), now_us=shop.now_us, everyone=shop.everyone, **relations(shop, "rec_"))
    check([tuple(r) for r in spark.sql(query.sql("spark")).collect()], shop)


# -- the shell (shopcrm.recommend.for_customers / shop.recommend) over each engine's own shop tables ---------------
# The random shops of the rule tests (hostile ids and product texts, timestamps on window edges, strangers with
# events but no customer row), loaded by each engine's loader; every engine must give DuckDB's lists, which the
# tests above and tests/recommend hold to the reference.

CHAINS: list[Any] = [
    [{"kind": "also_bought", "min_support": 1}, "popular"],
    ["personal", {"kind": "also_viewed", "min_support": 1, "measure": "cosine"}, "viewed_not_bought",
     {"kind": "trending", "recent_days": 1, "baseline_days": 30, "event": "product_viewed", "smoothing": 1}],
]


def _lists(shop: Any, case: RandomShop) -> list[Any]:
    ids = [c["customer_id"] for c in case.customers] + ([10**7 + 1] if case.id_kind == "int" else ["nobody"])
    out = []
    for chain in CHAINS:
        out.append(for_customers(shop, ids, strategy=chain, k=3, now=case.now))
        out.append(for_customers(shop, ids, strategy=chain, k=2, now=case.now, exclude={ids[0]: ["a", "A"]}))
        table = shop.recommend(None, strategy=chain, k=2, now=case.now, not_bought=True, max_price=50.0)
        out.append(sorted(zip(*[table.column(c).to_pylist() for c in ("customer_id", "rank", "product_id", "strategy")],
                              strict=True), key=str))
    return out


SHELL = settings(max_examples=8, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SHELL
@given(case=rule_shops())
def test_sqlite_shop_lists(case: RandomShop) -> None:
    assert _lists(sqlite_shop(case), case) == _lists(duckdb_shop(case), case)


@SHELL
@given(case=rule_shops())
def test_postgres_shop_lists(postgres_loader: Any, case: RandomShop) -> None:
    assert _lists(postgres_loader(case), case) == _lists(duckdb_shop(case), case)


@SHELL
@given(case=rule_shops())
def test_mysql_shop_lists(mysql_loader: Any, case: RandomShop) -> None:
    assert _lists(mysql_loader(case), case) == _lists(duckdb_shop(case), case)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=rule_shops())
def test_spark_shop_lists(spark_loader: Any, case: RandomShop) -> None:
    assert _lists(spark_loader(case), case) == _lists(duckdb_shop(case), case)
