"""The DSL's JSON contract: parsing, round trips, errors with paths, JSON Schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

import shopcrm
from shopcrm.dsl import NODE_KEYS, And, Attribute, Performed, parse_rule, rule_json_schema
from strategies import rule_dicts
from tests_dsl_seed import SEED


@settings(max_examples=200)
@given(rule_dicts())
def test_json_round_trip_is_exact(data: dict[str, Any]) -> None:
    rule = parse_rule(data)
    assert parse_rule(rule.to_json()) == rule
    assert parse_rule(rule.to_dict()) == rule
    assert json.loads(rule.to_json()) == rule.to_dict()


def test_the_seed_example_parses_into_the_documented_tree() -> None:
    rule = parse_rule(json.dumps(SEED))
    assert isinstance(rule, And)
    first = rule.and_[0]
    assert isinstance(first, Performed)
    assert first.times is not None
    assert first.times.gte == 3
    last = rule.and_[3]
    assert isinstance(last, Attribute)
    assert last.between == (20, 39)
    assert rule.to_dict() == SEED


def test_error_names_the_json_path_the_value_and_what_is_valid() -> None:
    bad = {"and": [{"everyone": True}, {"performed": "x", "within": {"last": "30 days"}}]}
    with pytest.raises(shopcrm.RuleError) as info:
        parse_rule(bad)
    assert str(info.value) == (
        "and[1].performed.within.last: '30 days' is not a duration; use forms like '30d', '12h', 'P30D'"
    )
    assert info.value.path == "and[1].performed.within.last"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("rule", "path", "fragment"),
    [
        ({"bogus": 1}, "", "one of the keys and, or, not"),
        ({"attribute": "age", "gte": 1, "colour": 2}, "attribute.colour", "not allowed here"),
        ({"attribute": "age"}, "attribute", "needs at least one operator"),
        ({"and": []}, "and", "at least 1 item"),
        ({"performed": "x", "times": {"contains": "a"}}, "performed.times", "cannot compare times"),
        ({"performed": "x", "times": {"gte": "3"}}, "performed.times", "compared with numbers"),
        ({"performed": "x", "within": {"last": "1M"}}, "performed.within.last", "months and years"),
        ({"performed": "x", "within": {"last": "P1Y"}}, "performed.within.last", "months and years"),
        ({"performed": "x", "within": {"next": "1d"}}, "performed.within", "a window is one of"),
        ({"performed": "x", "within": {"ago": {}}}, "performed.within.ago", "at least one of gte"),
        ({"attribute": "1abc", "eq": 1}, "attribute", "is not a field name"),
        ({"sample": {"percent": 101, "salt": "s"}}, "sample.percent", "less than or equal to 100"),
        ({"performed": "x", "within": {"between": ["2026-02-01", "2026-01-01"]}}, "performed.within.between", "starts after it ends"),
        ({"aggregate": "median", "of": "amount", "performed": "x", "gte": 1}, "aggregate", "median"),
    ],
)
def test_invalid_rules_say_where_and_why(rule: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(shopcrm.RuleError) as info:
        parse_rule(rule)
    assert info.value.path == path
    assert fragment in str(info.value)


def test_values_are_never_coerced_between_types() -> None:
    rule = parse_rule({"performed": "x", "where": {"amount": 0, "flag": False, "code": "0"}})
    assert isinstance(rule, Performed)
    assert rule.where is not None
    assert [type(v) for v in rule.where.values()] == [int, bool, str]


def test_bad_json_text_is_a_rule_error() -> None:
    with pytest.raises(shopcrm.RuleError, match="not valid JSON"):
        parse_rule("{not json")
    with pytest.raises(shopcrm.RuleError, match="JSON object"):
        parse_rule([1, 2])


def test_json_schema_lists_every_node_for_ui_builders() -> None:
    schema = rule_json_schema()
    text = json.dumps(schema)
    for key in NODE_KEYS:
        assert f'"{key}"' in text, key
    assert schema["discriminator"] if "discriminator" in schema else schema.get("oneOf") or schema.get("anyOf")
