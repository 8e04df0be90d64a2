"""A broadcast tick's column-wise steps equal their row-by-row originals: recipients read column by column, the
outbox JSON of each message built around its contacts, and customer ids stored as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from shopcrm.campaigns import PlannedMessage
from shopcrm.campaigns._templates import Rendered
from shopcrm.recipients import RecipientColumns
from shopcrm.sources._campaign_store import OutboxRow, TickConflict, stored_columns
from shopcrm.sources.duckdb_store import DuckDBSource
from shopcrm.ticking import _fields_json, _MessageEncoder, _plain

NOW = datetime(2026, 11, 24, 13)
TEXT = st.one_of(st.none(), st.sampled_from(["", "  ", "010-1234-5678", " a@b.c ", "Asia/Seoul"]), st.text(max_size=6), st.integers(0, 9))
FLAG = st.one_of(st.none(), st.booleans(), st.sampled_from(["yes", "no", "1", "0", " T ", ""]), st.integers(0, 2))
CONSENT = st.one_of(
    st.none(), st.booleans(), st.sampled_from(["true", "no", "", "2025-03-01T09:00:00", "2024-01-01 00:00:00+09:00"]),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2027, 1, 1)),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
)
STAMP = st.one_of(st.none(), st.just(False), st.sampled_from(["", " ", "2025-05-05T05:05:05"]),
                  st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2027, 1, 1)))


@st.composite
def tables(draw: st.DrawFn) -> tuple[RecipientColumns, dict[str, list[Any]], list[str]]:
    n = draw(st.integers(0, 8))
    columns: dict[str, list[Any]] = {"customer_id": [f"c{i}" for i in range(n)]}
    for name, values in (("phone", TEXT), ("email", TEXT), ("push_token", TEXT), ("timezone", TEXT), ("kakao_friend", FLAG),
                         ("night_consent", FLAG), ("opted_out", FLAG), ("sms_out", FLAG), ("sms_consent", CONSENT),
                         ("kakao_consent", CONSENT), ("email_consent", CONSENT), ("sms_consent_at", STAMP),
                         ("kakao_consent_at", STAMP), ("name", TEXT)):
        if draw(st.booleans()):
            columns[name] = [draw(values) for _ in range(n)]
    mapping = RecipientColumns(opted_out=draw(st.sampled_from([{}, {"sms": "sms_out"}])))
    attributes = draw(st.lists(st.sampled_from(["name", "phone", "missing"]), max_size=3))
    return mapping, columns, attributes


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(tables())
def test_recipients_read_column_by_column_equal_the_row_by_row_reading(
    table: tuple[RecipientColumns, dict[str, list[Any]], list[str]],
) -> None:
    mapping, columns, attributes = table
    try:
        expected: Any = mapping.recipients_by_row(columns, now=NOW, attributes=attributes)
    except ValueError as error:  # a consent value that is neither a flag nor a time
        expected = str(error)
    try:
        found: Any = mapping.recipients(columns, now=NOW, attributes=attributes)
    except ValueError as error:
        found = str(error)
    assert found == expected


class RowByRowEncoder:
    """The outbox JSON as it was written before the encoder kept each chain's pieces."""

    def rendered(self, rendered: Any) -> str:
        return json.dumps(attrs.asdict(rendered), ensure_ascii=False, default=_plain)[:-1]

    def __call__(self, message: PlannedMessage) -> str:
        friend = f', "friend": {"true" if message.friend else "false"}'
        parts = [
            f"{self.rendered(rendered)}, \"contact\": {json.dumps(contact, ensure_ascii=False)}"
            f"{friend if rendered.channel == 'brand_message' else ''}}}"
            for rendered, contact in zip(message.chain, message.contacts, strict=True)
        ]
        return '{"chain": [' + ", ".join(parts) + "]}"


TEXTS = st.text(max_size=10) | st.sampled_from(['"', "\\", "\n", "\u2028", "\x00", "😀", "주문번호 O-1"])
RENDERED = st.builds(
    Rendered, channel=st.sampled_from(["sms", "brand_message", "email", "push", "alimtalk"]),
    kind=st.sampled_from(["sms", "lms", "brand_message"]), text=TEXTS, subject=st.one_of(st.none(), st.text(max_size=4)),
    buttons=st.lists(st.tuples(TEXTS, st.text(max_size=3)), max_size=2).map(tuple),
    template_code=st.none() | TEXTS, variables=st.lists(st.tuples(TEXTS, TEXTS), max_size=2).map(tuple),
    links=st.lists(TEXTS, max_size=2).map(tuple), layout=st.none() | st.just("list"),
    items=st.lists(st.tuples(TEXTS, TEXTS, TEXTS, TEXTS, TEXTS), max_size=1).map(tuple),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(RENDERED, min_size=1, max_size=3), st.lists(st.tuples(
    st.integers(0, 2), st.booleans(), st.lists(st.one_of(st.sampled_from(["010-1234-5678", "a@b.c", ""]), st.text(max_size=5)),
                                               min_size=3, max_size=3))))
