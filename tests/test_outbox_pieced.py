"""A large tick's message JSON handed to DuckDB as pieces around the contacts (``PiecedTexts``): the engine joins
them while it inserts, and the outbox it leaves is the one the message-by-message texts leave, in memory and in a
database file, with the primary key as strict as before."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from shopcrm import ticking
from shopcrm.campaigns import Plan
from shopcrm.sources._campaign_store import OutboxBatch, PiecedTexts, TickConflict
from shopcrm.sources.duckdb_store import DuckDBSource
from test_outbox_batch import CAMPAIGN, NOW, plans


def batches(result: Plan, monkeypatch: pytest.MonkeyPatch) -> tuple[OutboxBatch, OutboxBatch]:
    """The batch with pieced texts (every plan large enough) and the one with each message's text in Python."""
    with monkeypatch.context() as patched:
        patched.setattr(ticking, "ARROW_MESSAGES", 0)
        patched.setattr(ticking._MessageEncoder, "CHUNK", 5)
        pieced = ticking.outbox_rows(result, [CAMPAIGN], NOW)
        patched.setattr(ticking, "ARROW_MESSAGES", 10**9)
        plain = ticking.outbox_rows(result, [CAMPAIGN], NOW)
    return pieced, plain


def recorded(rows: Any, path: str) -> list[tuple[Any, ...]]:
    source = DuckDBSource(path)
    try:
        source.campaign_store().record(rows, [("sale", "once")], NOW)
        return source.con.execute("SELECT * FROM shopcrm_outbox ORDER BY key_").fetchall()
    finally:
        source.close()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(plans())
def test_duckdb_joins_the_pieces_into_the_texts_python_writes(result: Plan) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        pieced, plain = batches(result, monkeypatch)
    assert isinstance(pieced.stored(arrow=True)[13], PiecedTexts)
    assert list(pieced) == list(plain)  # read back in Python: the same rows, in the same order
    assert recorded(pieced, ":memory:") == recorded(list(plain), ":memory:")


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(plans().filter(lambda result: len(result.messages) > 0))
def test_a_database_file_takes_pieced_texts_and_keeps_its_primary_key(result: Plan) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch, tempfile.TemporaryDirectory() as folder:
        pieced, plain = batches(result, monkeypatch)
        tmp_path = Path(folder)
        path = str(tmp_path / "shop.duckdb")
        source = DuckDBSource(path)
        store = source.campaign_store()
        store.record(pieced, [("sale", "once")], NOW)
        before = source.con.execute("SELECT * FROM shopcrm_outbox ORDER BY key_").fetchall()
        with pytest.raises(TickConflict):  # the same decisions again: refused whole, nothing recorded twice
            store.record(pieced, [("sale", "again")], NOW)
        assert source.con.execute("SELECT * FROM shopcrm_outbox ORDER BY key_").fetchall() == before
        source.close()
        reopened = DuckDBSource(path)
        assert reopened.con.execute("SELECT * FROM shopcrm_outbox ORDER BY key_").fetchall() == before
        reopened.close()
        assert before == recorded(list(plain), ":memory:")


def test_pieces_that_do_not_fit_are_refused() -> None:
    pieces = [pa.array(["a", "b"]), pa.array(["c", "d"])]
    texts = PiecedTexts(pieces, pa.array([1, 0], pa.int32()), [pa.array(["x", "y"])])
    assert texts.to_pylist() == ["bxd", "ayc"]
    with pytest.raises(ValueError, match="indexes from 0 to 1"):
        PiecedTexts(pieces, pa.array([2, 0], pa.int32()), [pa.array(["x", "y"])])
    with pytest.raises(ValueError, match="one more column of pieces"):
        PiecedTexts(pieces, pa.array([1, 0], pa.int32()), [])
    with pytest.raises(ValueError, match="as long as the index"):
        PiecedTexts(pieces, pa.array([1, 0], pa.int32()), [pa.array(["x"])])


def test_an_engine_without_arrow_gets_the_joined_texts() -> None:
    texts = PiecedTexts([pa.array(['{"a": "']), pa.array(['"}'])], pa.array([0, 0], pa.int32()),
                        [pa.array(["1", "2"])])
    row = ["k", "c", "x", "main", "once", "a", "advertising", "sms", "sms", "planned", NOW, NOW, 1.0]
    batch = OutboxBatch([[v, v] for v in row] + [texts, [NOW, NOW]])
    assert batch.stored()[13] == ['{"a": "1"}', '{"a": "2"}']
    assert [r.message for r in batch] == ['{"a": "1"}', '{"a": "2"}']
    assert isinstance(datetime.fromisoformat(batch.stored()[10][0]), datetime)
