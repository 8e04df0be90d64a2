"""The grouped preview (``campaigns/_preview_sql.py`` and ``sources/_preview_groups.py``) equals the per-customer
preview: on random recipients in Python (the groups counted by :func:`groups_of`), and on random customers tables
in DuckDB and SQLite (the groups counted by the engine's aggregate query, hashes included)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from preview_shops import (
    COLUMNS,
    GIVEN,
    NAMES,
    NOW,
    POLICY,
    TEXTS,
    _compare,
    _extras,
    campaigns,
    policies,
    tables,
)
from shopcrm.campaigns import Campaign, LedgerEntry, MessagingPolicy, Recipient, ShopState, parse_campaign
from shopcrm.campaigns._planner import bucket
from shopcrm.campaigns._policy import global_control_point
from shopcrm.campaigns._preview import _preview
from shopcrm.campaigns._preview_sql import (
    WHITESPACE,
    PreviewGroup,
    control_threshold,
    grouping_blockers,
    groups_of,
    plan_groups,
    preview_of_groups,
    render_signature,
    variant_bounds,
)
from shopcrm.campaigns._templates import Renderer
from shopcrm.schema import ColumnType
from shopcrm.sources._preview_groups import grouped_preview
from shopcrm.sources._reads import EngineReader
from shopcrm.ticking import _preview_audience, preview_campaign


@st.composite
def recipients(draw: st.DrawFn) -> tuple[dict[Any, Recipient], list[LedgerEntry]]:
    n = draw(st.integers(1, 30))
    people: dict[Any, Recipient] = {}
    ledger: list[LedgerEntry] = []
    for i in range(n):
        cid = f"c{i}"
        people[cid] = Recipient(
            customer_id=cid, phone=draw(st.sampled_from([None, "010-1234-5678"])),
            push_token=draw(st.sampled_from([None, "tok"])), kakao_friend=draw(st.booleans()),
            timezone=draw(st.sampled_from([None, "Asia/Seoul", "America/New_York"])),
            consents=draw(st.dictionaries(st.sampled_from(["sms", "kakao", "push"]), st.just(GIVEN))),
            night_consent=draw(st.booleans()),
            opted_out=frozenset(draw(st.sets(st.sampled_from(["sms", "kakao", "all"]), max_size=1))),
            attributes={"name": draw(st.sampled_from(NAMES))},
        )
        if draw(st.integers(0, 5)) == 0:
            ledger.append(LedgerEntry(f"k{i}", cid, "other", "advertising", "sms", NOW - timedelta(hours=2)))
    return people, ledger


def grouped_in_python(
    campaign: Campaign, people: dict[Any, Recipient], ledger: list[LedgerEntry], policy: MessagingPolicy,
) -> Any:
    """The grouped preview with the groups counted in Python; members with ledger history previewed one by one."""
    singles = {e.customer_id for e in ledger}
    grouped = {c: r for c, r in people.items() if c not in singles}
    groups, ids = groups_of(campaign, grouped, list(grouped), policy, template_columns={"name"})
    plan = plan_groups(campaign, groups, now=NOW, policy=policy)
    rendered: Counter[tuple[int, int, str]] = Counter()
    names: dict[str, dict[str, Any]] = {}
    for group, members, render_class in zip(groups, ids, plan.class_of, strict=True):
        if render_class is None:
            continue
        for cid in members:
            values = {"name": people[cid].attributes["name"]}
            rendered[(render_class, group.variant, repr(values))] += 1
            names[repr(values)] = values
    rows = [(plan.classes[c], v, names[k], n) for (c, v, k), n in rendered.items()]
    alone = {c: r for c, r in people.items() if c in singles}
    rest = _preview(campaign, ShopState(recipients=alone, audiences={campaign.id: list(alone)}, ledger=ledger), NOW,
                    policy) if alone else None
    return preview_of_groups(campaign, plan, rows, now=NOW, policy=policy, ledger=len(ledger), rest=rest)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(campaigns(), policies(), recipients())
def test_grouped_preview_equals_the_per_customer_preview(
    campaign: Campaign, policy: MessagingPolicy, drawn: tuple[dict[Any, Recipient], list[LedgerEntry]],
) -> None:
    people, ledger = drawn
    state = ShopState(recipients=people, audiences={campaign.id: list(people)}, ledger=ledger)
    assert grouped_in_python(campaign, people, ledger, policy) == _preview(campaign, state, NOW, policy)


def test_a_group_counts_as_its_size() -> None:
    """Removing the weighting (every group counted once) would change the funnel: the counts are the groups' sizes."""
    campaign = parse_campaign({"id": "c", "purpose": "informational", "channels": ["sms"],
                               "variants": [{"name": "a", "content": {"text": "안녕"}}],
                               "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}})
    group = PreviewGroup(recipient=Recipient(customer_id=None, phone="x"), count=7)
    plan = plan_groups(campaign, [group], now=NOW, policy=POLICY)
    found = preview_of_groups(campaign, plan, [(plan.classes[0], 0, {}, 7)], now=NOW, policy=POLICY)
    assert (found.audience, found.planned, found.planned_by_kind, found.estimated_cost) == (7, 7, {"sms": 7}, 84.0)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TEXTS[:5]), st.lists(st.one_of(st.sampled_from(NAMES[:-2]), st.text(max_size=40)), min_size=2,
                                             max_size=2), st.sampled_from(["sms", "brand_message", "push"]))
