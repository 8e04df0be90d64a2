"""Recipients from typed columns, as a database returns them (booleans with or without nulls, plain texts, a time
column beside a consent): the column-wise reading, which takes boolean consents and plain texts whole, gives what the
row-by-row reading gives."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopcrm.recipients import RecipientColumns

NOW = datetime(2026, 11, 24, 13)
#: one domain per column, as a typed column holds: booleans, booleans with nulls, texts plain or not, mixed
BOOLS = st.sampled_from([st.booleans(), st.one_of(st.none(), st.booleans()), st.sampled_from([True, 1, "yes", None])])
TEXTS = st.sampled_from([
    st.sampled_from(["010-1234-5678", "a@b.c", "김민수", "x"]),
    st.sampled_from(["010-1234-5678", " a@b.c", "b\t", "", "\u3000x"]),
    st.one_of(st.none(), st.sampled_from(["010-1234-5678", "a"])),
    st.one_of(st.integers(0, 9), st.just("5")),
])


@st.composite
def typed_tables(draw: st.DrawFn) -> tuple[RecipientColumns, dict[str, list[Any]]]:
    n = draw(st.integers(0, 12))
    columns: dict[str, list[Any]] = {"customer_id": [f"c{i}" for i in range(n)]}
    for name in ("sms_consent", "kakao_consent", "email_consent", "kakao_friend", "night_consent"):
        if draw(st.booleans()):
            values = draw(BOOLS)
            columns[name] = [draw(values) for _ in range(n)]
    for name in ("phone", "email", "name"):
        if draw(st.booleans()):
            values = draw(TEXTS)
            columns[name] = [draw(values) for _ in range(n)]
    if draw(st.booleans()):  # a time column beside a boolean consent: the consents are decided value by value
        columns["sms_consent_at"] = [draw(st.sampled_from([None, "2025-05-05T05:05:05", datetime(2024, 1, 1)])) for _ in range(n)]
    return RecipientColumns(), columns


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(typed_tables())
def test_typed_columns_give_the_row_by_row_recipients(table: tuple[RecipientColumns, dict[str, list[Any]]]) -> None:
    mapping, columns = table
    found = mapping.recipients(columns, now=NOW, attributes=["name"])
    assert found == mapping.recipients_by_row(columns, now=NOW, attributes=["name"])


def test_boolean_consent_columns_give_now_for_true_and_nothing_else() -> None:
    columns: dict[str, list[Any]] = {"customer_id": ["c1", "c2", "c3"], "sms_consent": [True, False, None], "kakao_consent": [False, True, True],
               "kakao_friend": [True, False, True], "night_consent": [False, False, True],
               "phone": ["010-1", "010-2", "010-3"], "email": ["a@b.c", "d@e.f", "g@h.i"], "name": ["김", "이", "박"]}
    found = RecipientColumns().recipients(columns, now=NOW, attributes=["name"])
    assert found == RecipientColumns().recipients_by_row(columns, now=NOW, attributes=["name"])
    assert [r.consents for r in found] == [{"sms": NOW}, {"kakao": NOW}, {"kakao": NOW}]
    assert [(r.kakao_friend, r.night_consent, r.phone, r.attributes) for r in found] == [
        (True, False, "010-1", {"name": "김"}), (False, False, "010-2", {"name": "이"}), (True, True, "010-3", {"name": "박"})]
