"""Malformed rules are a RuleError naming the rule path: never another exception.

Each targeted test covers one kind of bad input; the fuzz tests feed arbitrary JSON
values, bytes, text and builder arguments to every entry point and accept only a
RuleError, or a rule that then compiles and evaluates without any other exception.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from shopcrm.compiler import to_sql
from shopcrm.dsl import (
    MAX_DEPTH,
    And,
    Attribute,
    Everyone,
    Not,
    aggregate,
    attr,
    did,
    did_not,
    first_did,
    last_did,
    parse_rule,
    resolve_segments,
    sample,
    segment,
)
from shopcrm.reference import evaluate
from strategies import rule_dicts

NOW = datetime(2026, 3, 1, 12, 0, 0)
# fixed instants to evaluate at, two of them at the ends of what timestamps hold
NOWS = (NOW, datetime(1, 1, 2), datetime(9999, 12, 31, 23, 59, 59))
CUSTOMERS: list[dict[str, Any]] = [
    {"customer_id": 1, "age": 30, "grade": "VIP", "score": 1.5, "vip": True, "signed_up_at": datetime(2026, 2, 1)},
    {"customer_id": 2, "age": None, "grade": "a", "score": None, "vip": False, "signed_up_at": None},
]
EVENTS: list[dict[str, Any]] = [
    {"customer_id": 1, "event": "order_completed", "ts": datetime(2026, 2, 20), "amount": 5, "category": "shoes"},
    {"customer_id": 1, "event": "product_viewed", "ts": datetime(2026, 2, 28), "amount": None, "category": "bags"},
    {"customer_id": 2, "event": "cart_added", "ts": datetime(2025, 12, 1), "amount": 2, "category": None},
]


def _raises_rule_error(call: Callable[[], object], path: str | None, fragment: str = "") -> shopcrm.RuleError:
    with pytest.raises(shopcrm.RuleError) as info:
        call()
    if path is not None:
        assert info.value.path == path, str(info.value)
    str(info.value).encode("utf-8")  # every message prints
    assert fragment in str(info.value)
    return info.value


# ------------------------------------------------------------ non-finite numbers
@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"attribute": "age", "gte": NaN}', "attribute.gte"),
        ('{"attribute": "age", "lt": Infinity}', "attribute.lt"),
        ('{"attribute": "age", "between": [-Infinity, 3]}', "attribute.between[0]"),
        ('{"attribute": "age", "in": [1, NaN]}', "attribute.in[1]"),
        ('{"performed": "x", "times": {"gte": Infinity}}', "performed.times.gte"),
        ('{"aggregate": "sum", "of": "amount", "performed": "x", "gte": NaN}', "aggregate.gte"),
        ('{"performed": "x", "where": {"amount": {"eq": NaN}}}', "performed.where.amount.eq"),
    ],
)
def test_non_finite_numbers_are_refused_not_compiled_to_identifiers(text: str, path: str) -> None:
    error = _raises_rule_error(lambda: parse_rule(text), path, "not a finite number")
    assert str(error).startswith(path)
    _raises_rule_error(lambda: to_sql(text, now=NOW), path)
    _raises_rule_error(lambda: parse_rule(json.loads(text)), path)


def test_integers_outside_64_bits_are_refused() -> None:
    _raises_rule_error(lambda: parse_rule({"attribute": "age", "gte": 2**63}), "attribute.gte", "64-bit")
    _raises_rule_error(lambda: parse_rule({"attribute": "age", "gte": -(2**63) - 1}), "attribute.gte", "64-bit")
    _raises_rule_error(lambda: parse_rule({"attribute": "age", "gte": 10**400}), "attribute.gte", "401 digits")
    assert parse_rule({"attribute": "age", "gte": 2**63 - 1}) == Attribute(attribute="age", gte=2**63 - 1)
    # more digits than Python converts from text
    _raises_rule_error(lambda: parse_rule('{"attribute": "age", "gte": ' + "9" * 5000 + "}"), "", "not valid JSON")


# ------------------------------------------------------------------ durations
@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"performed": "x", "within": {"last": "99999999999999999d"}}, "performed.within.last"),
        ({"performed": "x", "within": {"ago": {"gte": "P99999999999999999D"}}}, "performed.within.ago.gte"),
        ({"last_performed": "x", "ago": {"lt": "9999999999999999w"}}, "last_performed.ago.lt"),
        ({"performed": "x", "not_followed_by": {"performed": "y", "within": "99999999999999h"}}, "performed.not_followed_by.within"),
        ({"attribute": "t", "ago": {"lt": "1" * 5000 + "d"}}, "attribute.ago.lt"),
    ],
)
def test_durations_too_long_for_a_timedelta_are_refused(rule: dict[str, Any], path: str) -> None:
    _raises_rule_error(lambda: parse_rule(rule), path, "duration")


# ------------------------------------------ windows outside the years 1 to 9999
@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"performed": "x", "within": {"last": "999999d"}}, "performed.within.last"),
        ({"and": [{"everyone": True}, {"performed": "x", "within": {"ago": {"gte": "1d", "lt": "999999d"}}}]}, "and[1].performed.within.ago.lt"),
        ({"not": {"aggregate": "sum", "of": "amount", "performed": "x", "within": {"last": "999999d"}, "gte": 1}}, "not.aggregate.within.last"),
        ({"first_performed": "x", "ago": {"gte": "999999d"}}, "first_performed.ago.gte"),
        ({"last_performed": "x", "where": {"t": {"ago": {"lt": "999999d"}}}, "ago": {"lt": "1d"}}, "last_performed.where.t.ago.lt"),
        ({"attribute": "signed_up_at", "ago": {"gt": "999999d"}}, "attribute.ago.gt"),
        ({"performed": "x", "where": {"t": {"ago": {"lte": "999999d"}}}}, "performed.where.t.ago.lte"),
        ({"or": [{"everyone": True}, {"performed": "x", "not_followed_by": {"performed": "y", "within": "3000000d"}}]}, "or[1].performed.not_followed_by.within"),
    ],
)
@pytest.mark.parametrize("dialect", ["duckdb", "sqlite"])
def test_windows_outside_the_years_1_to_9999_fail_alike_in_compiler_and_reference(
    rule: dict[str, Any], path: str, dialect: str
) -> None:
    parse_rule(rule)  # valid as such: it depends on now
    compiled = _raises_rule_error(lambda: to_sql(rule, dialect, now=NOW), path, "year")
    # the reference refuses it too, even with no data to read and where and/or would short-circuit
    for customers, events in (([], []), (CUSTOMERS, EVENTS)):
        evaluated = _raises_rule_error(lambda: evaluate(rule, customers, events, now=NOW), path)  # noqa: B023
        assert str(evaluated) == str(compiled)
    many = _raises_rule_error(
        lambda: shopcrm.compiler.compile_counts([Everyone(), parse_rule(rule)], shopcrm.compiler.infer_schema(parse_rule(rule)),
                                                now=NOW, dialect=dialect),
        f"[1].{path}",
    )
    assert "year" in str(many)


def test_the_longest_window_the_message_offers_is_accepted() -> None:
    error = _raises_rule_error(lambda: to_sql({"performed": "x", "within": {"last": "999999d"}}, now=NOW), "performed.within.last")
    longest = str(error).split("use at most '")[1].split("'")[0]
    rule = {"performed": "order_completed", "within": {"last": longest}}
    to_sql(rule, now=NOW)
    assert evaluate(rule, CUSTOMERS, EVENTS, now=NOW) == {1}
    follow = {"performed": "x", "not_followed_by": {"performed": "y", "within": "3000000d"}}
    error = _raises_rule_error(lambda: to_sql(follow, now=NOW), "performed.not_followed_by.within", "9999")
    longest = str(error).split("use at most '")[1].split("'")[0]
    follow["not_followed_by"] = {"performed": "y", "within": longest}
    to_sql(follow, now=NOW)


@pytest.mark.parametrize(
    "between",
    [["0001-01-01T00:00:00+05:00", "2020-01-01T00:00:00"], ["2020-01-01T00:00:00", "9999-12-31T23:00:00-05:00"]],
)
def test_between_outside_the_years_1_to_9999_in_utc_is_refused(between: list[str]) -> None:
    _raises_rule_error(lambda: parse_rule({"performed": "x", "within": {"between": between}}), "performed.within.between", "9999")


def test_timestamp_values_outside_the_years_1_to_9999_in_utc_fail_alike() -> None:
    rule = {"attribute": "signed_up_at", "gte": "9999-12-31T23:00:00-05:00"}
    schema = shopcrm.schema.Schema(
        shopcrm.schema.Table("customers", {"customer_id": shopcrm.schema.ColumnType.INTEGER, "signed_up_at": shopcrm.schema.ColumnType.TIMESTAMP}),
        shopcrm.schema.Table("events", {"customer_id": shopcrm.schema.ColumnType.INTEGER, "event": shopcrm.schema.ColumnType.STRING,
                                        "ts": shopcrm.schema.ColumnType.TIMESTAMP}),
    )
    compiled = _raises_rule_error(lambda: to_sql(rule, now=NOW, schema=schema), "attribute.gte", "9999")
    evaluated = _raises_rule_error(lambda: evaluate(rule, CUSTOMERS, [], now=NOW, schema=schema), "attribute.gte")
    assert str(evaluated) == str(compiled)


# -------------------------------------------------------------------- nesting
def _nested(kind: str, depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"attribute": "age", "gte": 1}
    for i in range(depth - 1):
        rule = {"not": rule} if kind == "not" else {kind: [rule, {"everyone": True}]} if i % 2 else {kind: [rule]}
    return rule


@pytest.mark.parametrize("kind", ["not", "and", "or"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 250, 300, 5000])
def test_rules_nested_too_deeply_are_refused_at_the_first_node_too_deep(kind: str, depth: int) -> None:
    rule = _nested(kind, depth)
    error = _raises_rule_error(lambda: parse_rule(rule), _path_at(rule, MAX_DEPTH), "nest at most")
    if depth < 900:  # json.dumps itself recurses
        _raises_rule_error(lambda: parse_rule(json.dumps(rule)), error.path)
        _raises_rule_error(lambda: evaluate(json.dumps(rule), CUSTOMERS, EVENTS, now=NOW), error.path)


def _path_at(rule: dict[str, Any], depth: int) -> str:
    """The path of the node nested ``depth`` levels below the top (following the first child)."""
    path = ""
    for _ in range(depth):
        key = next(k for k in ("not", "and", "or") if k in rule)
        if key == "not":
            path, rule = f"{path}.not".lstrip("."), rule["not"]
        else:
            path, rule = f"{path}.{key}[0]".lstrip("."), rule[key][0]
    return path


def test_json_text_nested_beyond_any_stack_is_a_rule_error() -> None:
    for text in ("[" * 100_000 + "]" * 100_000, '{"not":' * 100_000 + '{"everyone": true}' + "}" * 100_000):
        _raises_rule_error(lambda: parse_rule(text), "", "deep")  # noqa: B023 - called at once


def test_containers_nested_too_deeply_inside_a_leaf_are_refused() -> None:
    deep: Any = 1
    for _ in range(1000):
        deep = [deep]
    error = _raises_rule_error(lambda: parse_rule({"attribute": "age", "in": deep}), None, "at most 72 levels")
    assert error.path == "attribute.in" + "[0]" * 71
    looped: dict[str, Any] = {}
    looped["not"] = looped
    _raises_rule_error(lambda: parse_rule(looped), "not." * (MAX_DEPTH - 1) + "not", "nest at most")


def test_models_nested_too_deeply_are_refused_by_every_entry_point() -> None:
    model: Any = Attribute(attribute="age", gte=1)
    for _ in range(300):
        model = Not(not_=And(and_=[Everyone(), model]))
    path = _raises_rule_error(lambda: parse_rule(model), "not.and[1]." * 15 + "not.and[0]", "nest at most").path
    _raises_rule_error(lambda: to_sql(model, now=NOW), path)
    _raises_rule_error(lambda: evaluate(model, CUSTOMERS, EVENTS, now=NOW), path)
    schema = shopcrm.compiler.infer_schema(Attribute(attribute="age", gte=1))
    _raises_rule_error(lambda: shopcrm.compiler.compile_members(model, schema, now=NOW, dialect="duckdb"), path)
    _raises_rule_error(lambda: shopcrm.compiler.compile_counts([model], schema, now=NOW, dialect="sqlite"), path)


def test_chains_of_named_segments_count_toward_the_depth() -> None:
    named = {f"s{i}": parse_rule({"in_segment": f"s{i + 1}"}) for i in range(2000)}
    named["s2000"] = Everyone()
    _raises_rule_error(lambda: resolve_segments(parse_rule({"in_segment": "s0"}), named.get), "", "nest at most")
    _raises_rule_error(lambda: evaluate({"in_segment": "s0"}, CUSTOMERS, EVENTS, now=NOW, segments=named), "", "nest at most")
    short = {f"s{i}": parse_rule({"in_segment": f"s{i + 1}"}) for i in range(5)}
    short["s5"] = Everyone()
    assert resolve_segments(parse_rule({"in_segment": "s0"}), short.get) == Everyone()


@pytest.mark.parametrize("kind", ["not", "and", "or"])
def test_rules_as_deep_as_allowed_compile_everywhere_and_evaluate(kind: str) -> None:
    leaf = {"performed": "order_completed", "where": {"amount": {"in": [5, 6]}}, "within": {"ago": {"lt": "30d"}},
            "not_followed_by": {"performed": "x", "within": "1d"}, "times": {"between": [1, 2]}}
    rule: dict[str, Any] = leaf
    kinds = ["and", "not", "or", "not"] if kind == "not" else [kind]
    for i in range(MAX_DEPTH - 1):
        k = kinds[i % len(kinds)]
        rule = {"not": rule} if k == "not" else {k: [{"aggregate": "avg", "of": "amount", "performed": "x", "gte": 1}, rule]}
    model = parse_rule(rule)
    for dialect in shopcrm.compiler.DIALECTS:
        to_sql(model, dialect, now=NOW)
    evaluate(model, CUSTOMERS, EVENTS, now=NOW)


# ---------------------------------------------------------------- bytes, text
@pytest.mark.parametrize(
    "data",
    [b'{"everyone": true, "x": "\xff"}', b"\xff\xfe{", b"\x80", b'{"attribute": "grade", "eq": "\xc3"}'],
)
def test_invalid_utf8_is_a_rule_error(data: bytes) -> None:
    _raises_rule_error(lambda: parse_rule(data), "", "not valid")
    _raises_rule_error(lambda: to_sql(data, now=NOW), "")
    _raises_rule_error(lambda: evaluate(data, CUSTOMERS, EVENTS, now=NOW), "")


def test_an_encoded_surrogate_is_refused_where_it_stands() -> None:
    # json.loads lets UTF-8-encoded surrogates through ('surrogatepass'); the value check catches them
    data = b'{"attribute": "grade", "eq": "\xed\xa0\x80"}'
    _raises_rule_error(lambda: parse_rule(data), "attribute.eq", "not valid Unicode text")


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"attribute": "grade", "eq": "\ud800"}, "attribute.eq"),
        ({"attribute": "grade", "contains": "a\udfffb"}, "attribute.contains"),
        ({"performed": "x\ud800"}, "performed"),
        ({"sample": {"percent": 10, "salt": "\udc00"}}, "sample.salt"),
        ({"in_segment": "\ud800"}, "in_segment"),
        ({"performed": "x", "where": {"category": "nul\x00"}}, "performed.where.category"),
    ],
)
def test_text_that_has_no_utf8_form_or_holds_nul_is_refused(rule: dict[str, Any], path: str) -> None:
    error = _raises_rule_error(lambda: parse_rule(rule), path)
    str(error).encode("utf-8")  # the message itself is printable
    _raises_rule_error(lambda: parse_rule(json.dumps(rule)), path)


def test_a_surrogate_in_a_field_name_makes_a_printable_message() -> None:
    error = _raises_rule_error(lambda: parse_rule({"performed": "x", "where": {"a\ud800": 1}}), None, "not a field name")
    assert error.path.startswith("performed.where.a")


# ------------------------------------------------------------ strict values
# "0 is not False": a value of the wrong JSON type is refused, with what would be right, never read leniently
@pytest.mark.parametrize("flag", ["no", "yes", "true", "false", 1, 0, 1.0, "", [], {}])
def test_is_null_takes_true_or_false_only(flag: Any) -> None:
    for rule, path in (({"attribute": "age", "is_null": flag}, "attribute.is_null"),
                       ({"performed": "x", "where": {"age": {"is_null": flag}}}, "performed.where.age.is_null")):
        error = _raises_rule_error(lambda: parse_rule(rule), path, "is_null takes true or false")  # noqa: B023
        assert "{'is_null': true}" in str(error)
        _raises_rule_error(lambda: parse_rule(json.dumps(rule)), path)  # noqa: B023
    _raises_rule_error(lambda: attr("age").is_null(flag), "attribute.is_null", "is_null takes true or false")


@pytest.mark.parametrize(
    ("between", "path"),
    [
        ([0, 1700000000], "performed.within.between[0]"),
        (["2026-01-01T00:00:00", 1700000000], "performed.within.between[1]"),
        ([1.5e9, "2026-01-01"], "performed.within.between[0]"),
        ([True, "2026-01-01"], "performed.within.between[0]"),
    ],
)
def test_a_between_window_takes_iso_datetimes_not_numbers(between: list[Any], path: str) -> None:
    rule = {"performed": "x", "within": {"between": between}}
    _raises_rule_error(lambda: parse_rule(rule), path, "is not an ISO 8601 datetime")
    _raises_rule_error(lambda: did("x").within(between=tuple(between)), path, "Unix")
    parse_rule({"performed": "x", "within": {"between": ["2026-01-01", datetime(2026, 2, 1)]}})  # text or datetimes


@pytest.mark.parametrize("percent", ["50", "12.5", True, False, None, [50]])
def test_a_sample_percent_is_a_number(percent: Any) -> None:
    rule = {"sample": {"percent": percent, "salt": "s"}}
    _raises_rule_error(lambda: parse_rule(rule), "sample.percent", "a number from 0 to 100")
    _raises_rule_error(lambda: sample(percent, "s"), "sample.percent", "a number from 0 to 100")
    assert parse_rule({"sample": {"percent": 12.5, "salt": "s"}}).sample.percent == 12.5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rule", "path", "fragment"),
    [
        ({"attribute": "age", "in": [1, "a"]}, "attribute.in", "mixes a number and a string"),
        ({"attribute": "age", "not_in": ["a", True]}, "attribute.not_in", "mixes a string and true/false"),
        ({"attribute": "age", "between": [1, "a"]}, "attribute.between", "mixes a number and a string"),
        ({"performed": "x", "where": {"a": {"in": [True, 0]}}}, "performed.where.a.in", "mixes true/false and a number"),
        ({"attribute": "vip", "gt": False}, "attribute.gt", "true and false have no order"),
        ({"attribute": "vip", "between": [False, True]}, "attribute.between", "true and false have no order"),
        ({"performed": "x", "where": {"properties.f": {"lte": True}}}, "performed.where.properties.f.lte", "no order"),
    ],
)
def test_values_of_one_operator_are_of_one_kind(rule: dict[str, Any], path: str, fragment: str) -> None:
    error = _raises_rule_error(lambda: parse_rule(rule), path, fragment)
    assert "eq, ne, in or not_in" in str(error) or "of one kind" in str(error)
    parse_rule({"attribute": "age", "in": [1, 2.5], "between": [0, 1e9]})  # integers and floats are one kind


# -------------------------------------------------------------------- builder
@pytest.mark.parametrize(
    ("build", "path"),
    [
        (lambda: did("x").within("30 days"), "performed.within.last"),
        (lambda: did("x").within(30), "performed.within.last"),
        (lambda: did("x").within("1d", ago={"lt": "2d"}), "performed.within"),
        (lambda: did("x").within(ago=5), "performed.within.ago"),
        (lambda: did("x").within(between=7), "performed.within.between"),
        (lambda: did("x").within(between=("2026-02-01", "2026-01-01")), "performed.within.between"),
        (lambda: did("x").within("999999999999999999999d"), "performed.within.last"),
        (lambda: did(5), "performed"),
        (lambda: did(""), "performed"),
        (lambda: did("x", amount=float("nan")), "performed.where.amount"),
        (lambda: did("x", **{"1bad": 1}), "performed.where.1bad.[key]"),
        (lambda: did("x").where(amount=[]), "performed.where.amount.in"),
        (lambda: did("x").times(often=3), "performed.times.often"),
        (lambda: did("x").times(gte="3"), "performed.times"),
        (lambda: did("x").not_followed_by("y", within="soon"), "performed.not_followed_by.within"),
        (lambda: did_not(None), "performed"),  # type: ignore[arg-type]
        (lambda: attr(3), "attribute"),  # type: ignore[arg-type]
        (lambda: attr("1abc"), "attribute"),
        (lambda: attr("age").between([1], 2), "attribute.between[0]"),
        (lambda: attr("age") >= float("inf"), "attribute.gte"),
        (lambda: attr("age").isin(5), "attribute.in"),
        (lambda: attr("age").isin([]), "attribute.in"),
        (lambda: attr("age").not_in(None), "attribute"),  # None: no operator given
        (lambda: attr("age").where(around=3), "attribute.around"),
        (lambda: attr("t").ago(lt="30 days"), "attribute.ago.lt"),
        (lambda: attr("t").ago(), "attribute.ago"),
        (lambda: attr("grade").contains(5), "attribute.contains"),
        (lambda: aggregate("median", "amount", "x"), "aggregate"),
        (lambda: aggregate("sum", "1x", "x"), "aggregate.of"),
        (lambda: aggregate("sum", "amount", "x").within("forever"), "aggregate.within.last"),
        (lambda: aggregate("sum", "amount", "x") >= "lots", "aggregate"),
        (lambda: last_did("x").ago(soon="1d"), "last_performed.ago.soon"),
        (lambda: first_did(7), "first_performed"),  # type: ignore[arg-type]
        (lambda: sample(200, "s"), "sample.percent"),
        (lambda: sample(float("nan"), "s"), "sample.percent"),
        (lambda: sample(10, 5), "sample.salt"),  # type: ignore[arg-type]
        (lambda: segment(""), "in_segment"),
        (lambda: did("x") & 5, ""),
    ],
)
def test_builder_arguments_are_checked_with_the_rule_path(build: Callable[[], object], path: str) -> None:
    _raises_rule_error(build, path)


def test_builder_errors_read_like_json_errors() -> None:
    with pytest.raises(shopcrm.RuleError) as info:
        did("x").within("30 days")
    assert str(info.value) == "performed.within.last: '30 days' is not a duration; use forms like '30d', '12h', 'P30D'"


# ----------------------------------------------------------------------- fuzz
KEYS = (
    "and", "or", "not", "everyone", "performed", "aggregate", "of", "first_performed", "last_performed",
    "attribute", "in_segment", "sample", "percent", "salt", "lifecycle", "moment", "rfm", "cycle", "where",
    "within", "times", "not_followed_by", "last", "ago", "between", "eq", "ne", "lt", "lte", "gt", "gte",
    "in", "not_in", "contains", "starts_with", "is_null", "amount", "age", "grade", "signed_up_at", "category",
)
WORDS = (
    "30d", "1h", "P30D", "999999d", "3000000d", "99999999999999999999d", "P1Y", "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:00:00-05:00", "2026-01-01T00:00:00", "order_completed", "product_viewed", "sum", "avg", "max",
    "count_distinct", "amount", "age", "grade", "signed_up_at", "properties.color", "any", "loyal", "champions",
    "at_risk", "\ud800", "a\x00", "", " ",
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.sampled_from(WORDS),
    st.sampled_from([2**63, -(2**63) - 1, 10**400, float("nan"), float("inf"), -float("inf"), 1e308]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), children, max_size=4),
    ),
    max_leaves=25,
)


def _deep(value: Any, kinds: list[str]) -> Any:
    for kind in kinds:
        value = {"not": value} if kind == "not" else [value] if kind == "list" else {kind: [value]}
    return value


deep_values = st.builds(_deep, json_values, st.lists(st.sampled_from(["not", "and", "or", "list"]), max_size=400))


@st.composite
def mutated_rules(draw: st.DrawFn) -> Any:
    """A valid rule with one value replaced by (or one key added with) an arbitrary JSON value."""
    rule: Any = draw(rule_dicts())
    places: list[tuple[Any, Any]] = []
    stack = [rule]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            places.extend((node, key) for key in node)
            places.append((node, draw(st.sampled_from(KEYS))))
            stack.extend(node.values())
        elif isinstance(node, list):
            places.extend((node, i) for i in range(len(node)))
            stack.extend(node)
    container, key = draw(st.sampled_from(places))
    container[key] = draw(st.one_of(json_values, deep_values))
    return rule


def _runs_or_rule_error(rule: Any, now: datetime) -> None:
    """A RuleError, or a rule that compiles and evaluates without any other exception."""
    try:
        model = parse_rule(rule)
    except shopcrm.RuleError as exc:
        str(exc).encode("utf-8")
        return
    for dialect in ("duckdb", "sqlite", "mysql"):
        try:
            to_sql(model, dialect, now=now).encode("utf-8")
        except shopcrm.RuleError as exc:
            str(exc).encode("utf-8")
    try:
        evaluate(model, CUSTOMERS, EVENTS, now=now)
    except shopcrm.RuleError as exc:
        str(exc).encode("utf-8")


fuzz = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@fuzz
@given(st.one_of(json_values, deep_values), st.sampled_from(NOWS))
def test_arbitrary_json_values_are_rules_or_rule_errors(value: Any, now: datetime) -> None:
    _runs_or_rule_error(value, now)
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        return
    _runs_or_rule_error(text, now)
    _runs_or_rule_error(text.encode("utf-8", "surrogatepass"), now)


@fuzz
@given(mutated_rules(), st.sampled_from(NOWS))
def test_rules_with_one_arbitrary_value_are_rules_or_rule_errors(rule: Any, now: datetime) -> None:
    _runs_or_rule_error(rule, now)


@fuzz
@given(st.one_of(st.binary(max_size=64), st.text(max_size=64), st.text(alphabet=st.sampled_from('{}[]":,0123456789.eE-+ntrufalsNIy\\\ud800'), max_size=64)))
def test_arbitrary_bytes_and_text_are_rules_or_rule_errors(data: bytes | str) -> None:
    _runs_or_rule_error(data, NOW)
    with contextlib.suppress(shopcrm.RuleError):
        to_sql(data, now=NOW)


builder_args = st.one_of(json_values, st.datetimes(), st.binary(max_size=4), st.tuples(scalars, scalars), st.sets(st.integers(), max_size=3))
builder_kwargs = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.from_regex(r"[a-z_]{1,6}", fullmatch=True)), builder_args, max_size=3)


@st.composite
def builder_calls(draw: st.DrawFn) -> Callable[[], Any]:
    """One builder chain with arbitrary arguments at each step."""
    arg, kwargs = draw(builder_args), draw(builder_kwargs)
    start = draw(st.sampled_from(["did", "did_not", "attr", "aggregate", "last_did", "first_did", "segment", "sample"]))
    steps = draw(st.lists(st.tuples(
        st.sampled_from(["where", "within", "within_ago", "within_between", "times", "not_followed_by", "eq", "gte", "lt",
                         "between", "isin", "not_in", "contains", "starts_with", "is_null", "ago", "and", "or", "invert"]),
        builder_args, builder_kwargs), max_size=3))
    event = draw(st.one_of(st.sampled_from(["order_completed", "x"]), builder_args))

    def call() -> Any:
        made: Any
        if start in ("did", "did_not", "last_did", "first_did"):
            made = {"did": did, "did_not": did_not, "last_did": last_did, "first_did": first_did}[start](event, **kwargs)
        elif start == "attr":
            made = attr(draw_name)
        elif start == "aggregate":
            made = aggregate(arg, "amount", event, **kwargs)
        elif start == "segment":
            made = segment(arg)
        else:
            made = sample(arg, event)
        for name, value, options in steps:
            method = {"within_ago": "within", "within_between": "within", "and": "__and__", "or": "__or__",
                      "invert": "__invert__"}.get(name, name)
            fn = getattr(made, method, None)
            if not callable(fn):  # not a builder step here (a rule model's field of that name is data, e.g. ~~did(..))
                continue
            if name == "within_ago":
                made = fn(ago=value)
            elif name == "within_between":
                made = fn(between=value)
            elif name in ("where", "times", "ago"):
                made = fn(**options)
            elif name == "between":
                made = fn(value, value)
            elif name == "invert":
                made = fn()
            elif name == "not_followed_by":
                made = fn(value, **options)
            else:
                made = fn(value)
        return made

    draw_name = draw(st.one_of(st.sampled_from(["age", "grade", "signed_up_at"]), builder_args))
    return call


@fuzz
@given(builder_calls(), st.sampled_from(NOWS))
def test_builder_calls_with_arbitrary_arguments_are_rules_or_rule_errors(call: Callable[[], Any], now: datetime) -> None:
    try:
        made = call()
    except shopcrm.RuleError as exc:
        str(exc).encode("utf-8")
        return
    _runs_or_rule_error(made, now)


def test_a_lifecycle_rule_whose_lookbacks_reach_before_the_year_1_is_a_rule_error_everywhere() -> None:
    early = datetime(1, 1, 2)
    for dialect in ("duckdb", "postgres"):
        with pytest.raises(shopcrm.RuleError, match="look-back windows reach before the year 1"):
            to_sql({"lifecycle": "any"}, dialect, now=early)
    with pytest.raises(shopcrm.RuleError, match="look-back windows reach before the year 1"):
        evaluate(parse_rule({"lifecycle": "any"}), CUSTOMERS, EVENTS, now=early)
