"""The shell: a shop's tables as the compiler's relations, one query per request, rows out.

``for_customers`` is what the planner calls for message templates; ``recommend_table`` is ``Shop.recommend``.
Both run ONE query for the whole audience (:func:`shopcrm.recommend._sql.recommend_query`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from shopcrm.compiler._dialects import dialect_for
from shopcrm.recommend._sql import OUTPUT_COLUMNS, recommend_query
from shopcrm.recommend._strategies import (
    CATALOG_EVENTS,
    Recommendation,
    RecommendError,
    parse_filters,
    parse_request,
)
from shopcrm.schema import ColumnType, Table
from shopcrm.timeline import to_utc_naive

if TYPE_CHECKING:
    from shopcrm._view import ShopView

__all__ = ["ITEM_KEYS", "TABLE_COLUMNS", "for_customers", "recommend_rows", "recommend_table"]

_EPOCH = datetime(1970, 1, 1)
#: the catalog columns an item carries besides its id, category and price
DETAILS = ("name", "image_url", "product_url")
#: the keys of one item of :func:`for_customers`
ITEM_KEYS = ("product_id", "name", "price", "category", "image_url", "product_url", "strategy")
#: the columns of ``Shop.recommend``'s table
TABLE_COLUMNS = ("customer_id", "rank", "product_id", "score", "strategy", "name", "price", "category", "image_url",
                 "product_url")


def _us(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _c(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _as(expression: exp.Expr, name: str) -> exp.Expr:
    return exp.alias_(expression, name, quoted=True)


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


def _instant(now: datetime | str | None) -> datetime:
    return to_utc_naive(now) if now is not None else datetime.now(UTC).replace(tzinfo=None)


class _Relations:
    def __init__(self, shop: ShopView) -> None:
        self.shop = shop
        self.source = shop.source
        self.dialect = self.source.dialect
        self.quirks = dialect_for(self.dialect)
        self.schema = self.source.schema()
        self.events_table = self.schema.events
        self.catalog: Table | None = self.schema.products
        self.numeric_ids = self.schema.customers.type_of("customer_id").is_numeric
        self.registered: list[str] = []
        if not self.events_table.has("product_id"):
            raise RecommendError(f"the events table {self.events_table.name!r} has no 'product_id' column, which the "
                                 f"recommenders read; it has {sorted(self.events_table.columns)}")

    def events(self, now: datetime) -> exp.Expr:
        t, q = self.events_table, self.quirks
        where: list[exp.Expr] = [exp.In(this=_c("event", "ev"), expressions=[exp.Literal.string(n) for n in CATALOG_EVENTS]),
                                 exp.Not(this=exp.Is(this=_c("product_id", "ev"), expression=exp.Null()))]
        if self.dialect != "sqlite":  # a plain timestamp comparison the scan can use (SQLite keeps milliseconds)
            where.append(exp.LT(this=_c("ts", "ev"), expression=q.timestamp_literal(now)))

        def optional(name: str) -> exp.Expr:
            return _c(name, "ev") if t.has(name) else exp.Null()

        inner = exp.select(
            _as(_c("customer_id", "ev"), "customer"), _as(_c("event", "ev"), "event"),
            _as(_c("product_id", "ev"), "product_id"), _as(optional("category"), "category"),
            _as(optional("price"), "price"),
            _as(q.epoch_micros(q.timestamp_column(_c("ts", "ev"))), "ts_us"),
        ).from_(t.relation("ev")).where(exp.and_(*where))
        return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("e", quoted=True)))

    def products(self, request: Recommendation) -> tuple[exp.Expr | None, tuple[str, ...]]:
        table = self.catalog
        if table is None:
            if request.filters.needs_catalog:
                raise RecommendError(
                    f"the filters {', '.join(request.filters.needs_catalog)} need the shop's catalog (Schema.products) "
                    "and this shop has none; load products first or leave those filters out")
            return None, ()
        f = request.filters
        if f.in_stock and not (table.has("stock") or table.has("available")):
            raise RecommendError(f"in_stock reads the catalog's 'stock' or 'available' column; {table.name!r} has "
                                 f"neither (it has {sorted(table.columns)})")
        if f.has_image and not table.has("image_url"):
            raise RecommendError(f"has_image reads the catalog's 'image_url' column; {table.name!r} has none "
                                 f"(it has {sorted(table.columns)})")
        wanted = ("product_id", "category", "price", "stock", "available", "image_url", *DETAILS)
        inner = exp.select(*[_as(_c(n, "pc") if table.has(n) else exp.Null(), n) for n in dict.fromkeys(wanted)]
                           ).from_(table.relation("pc"))
        return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("p", quoted=True))), DETAILS

    def customer_value(self, value: Any) -> Any:
        if self.numeric_ids and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        if not self.numeric_ids and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    def _literal_rows(self, columns: Sequence[str], rows: Sequence[tuple[Any, ...]], alias: str) -> exp.Expr:
        """A relation of literal rows (a VALUES list; an empty relation when there are none)."""
        if not rows:
            empty = exp.select(*[_as(exp.Null(), c) for c in columns]).where(exp.false())
            return exp.Subquery(this=empty, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        values = exp.values([tuple(exp.convert(v) for v in row) for row in rows], alias="lv",
                            columns=None if self.dialect == "sqlite" else list(columns))
        if self.dialect == "sqlite":  # SQLite names a VALUES list's columns column1, column2, ...
            picked = [_as(exp.column(f"column{i + 1}"), c) for i, c in enumerate(columns)]
        else:
            picked = [_c(c, "lv") for c in columns]
        query = exp.select(*picked).from_(values)
        return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))

    def _register(self, columns: dict[str, list[Any]], alias: str) -> exp.Expr | None:
        """An Arrow table registered with the shop's DuckDB connection (fast for 100k ids), or None elsewhere."""
        con = getattr(self.source, "con", None)
        if self.dialect != "duckdb" or con is None or not hasattr(con, "register"):
            return None
        import pyarrow as pa

        name = f"shopcrm_rec_{uuid.uuid4().hex[:12]}"
        con.register(name, pa.table(columns))
        self.registered.append(name)
        return exp.alias_(exp.to_table(name, quoted=True), alias, table=True)

    def audience(self, customers: Any, now: datetime) -> tuple[exp.Expr, list[Any] | None]:
        """The audience relation and, for given ids, those ids (in the customers table's type)."""
        if customers is None:
            inner = exp.select(_as(_c("customer_id", "cu"), "customer")).from_(self.schema.customers.relation("cu"))
            return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("a", quoted=True))), None
        if isinstance(customers, Mapping) or hasattr(customers, "model_dump"):
            from shopcrm.compiler import compile_members

            members = compile_members(self.shop._resolve(customers), self.schema, now=now, dialect=self.dialect,
                                      lifecycle_policy=self.shop.lifecycle_policy)
            inner = exp.select(_as(_c("customer_id", "mb"), "customer")).from_(
                exp.Subquery(this=members, alias=exp.TableAlias(this=exp.to_identifier("mb", quoted=True))))
            return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("a", quoted=True))), None
        ids = [customers] if isinstance(customers, str | int) else list(customers)
        ids = list(dict.fromkeys(self.customer_value(c) for c in ids))
        registered = self._register({"customer": ids}, "a")
        if registered is not None:
            return registered, ids
        return self._literal_rows(("customer",), [(c,) for c in ids], "a"), ids

    def exclusions(self, per_customer: Mapping[Any, Sequence[str]]) -> exp.Expr:
        rows = [(self.customer_value(c), str(p)) for c, ps in per_customer.items()
                for p in ([ps] if isinstance(ps, str) else ps)]
        registered = self._register({"customer": [r[0] for r in rows], "product_id": [r[1] for r in rows]}, "xe")
        return registered if registered is not None else self._literal_rows(("customer", "product_id"), rows, "xe")

    @contextmanager
    def session(self) -> Iterator[_Relations]:
        try:
            yield self
        finally:
            con = getattr(self.source, "con", None)
            for name in self.registered:
                con.unregister(name)  # type: ignore[union-attr]


