"""What each send costs: priced by the channel and kind that carried it (a fallback's step), a Brand Message to a
non-friend at the non-friend price, the provider's reported charge over the policy's table, a charged failed Kakao
attempt added to the same message, recorded on the ledger and the events with where the price came from; and a
send ledger written before pricing existed, upgraded on open."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from shopcrm import Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import KINDS, Accepted, Channel, Message, Rejected, SendResult, SolapiChannel
from shopcrm.dispatching import Dispatcher
from shopcrm.sources._library import SCHEMA_VERSION

T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
ORDER = {"text": "{{ name }}님, 주문하신 겨울 외투가 오늘 출고되었습니다. 배송 조회는 마이페이지에서 하실 수 있습니다. "
                 "문의는 고객센터로 연락 주세요.",
         "alimtalk": {"template_code": "O1", "body": "#{고객명}님, 주문 출고", "variables": {"고객명": "{{ name }}"}}}


class Scripted(Channel):
    """Answers each message with ``answer(message)`` and keeps what it was given."""

    name = "scripted"
    kinds = KINDS

    def __init__(self, answer: Callable[[Message], SendResult]) -> None:
        self.answer = answer
        self.seen: list[Message] = []

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        self.seen += batch
        return [self.answer(m) for m in batch]


def shop_with(people: list[dict[str, Any]], campaign: dict[str, Any], policy: MessagingPolicy = POLICY) -> Shop:
    shop = Shop.open()
    shop.messaging_policy = policy
    shop.load_customers(people)
    shop.save_campaign({"schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}, **campaign}, now=T0 - timedelta(days=1))
    assert shop.tick(now=T0).messages
    return shop


def dispatch(shop: Shop, channels: dict[str, Channel]) -> None:
    asyncio.run(Dispatcher(shop, channels, clock=lambda: T0, seed=1).run())


def sends(shop: Shop) -> dict[Any, Any]:
    return {r.customer_id: r for r in shop.source.campaign_store().sends()}


def sent_events(shop: Shop) -> dict[Any, dict[str, Any]]:
    con = shop.source.con  # type: ignore[attr-defined]
    rows = con.execute("SELECT customer_id, channel, kind, cost, priced_as, price_source FROM events "
                       "WHERE event = 'message_sent'").fetchall()
    return {r[0]: dict(zip(("channel", "kind", "cost", "priced_as", "price_source"), r[1:], strict=True)) for r in rows}


def person(i: int, **fields: Any) -> dict[str, Any]:
    return {"customer_id": f"c{i}", "name": "김민서", "phone": f"010-0000-{i:04d}", "sms_consent": True,
            "kakao_consent": True, "kakao_friend": True, "night_consent": False, **fields}


def test_an_alimtalk_that_falls_back_to_lms_costs_an_lms() -> None:
    shop = shop_with([person(0)], {"id": "order", "purpose": "informational", "channels": ["alimtalk", "sms"],
                                   "variants": [{"name": "a", "content": ORDER}]})
    kakao = Scripted(lambda m: Rejected("Solapi 3104: 카카오톡 미사용자", code="3104"))
    texts = Scripted(lambda m: Accepted(provider_id=f"sms-{m.key}"))
    dispatch(shop, {"alimtalk": kakao, "sms": texts})
    row = sends(shop)["c0"]
    assert [m.kind for m in texts.seen] == ["lms"]  # the fallback text is long: an LMS
    assert (row.state, row.chain_index, row.channel, row.kind) == ("sent", 1, "sms", "lms")
    assert (row.cost, row.priced_as, row.price_source) == (39.0, "sms:lms", "table")
    assert sent_events(shop)["c0"] == {"channel": "sms", "kind": "lms", "cost": 39.0, "priced_as": "sms:lms",
                                       "price_source": "table"}


def test_a_brand_message_to_a_non_friend_costs_the_non_friend_price() -> None:
    policy = attrs.evolve(POLICY, brand_message_friends_only=False)  # a licensed channel: M targeting allowed
    shop = shop_with([person(0), person(1, kakao_friend=False)],
                     {"id": "sale", "purpose": "advertising", "channels": ["brand_message"],
                      "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일"}}]}, policy)
    assert [item["friend"] for r in shop.outbox() for item in r.chain] in ([True, False], [False, True])
    kakao = Scripted(lambda m: Accepted(provider_id=m.key))
    dispatch(shop, {"brand_message": kakao})
    rows = sends(shop)
    assert (rows["c0"].cost, rows["c0"].priced_as) == (25.0, "brand_message:friend")
    assert (rows["c1"].cost, rows["c1"].priced_as) == (35.0, "brand_message:non_friend")
    assert {m.customer_id: m.friend for m in kakao.seen} == {"c0": True, "c1": False}
    assert sent_events(shop)["c1"]["cost"] == 35.0
    # Solapi targets the friend I and the non-friend M (marketing-consent users)
    solapi = SolapiChannel(api_key="k", api_secret="s", sender="0215880000", pf_id="KA01PF")
    bodies = {m.customer_id: solapi.body(m)["kakaoOptions"]["bms"]["targeting"] for m in kakao.seen}
    assert bodies == {"c0": "I", "c1": "M"}
    assert policy.priced("brand_message", "brand_message", friend=False) == (35.0, "brand_message:non_friend")


def test_a_reported_charge_wins_over_the_table() -> None:
    shop = shop_with([person(0)], {"id": "sale", "purpose": "advertising", "channels": ["brand_message"],
                                   "variants": [{"name": "a", "content": {"text": "{{ name }}님, 겨울 세일"}}]})
    dispatch(shop, {"brand_message": Scripted(lambda m: Accepted(provider_id="x", cost=23.0))})
    row = sends(shop)["c0"]
    assert (row.cost, row.priced_as, row.price_source) == (23.0, "brand_message:friend", "reported")
    assert sent_events(shop)["c0"]["price_source"] == "reported"


def test_a_charged_failed_kakao_attempt_adds_to_the_messages_cost() -> None:
    people = [person(0), person(1)]
    campaign = {"id": "sale", "purpose": "advertising", "channels": ["brand_message", "sms"],
                "variants": [{"name": "a", "content": {"text": "{{ name }}님, 세일"}}]}
    shop = shop_with(people, campaign)
    # c0's failed attempt was charged 8 KRW; c1's was not (the usual case): it costs only the SMS
    kakao = Scripted(lambda m: Rejected("3102 not a friend", code="3102", charge=8.0 if m.customer_id == "c0" else None))
    dispatch(shop, {"brand_message": kakao, "sms": Scripted(lambda m: Accepted(provider_id=m.key))})
    rows = sends(shop)
    assert (rows["c0"].cost, rows["c0"].priced_as, rows["c0"].price_source) == (8.0 + 12.0, "sms:sms", "table")
    assert rows["c1"].cost == 12.0
    assert sent_events(shop)["c0"]["cost"] == 20.0
    # with nothing to fall back to, the failed message still carries what it was charged
    alone = shop_with([person(0)], {**campaign, "channels": ["brand_message"]})
    dispatch(alone, {"brand_message": Scripted(lambda m: Rejected("3102", code="3102", charge=8.0))})
    row = sends(alone)["c0"]
    assert (row.state, row.cost, row.priced_as, row.price_source) == ("failed", 8.0, "brand_message:friend", "reported")


def test_solapi_reports_its_unit_price_on_the_groups_send() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/messages/v4/groups":
            return httpx.Response(200, json={"groupId": "G1", "status": "PENDING"})
        if path.endswith("/messages"):
            items = json.loads(request.content)["messages"]
            return httpx.Response(200, json={"errorCount": 0, "resultList": [
                {"to": m["to"], "type": m["type"], "country": "82", "messageId": f"M{i}", "statusCode": "2000",
                 "customFields": m["customFields"]} for i, m in enumerate(items)]})
        return httpx.Response(200, json={"groupId": "G1", "status": "SENDING",
                                         "price": {"82": {"sms": 18, "lms": 45, "ata": 13}}})

    solapi = SolapiChannel(api_key="k", api_secret="s", sender="0215880000", pf_id="KA01PF",
                           transport=httpx.MockTransport(answer))
    messages = [Message(key=f"k{i}", customer_id="c", channel=c, kind=k, to="01000000000", text="t", batch_ref="G1",
                        template_code="T")
                for i, (c, k) in enumerate([("sms", "lms"), ("alimtalk", "alimtalk"), ("brand_message", "brand_message")])]
    results = asyncio.run(solapi.send(messages))
    assert [r.cost for r in results if isinstance(r, Accepted)] == [45.0, 13.0, None]  # no BMS price: the table's


def _v2_library(connection: sqlite3.Connection) -> None:
    """The library's tables as shopcrm wrote them at schema version 2 (before pricing), with a sent message."""
    connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT)")
    connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT)")
    connection.execute("CREATE TABLE shopcrm_settings (name VARCHAR(100) PRIMARY KEY, document TEXT NOT NULL, "
                       "updated_at VARCHAR(32) NOT NULL)")
    connection.execute("INSERT INTO shopcrm_settings VALUES ('library', '{\"schema_version\": 2}', '2026-11-01 00:00:00')")
    connection.execute(
        "CREATE TABLE shopcrm_sends (key_ VARCHAR(64) PRIMARY KEY, customer_id VARCHAR(200) NOT NULL, "
        "campaign_id VARCHAR(100) NOT NULL, chain_index INTEGER NOT NULL, state VARCHAR(20) NOT NULL, "
        "attempts INTEGER NOT NULL, next_at VARCHAR(32) NOT NULL, lease_until VARCHAR(32), claim VARCHAR(64), "
        "provider_id VARCHAR(200), code VARCHAR(64), reason TEXT, cost DOUBLE PRECISION NOT NULL, "
        "updated_at VARCHAR(32) NOT NULL, batch_ref VARCHAR(200), checks INTEGER NOT NULL DEFAULT 0)")
    connection.execute(
        "CREATE TABLE shopcrm_message_events (customer_id VARCHAR(200) NOT NULL, event VARCHAR(40) NOT NULL, "
        "ts VARCHAR(32) NOT NULL, message_key VARCHAR(64) NOT NULL, campaign_id VARCHAR(100), channel VARCHAR(20), "
        "kind VARCHAR(20), cost DOUBLE PRECISION, provider_id VARCHAR(200), reason TEXT, code VARCHAR(64))")
    connection.execute("INSERT INTO shopcrm_sends VALUES ('k1', '\"c0\"', 'sale', 0, 'sent', 1, '2026-11-01 00:00:00', "
                       "NULL, '', 'M1', '', '', 25.0, '2026-11-01 00:00:00', 'G1', 0)")
    connection.commit()


