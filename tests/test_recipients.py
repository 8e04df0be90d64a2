"""RecipientColumns: contact points, consents and opt-outs read from a shop's own column names and value kinds."""

from __future__ import annotations

from datetime import datetime

import pytest

from shopcrm import RecipientColumns

NOW = datetime(2026, 11, 25)


def test_the_default_columns_read_the_demo_shop_row() -> None:
    row = {"customer_id": "C1", "name": "김민준", "phone": " 010-1234-5678 ", "email": "", "sms_consent": True,
           "kakao_consent": False, "night_consent": True, "kakao_friend": True, "extra": 1}
    r = RecipientColumns().recipient(row, now=NOW, attributes=["name"])
    assert (r.phone, r.email, r.kakao_friend, r.night_consent) == ("010-1234-5678", None, True, True)
    assert r.consents == {"sms": NOW}  # a bare true counts as current consent
    assert dict(r.attributes) == {"name": "김민준"}
    assert r.contact("alimtalk") == "010-1234-5678"
    assert r.contact("email") is None


def test_consent_dates_come_from_timestamp_columns_or_companion_columns() -> None:
    given = datetime(2024, 5, 1, 9)
    row = {"customer_id": 7, "sms_consent": True, "sms_consent_at": "2024-05-01T09:00:00+00:00",
           "email_consent": given, "kakao_consent": "2025-01-02 03:04:05", "push_consent": "no"}
    r = RecipientColumns().recipient(row, now=NOW)
    assert r.consents == {"sms": given, "email": given, "kakao": datetime(2025, 1, 2, 3, 4, 5)}


def test_a_shop_with_other_names_and_opt_out_flags() -> None:
    columns = RecipientColumns(phone="mobile", consents={"sms": "agree_sms"}, opted_out={"sms": "sms_refused"},
                               opted_out_all="unsubscribed", kakao_friend=None, night_consent=None)
    rows = {"customer_id": ["a", "b", "c"], "mobile": ["010-1", None, "010-3"], "agree_sms": ["Y", "1", "N"],
            "sms_refused": [False, "true", None], "unsubscribed": [None, None, 1]}
    people = columns.recipients(rows, now=NOW)
    assert [p.phone for p in people] == ["010-1", None, "010-3"]
    assert [dict(p.consents) for p in people] == [{"sms": NOW}, {"sms": NOW}, {}]
    assert [set(p.opted_out) for p in people] == [set(), {"sms"}, {"all"}]


def test_a_consent_value_that_is_neither_flag_nor_time_is_an_error() -> None:
    with pytest.raises(ValueError, match="neither a boolean nor a timestamp"):
        RecipientColumns().recipient({"customer_id": 1, "sms_consent": "maybe"}, now=NOW)