def test_equal_signatures_render_to_the_same_kind(text: str, names: list[Any], channel: str) -> None:
    campaign = parse_campaign({"id": "c", "purpose": "advertising", "channels": [channel],
                               "variants": [{"name": "a", "content": {"text": text}}],
                               "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}})
    content = campaign.variants[0].content
    renderer = Renderer()
    sign = render_signature(renderer, content)
    assert sign is not None
    outcomes = []
    for name in names:
        try:
            outcomes.append(renderer.render(content, channel, {"name": name}, advertising=True,
                                            decorations=POLICY.decorations()).kind)
        except Exception:
            outcomes.append(None)
    if sign({"name": names[0]}) == sign({"name": names[1]}):
        assert outcomes[0] == outcomes[1]


def test_signature_shapes() -> None:
    renderer = Renderer()

    def content(text: str, **more: Any) -> Any:
        return parse_campaign({"id": "c", "purpose": "informational", "channels": ["sms"], "variants": [{"name": "a", "content": {"text": text, **more}}],
                               "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}}).variants[0].content

    assert render_signature(renderer, content("{{ name|upper }}")) is None
    assert render_signature(renderer, content("{% if name %}x{% endif %}")) is None
    assert render_signature(renderer, content("{{ name }}", subject="{{ name }}")) is None
    sign = render_signature(renderer, content("{{ name|은는 }} 세일"))
    assert sign is not None
    assert sign({"name": "민수"}) == sign({"name": "지영"})  # 은 and 는 are both 2 CP949 bytes
    assert sign({"name": "민수"}) != sign({"name": "Kim"})
    assert sign({"name": " 민수"})[0] == "itself"  # white space at an edge could be stripped


def test_whitespace_is_what_python_strips() -> None:
    assert set(WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 100), st.integers(0, 2 ** 64 - 1))
def test_control_threshold_is_the_group_line(percent: float, point: int) -> None:
    """A customer is in the group exactly when the first 8 bytes of their digest are below the threshold."""
    threshold = control_threshold(percent)
    assert (point / float(2 ** 64) * 100.0 < percent) == (point < threshold)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=2, max_size=4), st.lists(st.integers(0, 10 ** 6), max_size=30))
def test_variant_bounds_choose_as_the_planner(weights: list[int], ids: list[int]) -> None:
    from shopcrm.campaigns._planner import _choose

    campaign = parse_campaign({"id": "c", "purpose": "informational", "channels": ["sms"], "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"},
                               "variants": [{"name": f"v{i}", "weight": w, "content": {"text": "x"}} for i, w in enumerate(weights)]})
    bounds = variant_bounds(campaign)
    variants = campaign.variants_of(campaign.send_steps()[0])
    for cid in ids:
        chosen = sum(1 for b in bounds if bucket("variant:c:main", cid) >= b)
        assert variants[chosen] is _choose(variants, "c", "main", cid)