def test_the_outbox_json_equals_the_message_by_message_encoding(
    renderings: list[Rendered], messages: list[tuple[int, bool, list[str]]],
) -> None:
    chains = [tuple(renderings[:k]) for k in range(1, len(renderings) + 1)]
    encode, reference = _MessageEncoder(), RowByRowEncoder()
    for pick, friend, contacts in messages:
        chain = chains[pick % len(chains)]
        message = PlannedMessage(
            key="k" * 32, customer_id="c1", campaign_id="x", step="main", occurrence="once", variant="a", purpose="advertising",
            chain=chain, contacts=tuple(contacts[:len(chain)]), due_at=NOW, send_at=NOW, estimated_cost=1.0, friend=friend,
        )
        text = encode(message)
        assert text == reference(message)
        assert json.loads(text)["chain"][0]["contact"] == contacts[0]


@given(st.lists(st.one_of(st.text(max_size=6), st.integers(), st.sampled_from(['a"b', "a\\b", "é", "C0000001"]))))
def test_customer_ids_are_stored_as_their_json(ids: list[Any]) -> None:
    rows = [OutboxRow(f"k{i}", cid, "x", "main", "once", "a", "advertising", "sms", "sms", "planned", NOW,
                      NOW + timedelta(hours=1), 12, "{}", NOW) for i, cid in enumerate(ids)]
    stored = stored_columns(rows)[1] if rows else []
    assert stored == [json.dumps(cid) for cid in ids]


@pytest.mark.parametrize("in_file", [False, True])
@pytest.mark.parametrize("arrow_rows", [1, 10**9])
def test_a_tick_records_the_same_rows_through_arrow_as_through_list_parameters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, arrow_rows: int, in_file: bool,
) -> None:
    """In memory and in a database file (where a view over the Arrow rows could not be stored)."""
    monkeypatch.setattr(DuckDBSource, "ARROW_ROWS", arrow_rows)
    through_arrow: list[bool] = []
    original = DuckDBSource._insert_arrow

    def spy(self: DuckDBSource, *args: Any) -> bool:
        through_arrow.append(original(self, *args))
        return through_arrow[-1]

    monkeypatch.setattr(DuckDBSource, "_insert_arrow", spy)
    ids: list[Any] = ["c1", 'c"2', "민수", 7]
    rows = [OutboxRow(f"k{i}", cid, "x", "main", "once", "a", "advertising", "sms", "sms", status, NOW,
                      None if status != "planned" else NOW + timedelta(hours=i), 12 if i else 0.5, '{"chain": []}', NOW)
            for i, (cid, status) in enumerate(zip(ids, ["planned", "holdout", "planned", "global_control"], strict=True))]
    with shopcrm.Shop.open(str(tmp_path / "shop.duckdb") if in_file else ":memory:") as shop:
        store = shop.source.campaign_store()
        store.record(rows, [("x", "once")], NOW)
        assert sorted(store.outbox(), key=lambda r: r.key) == [r._replace(cost=float(r.cost)) for r in rows]
        assert store.occurrences(["x"]) == {("x", "once")}
        with pytest.raises(TickConflict):
            store.record(rows[:1], [], NOW)
        assert len(store.outbox()) == len(rows)  # all or nothing
    assert (True in through_arrow) == (arrow_rows == 1)


@settings(max_examples=300, deadline=None)
@given(RENDERED)
def test_a_rendering_is_encoded_field_by_field_as_the_encoder_writes_it(rendered: Rendered) -> None:
    assert _fields_json(rendered) == json.dumps(attrs.asdict(rendered), ensure_ascii=False)


def test_a_rendering_with_other_values_is_left_to_the_encoder() -> None:
    assert _fields_json(Rendered(channel="sms", kind="sms", text="a", variables=(("n", 1),))) is None  # type: ignore[arg-type]

