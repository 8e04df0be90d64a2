"""Korean particles, amounts, dates and CP949 byte counts."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from shopcrm.campaigns import cp949_length, format_date, krw, particle, with_particle


@pytest.mark.parametrize(
    ("word", "pair", "expected"),
    [
        ("철수", "은/는", "철수는"), ("영희", "이/가", "영희가"), ("민준", "이/가", "민준이"),
        ("사과", "을/를", "사과를"), ("수박", "을/를", "수박을"), ("친구", "과/와", "친구와"), ("동생", "과/와", "동생과"),
        # 으로/로: 로 after a vowel and after ㄹ
        ("서울", "으로/로", "서울로"), ("부산", "으로/로", "부산으로"), ("학교", "으로/로", "학교로"),
        # numbers read in Korean: 1 일(ㄹ), 2 이, 3 삼(ㅁ), 10 십(ㅂ), 100 백(ㄱ), 1000 천(ㄴ)
        ("1", "을/를", "1을"), ("2", "을/를", "2를"), ("3", "은/는", "3은"), ("10", "이/가", "10이"),
        ("100", "으로/로", "100으로"), ("1000", "은/는", "1000은"), ("7", "으로/로", "7로"), ("20", "은/는", "20은"),
        # Latin letters by their Korean names; brackets and quotes are skipped
        ("VIP", "은/는", "VIP는"), ("URL", "을/를", "URL을"), ("김민준(VIP)", "은/는", "김민준(VIP)는"), ("'쿠폰'", "이/가", "'쿠폰'이"),
        # unreadable: both forms
        ("🎁", "을/를", "🎁을(를)"),
        # the pair without a slash
        ("철수", "은는", "철수는"),
    ],
)
def test_particles_follow_the_final_consonant(word: str, pair: str, expected: str) -> None:
    assert with_particle(word, pair) == expected


def test_unknown_particle_pair_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown particle pair '의/에'; use one of 은/는, 이/가"):
        particle("철수", "의/에")


def test_krw_and_dates() -> None:
    assert krw(12300) == "12,300원"
    assert krw("5000") == "5,000원"
    assert krw(0.5) == "0원"  # half to even
    with pytest.raises(ValueError, match="krw needs a number of won; got 'abc'"):
        krw("abc")
    assert format_date(date(2026, 11, 25)) == "2026년 11월 25일"
    assert format_date(datetime(2026, 11, 25, 9, 5), "weekday") == "11월 25일(수)"
    assert format_date(datetime(2026, 11, 25, 9, 5), "time") == "11월 25일 09:05"
    assert format_date("2026-01-02", "short") == "1월 2일"
    assert format_date(date(2026, 1, 2), "%Y.%m.%d") == "2026.01.02"


def test_cp949_counts_hangul_as_two_bytes_and_refuses_what_sms_cannot_carry() -> None:
    assert cp949_length("(광고)") == 6
    assert cp949_length("abc 가나") == 8
    with pytest.raises(ValueError, match=r"'₩' \(U\+20A9\) cannot be sent by SMS"):
        cp949_length("₩1000")
    with pytest.raises(ValueError, match="no CP949 encoding"):
        cp949_length("할인 🎁")