def test_blockers_name_what_keeps_a_campaign_per_customer() -> None:
    campaign = parse_campaign({"id": "c", "purpose": "informational", "channels": ["sms", "email"],
                               "variants": [{"name": "a", "content": {"text": "{{ cart|length }} {{ score }}", "subject": "s"}}],
                               "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}})
    why = grouping_blockers(campaign, POLICY, {"score": ColumnType.FLOAT})
    assert any("e-mail" in w for w in why)
    assert any("'cart'" in w for w in why)
    assert any("'score'" in w and "float" in w for w in why)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(campaigns(), policies(), tables(), st.data())
def test_duckdb_groups_equal_the_per_customer_preview(
    campaign: Campaign, policy: MessagingPolicy, rows: list[tuple[Any, ...]], data: st.DataObject,
) -> None:
    ledger, outs = _extras(data.draw, rows)
    with shopcrm.Shop.open(":memory:") as shop:
        shop.load_customers([dict(zip(COLUMNS, r, strict=True)) for r in rows])
        _compare(shop, campaign, policy, ledger, outs)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(campaigns(), policies(), tables(), st.data())
def test_sqlite_groups_equal_the_per_customer_preview(
    campaign: Campaign, policy: MessagingPolicy, rows: list[tuple[Any, ...]], data: st.DataObject,
) -> None:
    ledger, outs = _extras(data.draw, rows)
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE p_customers (customer_id TEXT, name TEXT, phone TEXT, email TEXT, kakao_friend BOOLEAN, "
                       "night_consent BOOLEAN, sms_consent BOOLEAN, kakao_consent BOOLEAN, timezone TEXT)")
    connection.execute("CREATE TABLE p_events (customer_id TEXT, event TEXT, ts TIMESTAMP)")
    connection.executemany(f"INSERT INTO p_customers VALUES ({', '.join(['?'] * len(COLUMNS))})", rows)
    connection.commit()
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", customers="p_customers", events="p_events")
    _compare(shop, campaign, policy, ledger, outs)


def test_the_shop_takes_the_grouped_path_and_falls_back() -> None:
    """``shop.preview`` answers from groups when it can and per customer otherwise, with the same preview."""
    with shopcrm.Shop.open(":memory:") as shop:
        shop.load_customers([{"customer_id": f"c{i}", "name": NAMES[i % 6], "phone": "010-1111-2222",
                              "sms_consent": i % 3 > 0} for i in range(40)])
        shop.messaging_policy = POLICY
        plain = parse_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"], "holdout_percent": 50,
                                "variants": [{"name": "a", "content": {"text": TEXTS[2]}}],
                                "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}})
        shop.save_campaign(plain, now=NOW - timedelta(days=1))
        grouped = preview_campaign(shop, plain, NOW)
        assert grouped == preview_campaign(shop, plain, NOW, grouped=False)
        assert grouped.audience == 40
        assert grouped.holdout > 0
        per_id = plain.model_copy(update={"variants": [plain.variants[0].model_copy(update={
            "content": plain.variants[0].content.model_copy(update={"text": "{{ customer_id }}"})})]})
        reader = EngineReader(shop.source, NOW, lifecycle_policy=shop.lifecycle_policy)
        why: list[str] = []
        assert grouped_preview(reader, per_id, _preview_audience(shop, reader, per_id, NOW), now=NOW, policy=POLICY,
                               columns=shop.recipient_columns, ledger=[], opt_outs={}, blockers=why) is None
        assert why == ["a template reads 'customer_id' (per customer)"]
        assert preview_campaign(shop, per_id, NOW) == preview_campaign(shop, per_id, NOW, grouped=False)


def test_global_control_in_sql_matches_python() -> None:
    """The engine's SHA-256 line puts the same customers in the global control group as Python does."""
    policy = attrs.evolve(POLICY, global_control_percent=40)
    with shopcrm.Shop.open(":memory:") as shop:
        shop.load_customers([{"customer_id": f"c{i}", "name": "민수", "phone": "010-1111-2222", "sms_consent": True}
                             for i in range(60)])
        campaign = parse_campaign({"id": "sale", "purpose": "advertising", "channels": ["sms"],
                                   "variants": [{"name": "a", "content": {"text": "세일"}}],
                                   "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}})
        shop.messaging_policy = policy
        found = preview_campaign(shop, campaign, NOW)
        assert found.global_control == sum(global_control_point(f"c{i}", policy.global_control_salt) < 40 for i in range(60))
        assert found == preview_campaign(shop, campaign, NOW, grouped=False)


@pytest.mark.parametrize("price", [39.5, 0.1])
def test_prices_decide_exactness(price: float) -> None:
    """A price like 0.1 has no exact sum over a large audience in floating point: that shop is previewed per customer."""
    from shopcrm.campaigns._preview_sql import exact_costs

    policy = attrs.evolve(POLICY, prices={**POLICY.prices, "lms": price})
    assert exact_costs(policy, 1_000_000) is (price == 39.5)


def test_repeated_ids_in_a_shops_own_table_fall_back() -> None:
    """A shop's own customers table may repeat an id (a tick reads one row of it): no groups then, and the same preview."""
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE p_customers (customer_id TEXT, name TEXT, phone TEXT)")
    connection.execute("CREATE TABLE p_events (customer_id TEXT, event TEXT, ts TIMESTAMP)")
    connection.executemany("INSERT INTO p_customers VALUES (?, ?, ?)",
                           [("c1", "민수", "010-1111-2222"), ("c1", "지영", None), ("c2", "Kim", "010-3333-4444")])
    connection.commit()
    shop = shopcrm.Shop.from_dbapi(connection, dialect="sqlite", customers="p_customers", events="p_events")
    campaign = parse_campaign({"id": "c", "purpose": "informational", "channels": ["sms"],
                               "variants": [{"name": "a", "content": {"text": TEXTS[2]}}],
                               "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}})
    shop.messaging_policy = POLICY
    reader = EngineReader(shop.source, NOW, lifecycle_policy=shop.lifecycle_policy)
    why: list[str] = []
    assert grouped_preview(reader, campaign, _preview_audience(shop, reader, campaign, NOW), now=NOW, policy=POLICY,
                           columns=shop.recipient_columns, ledger=[], opt_outs={}, blockers=why) is None
    assert why == ["1 repeated customer ids in the customers table"]
    found = preview_campaign(shop, campaign, NOW)
    assert found == preview_campaign(shop, campaign, NOW, grouped=False)
    assert found.audience == 2


def test_too_many_patterns_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recipient columns that differ for nearly every customer (consent times, say) leave nothing to share."""
    import shopcrm.sources._preview_groups as groups

    monkeypatch.setattr(groups, "MAX_PATTERNS", 2)
    with shopcrm.Shop.open(":memory:") as shop:
        shop.load_customers([{"customer_id": f"c{i}", "name": "민수", "phone": "010-1111-2222", "sms_consent": i % 2 == 0,
                              "kakao_friend": i % 3 == 0} for i in range(12)])
        campaign = parse_campaign({"id": "c", "purpose": "advertising", "channels": ["sms"],
                                   "variants": [{"name": "a", "content": {"text": "세일"}}],
                                   "schedule": {"kind": "one_off", "at": "2026-11-24T10:00:00"}})
        shop.messaging_policy = POLICY
        reader = EngineReader(shop.source, NOW, lifecycle_policy=shop.lifecycle_policy)
        why: list[str] = []
        assert grouped_preview(reader, campaign, None, now=NOW, policy=POLICY, columns=shop.recipient_columns, ledger=[],
                               opt_outs={}, blockers=why) is None
        assert why == ["4 distinct patterns of the recipient columns (at most 2 are grouped)"]
        assert preview_campaign(shop, campaign, NOW) == preview_campaign(shop, campaign, NOW, grouped=False)
