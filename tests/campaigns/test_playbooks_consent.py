"""The consent notices the Korean rules ask for, on a simulated clock (a tick every hour for four days):
``consent_reconfirmation`` tells a customer whose advertising consent nears two years when it was given and how to
keep or withdraw it (K8); ``consent_result`` tells a customer the result of a consent given or withdrawn (K9)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.campaigns._policy import local, utc
from shopcrm.errors import CampaignWarning

ZONE = "Asia/Seoul"
D0 = datetime(2026, 11, 23)  # local midnight


def kst(day: float, hour: float = 0) -> datetime:
    """Day ``day`` after D0 at ``hour`` o'clock in Seoul, as naive UTC."""
    return utc(D0 + timedelta(days=day, hours=hour), ZONE)


def person(cid: str, consent_days_ago: float | None, **changes: Any) -> dict[str, Any]:
    given = None if consent_days_ago is None else kst(-consent_days_ago, 12)
    row: dict[str, Any] = {"customer_id": cid, "name": "김하늘", "phone": "010-2222-3333", "sms_consent": True,
                           "sms_consent_at": given, "kakao_consent": False, "signed_up_at": kst(-900, 12)}
    row.update(changes)
    return row


CUSTOMERS = [
    person("due", 705),  # 705 days old at D0: in the window from the first morning
    person("edge", 699.25),  # 700 days old at D0 + 18:00 local: the next morning's run (day 1, 10:00) is its first
    person("fresh", 100),
    person("over", 740),  # lapsed already: nothing to re-confirm (its ads stopped at two years)
    person("unknown", None),  # no consent time: nothing to count from
    person("withdrawer", 300),
    person("joiner", None, sms_consent=False),
    person("leaver", 200),
]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    shop = Shop.open()
    shop.messaging_policy = MessagingPolicy(sender_name="하늘상점", sender_contact="1588-1234", opt_out_number="080-555-0000")
    shop.load_customers(CUSTOMERS)
    shop.load_events([{"customer_id": "due", "event": "session_started", "ts": kst(-1, 9)}])
    shop.track_attribute("sms_consent", now=kst(0, 0) - timedelta(minutes=2))
    for name in ("consent_reconfirmation", "opt_out_result"):
        shop.enable_playbook(name, now=kst(0, 0) - timedelta(minutes=1))
    # before the first change the events have no new_sms_consent column: saved, with a warning that says so
    with pytest.warns(CampaignWarning, match="new_sms_consent"):
        shop.enable_playbook("consent_result", now=kst(0, 0) - timedelta(minutes=1))
    messages = []
    for hour in range(4 * 24):
        now = kst(0, hour)
        if now == kst(1, 22):  # the customers are loaded again: one withdrew, one consented
            shop.load_customers([person("withdrawer", 300, sms_consent=False),
                                 person("joiner", 0.5, sms_consent=True, sms_consent_at=kst(1, 21))])
        if now == kst(2, 9):  # an 080 call, recorded a little late (at 09:00, for 08:30)
            shop.record_opt_out("leaver", "sms", at=kst(2, 8.5), reason="080 수신거부")
        messages += shop.tick(now=now).messages
    return {"shop": shop, "messages": messages}


def sent(run: dict[str, Any], campaign: str) -> list[tuple[str, datetime, str]]:
    return sorted((m.customer_id, local(m.send_at, ZONE), m.channel) for m in run["messages"] if m.campaign_id == campaign)


def korean_date(at: datetime) -> str:
    day = local(at, ZONE)
    return f"{day.year}년 {day.month}월 {day.day}일"


def test_the_reconfirmation_notice_goes_once_to_consents_nearing_two_years(run: dict[str, Any]) -> None:
    got = sent(run, "consent_reconfirmation")
    assert [(c, at) for c, at, _ in got] == [("due", D0 + timedelta(hours=10)), ("edge", D0 + timedelta(days=1, hours=10))]
    assert {channel for _, _, channel in got} == {"alimtalk"}


def test_the_reconfirmation_notice_names_the_sender_the_consent_date_and_how_to_keep_or_withdraw(run: dict[str, Any]) -> None:
    message = next(m for m in run["messages"] if m.campaign_id == "consent_reconfirmation" and m.customer_id == "due")
    assert message.purpose == "informational"
    alimtalk, fallback = message.chain
    assert alimtalk.template_code == "SHOPCRM_CONSENT_RECONFIRM"
    variables = {slot.strip("#{}"): value for slot, value in alimtalk.variables}
    assert variables["보낸이"] == "하늘상점"
    assert variables["수신거부번호"] == "080-555-0000"
    assert variables["동의일"] == korean_date(kst(-705, 12))
    assert variables["확인링크"].startswith("https://")
    assert alimtalk.text.startswith("[하늘상점] 김하늘님은 " + korean_date(kst(-705, 12)) + "에 광고성 정보 수신에 동의하셨습니다.")
    assert fallback.kind == "lms"
    assert not fallback.text.startswith("(광고)")
    for part in ("[하늘상점]", korean_date(kst(-705, 12)), "2년마다", "무료수신거부 080-555-0000"):
        assert part in fallback.text, (part, fallback.text)


def test_the_result_of_a_withdrawal_or_a_consent_is_told_the_next_morning(run: dict[str, Any]) -> None:
    got = sent(run, "consent_result")
    assert [(c, at) for c, at, _ in got] == [("joiner", D0 + timedelta(days=2, hours=10)),
                                            ("withdrawer", D0 + timedelta(days=2, hours=10))]
    texts = {m.customer_id: m.chain[0].text for m in run["messages"] if m.campaign_id == "consent_result"}
    assert "수신 거부 처리가 완료" in texts["withdrawer"]
    assert "수신 동의 처리가 완료" in texts["joiner"]
    assert all(text.startswith("[하늘상점]") and korean_date(kst(1, 22)) in text for text in texts.values())



def test_a_recorded_opt_out_is_an_event_and_its_result_is_told(run: dict[str, Any]) -> None:
    events = run["shop"].source.con.execute(
        "SELECT customer_id, ts, channel, reason FROM events WHERE event = 'opted_out'").fetchall()
    assert events == [("leaver", kst(2, 8.5), "sms", "080 수신거부")]
    assert sent(run, "opt_out_result") == [("leaver", D0 + timedelta(days=2, hours=10), "alimtalk")]
    message = next(m for m in run["messages"] if m.campaign_id == "opt_out_result")
    assert message.purpose == "informational"
    assert message.chain[0].text.startswith("[하늘상점] 김하늘님, 요청하신 광고성 정보 수신거부가 처리되었습니다.")
    assert "대상: 문자" in message.chain[0].text
    assert "처리일: " + korean_date(kst(2, 8.5)) in message.chain[0].text
    assert "문자 광고성 정보 수신거부가 처리되었습니다" in message.chain[1].text
