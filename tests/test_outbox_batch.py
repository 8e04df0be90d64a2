"""A tick's outbox rows column by column (``OutboxBatch``), the messages' JSON assembled in Arrow, and the planner's
positional constructors: each must give exactly what the row-by-row path gives."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopcrm import ticking
from shopcrm.campaigns import Plan, PlannedMessage, Suppression, parse_campaign
from shopcrm.campaigns._planner import _maker, _new_message, _new_suppression
from shopcrm.campaigns._templates import Rendered
from shopcrm.sources._campaign_store import OutboxBatch, OutboxRow, stored_columns
from shopcrm.sources.duckdb_store import DuckDBSource

NOW = datetime(2026, 11, 24, 13)
CAMPAIGN = parse_campaign({
    "id": "sale", "purpose": "advertising", "channels": ["brand_message", "sms"],
    "variants": [{"name": "a", "content": {"text": "{{ name }}"}}],
    "schedule": {"kind": "one_off", "at": "2026-11-24T21:30:00"},
})
#: contacts the plain-text shortcut takes, and ones it must hand to json.dumps (quotes, backslashes, controls, Korean)
CONTACTS = st.one_of(st.sampled_from(["010-1234-5678", "", "a@b.c", "webhook"]), st.text(max_size=6))
TEXTS = st.sampled_from(["김민수님, 세일", 'a "quoted" \\ text', "plain", "줄\n바꿈"])


@st.composite
def renderings(draw: st.DrawFn) -> Rendered:
    channel = draw(st.sampled_from(["sms", "brand_message", "alimtalk", "email"]))
    return Rendered(channel=channel, kind=channel, text=draw(TEXTS), subject=draw(st.none() | TEXTS),
                    buttons=tuple(draw(st.lists(st.tuples(TEXTS, TEXTS), max_size=2))))


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    chains = draw(st.lists(st.lists(renderings(), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4))
    messages = []
    for i in range(draw(st.integers(0, 30))):
        chain = draw(st.sampled_from(chains))  # messages share chain objects, as the planner's renderings do
        send = NOW + timedelta(hours=draw(st.integers(0, 3)))
        messages.append(PlannedMessage(
            key=f"k{i}", customer_id=draw(st.sampled_from([f"c{i}", i, f'q"{i}'])), campaign_id="sale", step="main",
            occurrence="once", variant=draw(st.sampled_from(["a", "b"])), purpose="advertising", chain=chain,
            contacts=tuple(draw(CONTACTS) for _ in chain), due_at=NOW, send_at=send,
            estimated_cost=draw(st.sampled_from([0, 8.4, 15.0])), deferred=send > NOW, friend=draw(st.booleans()),
        ))
    suppressions = [
        Suppression(customer_id=f"h{i}", campaign_id="sale", step="main", reason=reason, key=f"s{i}", occurrence="once",
                    due_at=NOW, detail=draw(st.sampled_from(["", "why"])))
        for i, reason in enumerate(draw(st.lists(st.sampled_from(["holdout", "global_control", "capped"]), max_size=5)))
    ]
    return Plan(messages=tuple(messages), suppressions=tuple(suppressions))


def rows_of(result: Plan, arrow: bool, monkeypatch: pytest.MonkeyPatch) -> OutboxBatch:
    with monkeypatch.context() as patched:
        patched.setattr(ticking, "ARROW_MESSAGES", 0 if arrow else 10**9)
        patched.setattr(ticking._MessageEncoder, "CHUNK", 7)  # several chunks even for a few rows
        return ticking.outbox_rows(result, [CAMPAIGN], NOW)


@settings(max_examples=150, deadline=None)
@given(plans())
def test_the_arrow_assembly_writes_each_message_as_the_encoder_does(result: Plan) -> None:
    expected = [ticking._MessageEncoder()(m) for m in result.messages]
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = rows_of(result, True, monkeypatch), rows_of(result, False, monkeypatch)
    assert list(fast.column("message"))[:len(expected)] == expected
    assert list(fast) == list(slow)
    assert fast.stored() == slow.stored() == stored_columns(list(slow))
    # handed to the engine as Arrow (the messages as pieces it joins): the same rows
    written = [column.to_pylist() for column in fast.stored(arrow=True)]
    assert sorted(zip(*written, strict=True)) == sorted(zip(*slow.stored(), strict=True))
    for text in fast.column("message"):
        json.loads(text)


def test_a_batch_reads_like_the_rows_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = Rendered(channel="sms", kind="sms", text="안녕")
    message = _new_message("k1", "c1", "sale", "main", "once", "a", "advertising", (rendered,), ('010"1',), NOW, NOW,
                           8.4, False, True)
    holdout = Suppression(customer_id="c2", campaign_id="sale", step="main", reason="holdout", key="k2", occurrence="once",
                          due_at=NOW)
    batch = rows_of(Plan(messages=(message,), suppressions=(holdout,)), True, monkeypatch)
    assert len(batch) == 2
    assert batch[0].chain == [{**json.loads(json.dumps(attrs.asdict(rendered))), "contact": '010"1'}]
    assert [row.status for row in batch[:]] == ["planned", "holdout"] == list(batch.column("status"))
    with pytest.raises(ValueError, match="one length"):
        OutboxBatch([["k"]] * 14 + [[]])
    with pytest.raises(ValueError, match="15 columns"):
        OutboxBatch([[]])


def test_a_chain_without_its_contacts_is_refused_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = Rendered(channel="sms", kind="sms", text="x")
    message = _new_message("k1", "c1", "sale", "main", "once", "a", "advertising", (rendered, rendered), ("010",), NOW,
                           NOW, 8.4, False, True)
    for arrow in (True, False):
        with pytest.raises(ValueError, match="2 renderings and 1 contacts"):
            rows_of(Plan(messages=(message,), suppressions=()), arrow, monkeypatch)


@settings(max_examples=15, deadline=None)
@given(plans())
def test_duckdb_stores_an_arrow_batch_as_it_stores_rows(result: Plan) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = rows_of(result, True, monkeypatch), rows_of(result, False, monkeypatch)
    found = []
    for rows in (fast, list(slow)):
        source = DuckDBSource(":memory:")
        store = source.campaign_store()
        store.record(rows, [("sale", "once")], NOW)
        found.append(store.outbox())
        source.close()
    assert found[0] == found[1]
    assert sorted(r.key for r in found[0]) == sorted(r.key for r in slow)


def test_the_positional_constructors_build_what_the_classes_build() -> None:
    rendered = Rendered(channel="sms", kind="sms", text="x")
    fields: dict[str, Any] = {
        "key": "k", "customer_id": 7, "campaign_id": "sale", "step": "main", "occurrence": "once", "variant": "a",
        "purpose": "advertising", "chain": (rendered,), "contacts": ("010",), "due_at": NOW, "send_at": NOW,
        "estimated_cost": 8.4, "deferred": True, "friend": False,
    }
    made = _new_message(*fields.values())
    assert made == PlannedMessage(**fields)
    assert hash(made) == hash(PlannedMessage(**fields))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.key = "other"  # type: ignore[misc]
    left = {"customer_id": 1, "campaign_id": "sale", "step": "main", "reason": "holdout", "detail": "", "key": "k",
            "occurrence": "once", "due_at": NOW, "send_at": NOW}
    assert _new_suppression(*left.values()) == Suppression(**left)

    @attrs.frozen
    class Checked:
        value: int = attrs.field(validator=attrs.validators.instance_of(int))

    with pytest.raises(TypeError, match="validates or converts"):
        _maker(Checked)


def test_outbox_row_from_a_batch_is_an_outbox_row(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _new_message("k1", "c1", "sale", "main", "once", "a", "advertising",
                           (Rendered(channel="sms", kind="sms", text="x"),), ("010",), NOW, NOW, 8.4, False, True)
    row = rows_of(Plan(messages=(message,), suppressions=()), True, monkeypatch)[0]
    assert isinstance(row, OutboxRow)
    assert row == OutboxRow("k1", "c1", "sale", "main", "once", "a", "advertising", "sms", "sms", "planned", NOW, NOW, 8.4,
                            ticking._MessageEncoder()(message), NOW)


@settings(max_examples=15, deadline=None)
@given(plans())
def test_an_arrow_batch_records_the_rows_the_row_by_row_path_records(result: Plan) -> None:
    """The Arrow batch (inserted through Arrow) and the Python batch (through list parameters) leave the same
    outbox."""
    import shopcrm

    found = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        for arrow in (True, False):
            batch = rows_of(result, arrow, monkeypatch)
            monkeypatch.setattr(DuckDBSource, "ARROW_ROWS", 1 if arrow else 10**9)
            with shopcrm.Shop.open(":memory:") as shop:
                shop.source.campaign_store().record(batch, [("sale", "once")], NOW)
                found.append(shop.source.campaign_store().outbox())
    assert found[0] == found[1]
    assert sorted(row.key for row in found[0]) == sorted(row.key for row in rows_of(result, False, pytest.MonkeyPatch()))
