"""The recommendation compiler on SQLite, PostgreSQL, MySQL (MariaDB) and Spark against the pure reference, on
random small shops (DuckDB's run is tests/recommend/test_recommend_sql.py): the same lists on every engine."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings

from recommend.recommend_shops import EVENT_COLUMNS, PRODUCT_COLUMNS, RecShop, check, relations, shops
from shopcrm.compiler._dialects import dialect_for
from shopcrm.recommend._sql import recommend_query

SLOW = settings(max_examples=40, deadline=None,
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


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
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