def _request(strategy: Any, k: int, exclude: Any, filters: dict[str, Any]) -> tuple[Recommendation, Any]:
    per_customer = exclude if isinstance(exclude, Mapping) else None
    global_exclude = None if per_customer is not None or exclude is None else exclude
    fallback = filters.pop("fallback", None)
    parsed = parse_filters(filters.pop("filters", None), exclude=global_exclude, **filters)
    return parse_request(strategy, k=k, filters=parsed, fallback=fallback), per_customer


def _fetch(shop: ShopView, customers: Any, *, strategy: Any, k: int, now: datetime | str | None, exclude: Any,
           arrow: bool, **filters: Any) -> tuple[Any, tuple[str, ...], list[Any] | None]:
    """The rows of ONE query (an Arrow table with ``arrow=True`` on DuckDB), their column names, the given ids."""
    request, per_customer = _request(strategy, k, exclude, dict(filters))
    at = _instant(now)
    r = _Relations(shop)
    with r.session():
        products, details = r.products(request)
        audience, ids = r.audience(customers, at)
        query = recommend_query(request, events=r.events(at), audience=audience, dialect=r.quirks, now_us=_us(at),
                                products=products, exclusions=None if per_customer is None else r.exclusions(per_customer),
                                attributes=True, details=details, ordered=arrow, everyone=customers is None)
        names = (*OUTPUT_COLUMNS, "category", "price", *details)
        if arrow:
            return shop.source.fetch_arrow(query, list(names)), names, ids
        return shop.source.fetch(query), names, ids


def recommend_rows(shop: ShopView, customers: Any, *, strategy: Any = "personal", k: int = 10,
                   now: datetime | str | None = None, exclude: Any = None,
                   **filters: Any) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """Every recommended row as a dict of :data:`TABLE_COLUMNS` (sorted by customer and rank) and, when ids were
    given, those ids."""
    fetched, names, ids = _fetch(shop, customers, strategy=strategy, k=k, now=now, exclude=exclude, arrow=False,
                                 **filters)
    norm = _Relations(shop).customer_value
    rows = []
    for found in fetched:
        row = {name: _text(value) for name, value in zip(names, found, strict=True)}
        row["customer_id"] = norm(row.pop("customer"))  # MySQL's exact comparison returns ids as bytes
        row["rank"] = int(row["rank"])
        row["score"] = float(row["score"])
        row["price"] = None if row["price"] is None else float(row["price"])
        for name in DETAILS:
            row.setdefault(name, None)
        rows.append({c: row[c] for c in TABLE_COLUMNS})
    rows.sort(key=lambda row: (str(type(row["customer_id"])), row["customer_id"], row["rank"]))
    return rows, ids


