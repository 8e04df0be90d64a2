"""Where a shop keeps its customers and events: the mapping from the library's names to the shop's own.

Rules and the library speak of a ``customers`` table with ``customer_id`` and attribute columns, and an
``events`` table with ``customer_id``, ``event``, ``ts`` and a JSON ``properties`` column.  A shop whose
tables are called otherwise declares that once::

    Mapping(
        customers=CustomersMap("members", id="member_no", columns={"grade": "member_grade"}),
        events=EventsMap("activity_log", id="member_no", name="event_type", ts="occurred_at", properties="payload"),
        event_names={"order_completed": "ORDER_PAID"},
    )

and every query reads the shop's tables through it (see :meth:`shopcrm.schema.Table.relation`).  A mapping is
a plain value: :meth:`Mapping.to_dict` and :meth:`Mapping.from_dict` turn it into JSON and back.

:func:`resolve` checks a mapping against the columns a source found in the shop's tables and builds the
:class:`~shopcrm.schema.Schema` rules are compiled for; every problem is a :class:`~shopcrm.errors.MappingError`.
"""

from __future__ import annotations

import difflib
from collections import abc
from typing import Any

import attrs

from shopcrm.errors import MappingError
from shopcrm.schema import ColumnType, Schema, Table, check_identifier

__all__ = ["CustomersMap", "EventsMap", "Mapping", "ProductHistoryMap", "ProductsMap", "resolve"]


