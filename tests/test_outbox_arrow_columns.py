"""An outbox batch handed to the engine as Arrow arrays (a large tick's) holds exactly what its Python columns hold:
customer ids quoted in Arrow when they are plain text, by JSON otherwise."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from shopcrm.sources._campaign_store import OutboxBatch, OutboxRow, _quoted_ids, stored_columns

NOW = datetime(2026, 11, 24, 13)
IDS = st.one_of(st.text(max_size=6), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6),
                st.integers(), st.sampled_from(['a"b', "a\\b", "é", "C0000001", "\x7f", ""]))


@settings(max_examples=200, deadline=None)
@given(st.lists(IDS, min_size=1, max_size=12))
def test_arrow_quoted_ids_are_their_json_or_refused(ids: list[Any]) -> None:
    quoted = _quoted_ids(ids)
    plain = all(type(c) is str and c.isascii() and c.isprintable() and '"' not in c and "\\" not in c for c in ids)
    assert (quoted is not None) == plain  # refused exactly when some id needs more than quotes
    if quoted is not None:
        assert quoted.to_pylist() == [json.dumps(c) for c in ids]


@settings(max_examples=100, deadline=None)
@given(st.lists(IDS, min_size=1, max_size=12))
def test_a_batch_stored_as_arrow_equals_its_rows_stored_as_lists(ids: list[Any]) -> None:
    rows = [OutboxRow(f"k{i}", cid, "x", "main", "once", "a", "advertising", "sms", "sms", "planned", NOW,
                      NOW + timedelta(hours=i), 12.0 + i, f'{{"n": {i}}}', NOW) for i, cid in enumerate(ids)]
    columns: list[Any] = [list(column) for column in zip(*rows, strict=True)]
    columns[13] = pa.chunked_array([pa.array(columns[13], pa.string())])  # the messages as a tick assembles them
    batch = OutboxBatch(columns)
    arrow = batch.stored(arrow=True)
    assert all(isinstance(column, pa.Array | pa.ChunkedArray) for column in arrow)
    assert [column.to_pylist() for column in arrow] == stored_columns(rows)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([None, 12.0, 0.5]), min_size=1, max_size=6))
def test_a_column_of_one_value_is_stored_as_that_value_repeated(costs: list[float | None]) -> None:
    """Columns whose rows all hold one value (every send_at None, one cost, one campaign) go to the engine as the
    value repeated; they equal the rows stored as lists."""
    rows = [OutboxRow(f"k{i}", "c1", "x", "main", "once", "", "advertising", "", "", "holdout", NOW,
                      None if cost is None else NOW, cost or 0.0, "{}", NOW) for i, cost in enumerate(costs)]
    columns: list[Any] = [list(column) for column in zip(*rows, strict=True)]
    columns[13] = pa.chunked_array([pa.array(columns[13], pa.string())])
    arrow = OutboxBatch(columns).stored(arrow=True)
    assert [column.to_pylist() for column in arrow] == stored_columns(rows)