def for_customers(shop: ShopView, customer_ids: Sequence[Any], *, strategy: Any = "personal", k: int = 10,
                  now: datetime | str | None = None, exclude: Any = None) -> dict[Any, list[dict[str, Any]]]:
    """Up to ``k`` products for each of ``customer_ids`` in ONE query, for message templates at plan time:
    ``{customer_id: [{product_id, name, price, category, image_url, product_url, strategy}, ...]}`` in rank order
    (every given id is a key; an id with nothing to show maps to ``[]``).

    ``strategy`` is a strategy name, dict or value, or a list (the whole fallback chain); a single one falls back
    along :data:`shopcrm.recommend.DEFAULT_FALLBACK` (``personal`` -> ``also_bought`` -> ``popular``).  ``exclude``
    is a list of product ids nobody gets, or ``{customer_id: [product ids]}`` (the item that triggered each
    customer's message).  Every strategy reads only events before ``now``."""
    out: dict[Any, list[dict[str, Any]]] = {c: [] for c in customer_ids}
    if not out:
        return out
    norm = _Relations(shop).customer_value
    given = {norm(c): c for c in out}
    arrow = shop.source.dialect == "duckdb" and hasattr(shop.source, "fetch_arrow")
    fetched, names, _ = _fetch(shop, list(out), strategy=strategy, k=k, now=now, exclude=exclude, arrow=arrow)
    if arrow:  # whole columns to Python at once (text already str), rows already in rank order
        none = [None] * fetched.num_rows
        columns = {n: fetched.column(n).to_pylist() for n in names}
        pick = [columns.get(n, none) for n in ("customer", "product_id", "name", "price", "category", "image_url",
                                                "product_url", "strategy")]
        same = all(k == v for k, v in given.items())
        for c, p, name, price, category, image, url, kind in zip(*pick, strict=True):
            key = c if same else given.get(c, c)
            items = out.get(key)
            if items is None:
                items = out[key] = []
            items.append({"product_id": p, "name": name, "price": price, "category": category, "image_url": image,
                          "product_url": url, "strategy": kind})
        return out
    found = sorted(fetched, key=lambda row: int(row[1]))
    at = {name: i for i, name in enumerate(names)}
    customer, product, price, category, kind = at["customer"], at["product_id"], at["price"], at["category"], at["strategy"]
    details = [(name, at.get(name)) for name in DETAILS]
    for row in found:
        item = {"product_id": _text(row[product]), "name": None, "price": None if row[price] is None else float(row[price]),
                "category": _text(row[category]), "image_url": None, "product_url": None, "strategy": _text(row[kind])}
        for name, i in details:
            if i is not None:
                item[name] = _text(row[i])
        c = norm(_text(row[customer]))  # MySQL's exact comparison returns ids as bytes
        out.setdefault(given.get(c, c), []).append(item)
    return out


def recommend_table(shop: ShopView, customers: Any = None, *, strategy: Any = "personal", k: int = 10,
                    now: datetime | str | None = None, exclude: Any = None, **filters: Any) -> Any:
    """``Shop.recommend``'s pyarrow Table (see :meth:`shopcrm.Shop.recommend`)."""
    import pyarrow as pa

    empty = customers is not None and not isinstance(customers, str | int | Mapping) and \
        not hasattr(customers, "model_dump") and not list(customers)
    id_type = pa.int64() if shop.source.schema().customers.type_of("customer_id") == ColumnType.INTEGER else pa.string()
    types = {"customer_id": id_type, "rank": pa.int32(), "product_id": pa.string(), "score": pa.float64(),
             "strategy": pa.string(), "name": pa.string(), "price": pa.float64(), "category": pa.string(),
             "image_url": pa.string(), "product_url": pa.string()}
    if not empty and shop.source.dialect == "duckdb" and hasattr(shop.source, "fetch_arrow"):
        # the engine's Arrow straight through: no Python object per row
        table, _, _ = _fetch(shop, customers, strategy=strategy, k=k, now=now, exclude=exclude, arrow=True, **filters)
        table = table.rename_columns(["customer_id" if n == "customer" else n for n in table.column_names])
        columns = {c: table.column(c).cast(types[c]) if c in table.column_names else pa.nulls(table.num_rows, types[c])
                   for c in TABLE_COLUMNS}
        return pa.table(columns)  # sorted by customer and rank by the engine
    rows = [] if empty else recommend_rows(shop, customers, strategy=strategy, k=k, now=now, exclude=exclude,
                                           **filters)[0]
    return pa.table({c: pa.array([row[c] for row in rows], type=types[c]) for c in TABLE_COLUMNS})