def test_a_ledger_written_before_pricing_is_upgraded_on_open(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "v2.db")
    _v2_library(connection)
    shop = Shop.from_dbapi(connection, dialect="sqlite")
    [old] = shop.source.campaign_store().sends()
    assert (old.key, old.cost, old.priced_as, old.price_source, old.kind) == ("k1", 25.0, "", "", "")  # unknown, kept
    sends_columns = [r[1] for r in connection.execute("PRAGMA table_info(shopcrm_sends)")]
    assert sends_columns[-5:] == ["channel", "kind", "priced_as", "price_source", "sent_at"]
    event_columns = [r[1] for r in connection.execute("PRAGMA table_info(shopcrm_message_events)")]
    assert event_columns[-2:] == ["priced_as", "price_source"]
    [(document,)] = connection.execute("SELECT document FROM shopcrm_settings WHERE name = 'library'").fetchall()
    assert json.loads(document) == {"schema_version": SCHEMA_VERSION} == {"schema_version": 4}
    # and the upgraded store records prices: a new send through it
    connection.execute("INSERT INTO customers VALUES ('c1', '김민서', '010-0000-0001')")
    connection.commit()
    shop.messaging_policy = POLICY
    shop.save_campaign({"id": "order", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문 완료"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    dispatch(shop, {"sms": Scripted(lambda m: Accepted(provider_id="x"))})
    new = sends(shop)["c1"]
    assert (new.cost, new.priced_as, new.price_source) == (12.0, "sms:sms", "table")
    [event] = [e for e in shop.source.campaign_store().message_events() if e["event"] == "message_sent"]
    assert (event["priced_as"], event["price_source"], event["cost"]) == ("sms:sms", "table", 12.0)


def test_the_price_table_round_trips_and_refuses_what_it_cannot_price() -> None:
    policy = attrs.evolve(POLICY, prices={**POLICY.prices, "email": 1.5})
    assert MessagingPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert POLICY.prices == {"alimtalk": 10, "sms": 12, "lms": 39, "mms": 90, "brand_message": 25,
                             "brand_message_non_friend": 35, "email": 0, "push": 0, "webhook": 0}
    with pytest.raises(ValueError, match="no kind 'kakao'; price one of"):
        MessagingPolicy(prices={"kakao": 10})
    with pytest.raises(ValueError, match="numbers of 0 or more"):
        MessagingPolicy(prices={"sms": -1})