def _names(value: abc.Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


def _table_name(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    for part in value.split("."):
        check_identifier(part, f"{attribute.name} table name")


def _column(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_identifier(value, f"{attribute.name} column")


def _columns(_: Any, attribute: attrs.Attribute[Any], value: dict[str, str]) -> None:
    for library, shop in value.items():
        check_identifier(library, f"library name in {attribute.name}")
        check_identifier(shop, f"shop column in {attribute.name}")
    doubled = sorted({s for s in value.values() if list(value.values()).count(s) > 1})
    if doubled:
        raise ValueError(f"{attribute.name} maps several library names to the same column {doubled[0]!r}; map each column once")


@attrs.frozen
class CustomersMap:
    """The table of customers: its name, the column holding the customer id, and renamed attributes.

    ``columns`` maps a name rules use to the shop's column (``{"grade": "member_grade"}``); the table's
    other columns keep their own names.
    """

    table: str = attrs.field(default="customers", validator=_table_name)
    id: str = attrs.field(default="customer_id", validator=_column)
    columns: dict[str, str] = attrs.field(factory=dict, converter=_names, validator=_columns)

    def declared(self) -> dict[str, str]:
        """Every library column the mapping names -> the shop's column holding it."""
        return {"customer_id": self.id, **self.columns}


@attrs.frozen
class EventsMap:
    """The table of events: its name and the columns holding the customer id, the event's name, its time
    and its JSON properties.

    ``properties`` names the JSON (or JSON text) column whose keys rules read as ``properties.KEY``;
    ``None`` means a column called ``properties`` when there is one.  ``columns`` maps property names
    rules use to the shop's own property columns (``{"amount": "total_krw"}``).
    """

    table: str = attrs.field(default="events", validator=_table_name)
    id: str = attrs.field(default="customer_id", validator=_column)
    name: str = attrs.field(default="event", validator=_column)
    ts: str = attrs.field(default="ts", validator=_column)
    properties: str | None = attrs.field(default=None, validator=_column)
    columns: dict[str, str] = attrs.field(factory=dict, converter=_names, validator=_columns)

    def declared(self) -> dict[str, str]:
        """Every library column the mapping names -> the shop's column holding it."""
        out = {"customer_id": self.id, "event": self.name, "ts": self.ts, **self.columns}
        if self.properties is not None:
            out["properties"] = self.properties
        return out


@attrs.frozen
class ProductsMap:
    """The catalog: its table, the column holding the product id, and renamed columns (``{"name": "title",
    "price": "sale_price"}``; the library reads ``name``, ``category``, ``price``, ``stock``, ``image_url``,
    ``product_url`` and ``available``, and keeps other columns under their own names)."""

    table: str = attrs.field(default="products", validator=_table_name)
    id: str = attrs.field(default="product_id", validator=_column)
    columns: dict[str, str] = attrs.field(factory=dict, converter=_names, validator=_columns)

    def declared(self) -> dict[str, str]:
        """Every library column the mapping names -> the shop's column holding it."""
        return {"product_id": self.id, **self.columns}


@attrs.frozen
class ProductHistoryMap:
    """The catalog's history: one row per change of a product (``product_id``, ``ts`` and the ``price``,
    ``stock`` and ``available`` it had from ``ts`` on); ``columns`` renames those (``{"stock": "qty"}``)."""

    table: str = attrs.field(default="product_history", validator=_table_name)
    id: str = attrs.field(default="product_id", validator=_column)
    ts: str = attrs.field(default="ts", validator=_column)
    columns: dict[str, str] = attrs.field(factory=dict, converter=_names, validator=_columns)

    def declared(self) -> dict[str, str]:
        """Every library column the mapping names -> the shop's column holding it."""
        return {"product_id": self.id, "ts": self.ts, **self.columns}


def _event_names(_: Any, attribute: attrs.Attribute[Any], value: dict[str, str]) -> None:
    seen: dict[str, str] = {}
    for library, shop in value.items():
        if not library or not shop:
            raise ValueError("event_names maps a library event name to the shop's own; neither may be empty")
        if shop in seen:
            raise ValueError(
                f"event_names maps both {seen[shop]!r} and {library!r} to the shop's {shop!r}; "
                "a shop event can stand for one library event only"
            )
        seen[shop] = library


@attrs.frozen
class Mapping:
    """Which of the shop's tables and columns hold what the library reads (the defaults are its own names).

    ``event_names`` maps the library's event names to the shop's (``{"order_completed": "ORDER_PAID"}``):
    a rule saying ``did("order_completed")`` matches the shop's ``ORDER_PAID`` rows; events not named
    here keep their own names.

    ``products`` and ``product_history`` name the catalog's tables (:class:`ProductsMap`,
    :class:`ProductHistoryMap`); left out, tables called ``products`` and ``product_history`` are read when the
    shop has them (with a ``product_id`` column, and a ``ts`` for the history), and the shop has no catalog
    otherwise.
    """

    customers: CustomersMap = attrs.field(factory=CustomersMap)
    events: EventsMap = attrs.field(factory=EventsMap)
    event_names: dict[str, str] = attrs.field(factory=dict, converter=_names, validator=_event_names)
    products: ProductsMap | None = attrs.field(default=None, kw_only=True)
    product_history: ProductHistoryMap | None = attrs.field(default=None, kw_only=True)

    def product_tables(self) -> tuple[ProductsMap, ProductHistoryMap]:
        """The catalog's tables as read: the mapped ones, else the library's names."""
        return self.products or ProductsMap(), self.product_history or ProductHistoryMap()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "customers": {"table": self.customers.table, "id": self.customers.id, "columns": dict(self.customers.columns)},
            "events": {
                "table": self.events.table,
                "id": self.events.id,
                "name": self.events.name,
                "ts": self.events.ts,
                "properties": self.events.properties,
                "columns": dict(self.events.columns),
            },
            "event_names": dict(self.event_names),
            **({"products": attrs.asdict(self.products)} if self.products is not None else {}),
            **({"product_history": attrs.asdict(self.product_history)} if self.product_history is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: abc.Mapping[str, Any]) -> Mapping:
        """The mapping :meth:`to_dict` wrote (missing keys take the library's names)."""
        _known(data, {"customers", "events", "event_names", "products", "product_history"}, "mapping")
        customers = data.get("customers") or {}
        events = data.get("events") or {}
        _known(customers, {f.name for f in attrs.fields(CustomersMap)}, "customers")
        _known(events, {f.name for f in attrs.fields(EventsMap)}, "events")
        products, history = data.get("products"), data.get("product_history")
        if products is not None:
            _known(products, {f.name for f in attrs.fields(ProductsMap)}, "products")
        if history is not None:
            _known(history, {f.name for f in attrs.fields(ProductHistoryMap)}, "product_history")
        return cls(CustomersMap(**customers), EventsMap(**events), data.get("event_names") or {},
                   products=ProductsMap(**products) if products is not None else None,
                   product_history=ProductHistoryMap(**history) if history is not None else None)


def _known(data: Any, keys: set[str], where: str) -> None:
    if not isinstance(data, abc.Mapping):
        raise ValueError(f"{where} must be an object, not {type(data).__name__}")
    unknown = sorted(set(data) - keys)
    if unknown:
        raise ValueError(f"{where} has no key {unknown[0]!r}{_did_you_mean(unknown[0], sorted(keys))}; use {', '.join(sorted(keys))}")


def _did_you_mean(name: str, options: abc.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: declared types -> ColumnType; ``kind_of("bigint")``
KindOf = abc.Callable[[str], ColumnType]
_COMPARABLE = {ColumnType.STRING: "text", ColumnType.INTEGER: "number", ColumnType.FLOAT: "number"}


def resolve(
    mapping: Mapping,
    customers: abc.Mapping[str, str],
    events: abc.Mapping[str, str],
    *,
    kind_of: KindOf,
    types: abc.Mapping[str, ColumnType] | None = None,
    tables: abc.Sequence[str] = (),
    where: str = "this connection",
    compare_ids: bool = True,
    products: abc.Mapping[str, str] | None = None,
    product_history: abc.Mapping[str, str] | None = None,
) -> Schema:
    """The schema rules compile for, from the shop's tables' declared columns (``{column: declared type}``).

    An empty ``customers`` or ``events`` means the table was not found (``tables`` lists the ones that
    were, for a did-you-mean).  ``types`` overrides column types by the library's column name.  Raises
    :class:`MappingError` for a missing table or column, customer ids of different types in the two
    tables (unless ``compare_ids`` is false: SQLite compares a text id with a number by its value),
    or a properties column that holds neither JSON nor text.  ``products`` and ``product_history`` are the
    declared columns of the catalog's tables (:meth:`Mapping.product_tables`; empty or None: not found).
    """
    types = dict(types or {})
    for what, table, declared in (("customers", mapping.customers.table, customers), ("events", mapping.events.table, events)):
        if not declared:
            raise MappingError.at(
                f"{what}.table",
                f"no table {table!r} is visible through {where}{_did_you_mean(table, tables)}; "
                f"name the table that holds the {what} (Mapping({what}=...)) or create it",
            )
    customer_table = _table(mapping.customers.table, "customers", customers, mapping.customers.declared(), {}, kind_of, types)
    values = {"event": {library: shop for library, shop in mapping.event_names.items() if library != shop}}
    event_table = _table(mapping.events.table, "events", events, mapping.events.declared(), values, kind_of, types)
    kinds = {name: _COMPARABLE.get(t.type_of("customer_id")) for name, t in (("customers", customer_table), ("events", event_table))}
    if compare_ids and kinds["customers"] and kinds["events"] and kinds["customers"] != kinds["events"]:
        c_col, e_col = mapping.customers.id, mapping.events.id
        c_type, e_type = customers[c_col], events[e_col]
        raise MappingError.at(
            "events.id",
            f"the customer ids differ in type: {mapping.customers.table}.{c_col} is {c_type} but "
            f"{mapping.events.table}.{e_col} is {e_type}, and a text id does not compare reliably with a number "
            f"(PostgreSQL refuses to, MySQL compares them as floating-point numbers); give both columns the same "
            f"type (e.g. {e_type} in both, or a view over one that casts it)",
        )
    if mapping.events.properties is not None:
        kind = event_table.type_of("properties")
        if kind not in (ColumnType.JSON, ColumnType.STRING):
            raise MappingError.at(
                "events.properties",
                f"the properties column {mapping.events.table}.{mapping.events.properties} is "
                f"{events[mapping.events.properties]}, which holds no JSON; name a JSON, JSONB or text column "
                "holding a JSON object per event, or leave properties out",
            )
    catalog = _catalog(mapping, products or {}, product_history or {}, kind_of, tables, where)
    return Schema(customer_table, event_table, products=catalog[0], product_history=catalog[1])


def _catalog(
    mapping: Mapping, products: abc.Mapping[str, str], history: abc.Mapping[str, str], kind_of: KindOf,
    tables: abc.Sequence[str], where: str,
) -> tuple[Table | None, Table | None]:
    """The catalog's tables: a mapped table must exist and have its columns; an unmapped one is read when a table of
    the library's name has the library's id (and ts) columns."""
    out: list[Table | None] = []
    for what, given, declared, required in (("products", mapping.products, products, ("product_id",)),
                                            ("product_history", mapping.product_history, history, ("product_id", "ts"))):
        table = given or (ProductsMap() if what == "products" else ProductHistoryMap())
        if given is None and not all(c in declared for c in required):
            out.append(None)
            continue
        if not declared:
            raise MappingError.at(
                f"{what}.table",
                f"no table {table.table!r} is visible through {where}{_did_you_mean(table.table, tables)}; name the "
                f"table that holds the {what.replace('_', ' ')} ({'ProductsMap' if what == 'products' else 'ProductHistoryMap'}"
                "(table=...)) or leave it out of the mapping",
            )
        out.append(_table(table.table, what, declared, table.declared(), {}, kind_of, {}))
    return out[0], out[1]


def _table(
    name: str,
    what: str,
    existing: abc.Mapping[str, str],
    names: dict[str, str],
    values: dict[str, dict[str, str]],
    kind_of: KindOf,
    types: dict[str, ColumnType],
) -> Table:
    for library, shop in names.items():
        if shop in existing:
            continue
        key = {"customer_id": "id", "product_id": "id", "event": "name"}.get(library, library)
        path = f"{what}.{key}" if key in ("id", "name", "ts", "properties") else f"{what}.columns.{library}"
        found = f"{_did_you_mean(shop, existing)}; its columns are {', '.join(existing)}"
        if library == shop and library in ("customer_id", "product_id", "event", "ts"):
            message = f"the {what} table {name!r} has no {library!r} column{found}: say which column holds it ({path}=...)"
        else:
            message = f"the {what} table {name!r} has no column {shop!r}{found}; name the column that holds {library!r}"
        raise MappingError.at(path, message)
    renames = {library: shop for library, shop in names.items() if library != shop}
    to_library = {shop: library for library, shop in renames.items()}
    columns: dict[str, ColumnType] = {}
    sources: dict[str, str] = {}
    for shop, kind in existing.items():
        if shop in to_library:
            library = to_library[shop]
        elif shop in renames:
            continue  # named like a library column that another of the shop's columns stands for
        else:
            library = shop
        columns[library] = types.get(library) or (ColumnType.TIMESTAMP if library == "ts" else kind_of(kind))
        if library != shop:
            sources[library] = shop
    return Table(name, columns, sources=sources, values=values if values.get("event") else {})
