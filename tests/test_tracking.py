"""Tracked links: signed tokens that survive nothing but an exact copy, clicks recorded once with the message's
fields, SMS/LMS chosen on the text with its tracked links, and signed one-click unsubscribe links in e-mails."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopcrm import CampaignError, Shop
from shopcrm.campaigns import MessagingPolicy
from shopcrm.campaigns._korean import cp949_length
from shopcrm.channels import Message
from shopcrm.channels.smtp import SmtpChannel
from shopcrm.tracking import TrackingPolicy, link_id, make_token, read_token

T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
SECRET = "k3y-of-at-least-16-bytes-0123456789"
KEY = "f4dabd4328c69d80eb84310b98cf7c6c"
TRACKING = TrackingPolicy(base_url="https://shop.example/r", secret=SECRET, unsubscribe_url="https://shop.example/u")
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                         tracking=TRACKING)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# -- tokens ---------------------------------------------------------------------------------------------
def test_a_token_round_trips_and_is_compact() -> None:
    token = make_token(SECRET, "click", KEY, "https://shop.example/p/123")
    assert len(token) == 50
    assert set(token) <= set(B64)
    found = read_token(SECRET, token, "click")
    assert found is not None
    assert found.message_key == KEY
    assert found.link == link_id("https://shop.example/p/123")
    other = read_token(SECRET, make_token(SECRET, "click", "custom:key/é", "https://x.kr"), "click")
    assert other is not None
    assert other.message_key == "custom:key/é"
    unsubscribe = make_token(SECRET, "unsubscribe", KEY)
    assert len(unsubscribe) == 44
    assert read_token(SECRET, unsubscribe, "unsubscribe") == attrs.evolve(found, link=None)


def test_forged_truncated_foreign_and_cross_purpose_tokens_are_refused() -> None:
    token = make_token(SECRET, "click", KEY, "https://shop.example/p/123")
    assert read_token("another-secret-of-16-bytes-or-more", token, "click") is None
    assert read_token(SECRET, token[:-1], "click") is None
    assert read_token(SECRET, token[:-4], "click") is None
    assert read_token(SECRET, token + "A", "click") is None
    assert read_token(SECRET, token, "unsubscribe") is None  # a click token never unsubscribes
    assert read_token(SECRET, make_token(SECRET, "unsubscribe", KEY), "click") is None
    assert read_token(SECRET, "", "click") is None
    assert read_token(SECRET, "not a token at all!", "click") is None
    # the same message key with a MAC computed for another key: refused
    raw = base64.urlsafe_b64decode(token + "==")
    other = base64.urlsafe_b64decode(make_token(SECRET, "click", "0" * 32, "https://shop.example/p/123") + "==")
    spliced = base64.urlsafe_b64encode(raw[:-16] + other[-16:]).rstrip(b"=").decode()
    assert read_token(SECRET, spliced, "click") is None


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_mutated_token_is_refused(data: st.DataObject) -> None:
    url = data.draw(st.sampled_from(["https://shop.example/p/1", "https://a.kr/쿠폰?x=1"]))
    token = make_token(SECRET, "click", KEY, url)
    kind = data.draw(st.sampled_from(["replace", "delete", "insert", "swap"]))
    i = data.draw(st.integers(0, len(token) - 1))
    if kind == "replace":
        mutated = token[:i] + data.draw(st.sampled_from([c for c in B64 if c != token[i]])) + token[i + 1:]
    elif kind == "delete":
        mutated = token[:i] + token[i + 1:]
    elif kind == "insert":
        mutated = token[:i] + data.draw(st.sampled_from(B64)) + token[i:]
    else:
        j = data.draw(st.integers(0, len(token) - 1))
        chars = list(token)
        chars[i], chars[j] = chars[j], chars[i]
        mutated = "".join(chars)
    if mutated != token:
        assert read_token(SECRET, mutated, "click") is None


def test_the_policy_keeps_its_secret_out_of_reprs_and_round_trips() -> None:
    assert SECRET not in repr(TRACKING)
    assert SECRET not in repr(POLICY)
    assert TrackingPolicy.from_dict(TRACKING.to_dict()) == TRACKING
    assert MessagingPolicy.from_dict(POLICY.to_dict()) == POLICY
    with pytest.raises(ValueError, match="at least 16 bytes"):
        TrackingPolicy(base_url="https://shop.example/r", secret="short")
    with pytest.raises(ValueError, match="http"):
        TrackingPolicy(base_url="shop.example/r", secret=SECRET)
    assert TrackingPolicy(base_url="https://shop.example/r/", secret=SECRET).link(KEY, "https://x.kr").startswith(
        "https://shop.example/r/")


# -- clicks through a shop --------------------------------------------------------------------------
def shop_with(text: str, *, policy: MessagingPolicy = POLICY, channels: tuple[str, ...] = ("sms",),
              purpose: str = "advertising", subject: str | None = None) -> Shop:
    shop = Shop.open()
    shop.messaging_policy = policy
    shop.load_customers([
        {"customer_id": f"c{i}", "name": "김민서", "phone": f"010-0000-{i:04d}", "email": f"c{i}@example.kr",
         "sms_consent": True, "email_consent": True}
        for i in range(2)
    ])
    content: dict[str, Any] = {"text": text}
    if subject is not None:
        content["subject"] = subject
    shop.save_campaign({"id": "sale", "purpose": purpose, "channels": list(channels),
                        "variants": [{"name": "a", "content": content}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    return shop


def tokens(text: str, base: str = "https://shop.example/r/") -> list[str]:
    return [word[len(base):] for word in text.split() if word.startswith(base)]


def clicks(shop: Shop) -> list[tuple[Any, ...]]:
    """The recorded clicks (the embedded store writes message events into its events table)."""
    cursor = shop.source.con.execute("SELECT * FROM events WHERE event = 'message_clicked' ORDER BY ts")  # type: ignore[attr-defined]
    names = [d[0] for d in cursor.description]
    fields = ("customer_id", "ts", "message_key", "campaign_id", "channel", "kind", "link", "code")
    return [tuple(dict(zip(names, row, strict=True))[f] for f in fields) for row in cursor.fetchall()]


def test_a_click_is_recorded_once_with_the_message_fields_and_returns_the_target() -> None:
    shop = shop_with("{{ name }}님 {{ link('https://shop.example/p/123') }} {{ link('https://shop.example/cart') }}")
    planned = {r.customer_id: r for r in shop.outbox()}
    row = planned["c1"]
    item = row.chain[0]
    assert item["links"] == ["https://shop.example/p/123", "https://shop.example/cart"]
    first, second = tokens(item["text"])
    assert tokens(planned["c0"].chain[0]["text"])[0] != first  # personal to the message
    at = T0 + timedelta(hours=2)
    assert shop.record_click(second, at=at) == "https://shop.example/cart"
    assert clicks(shop) == [("c1", at, row.key, "sale", "sms", item["kind"], "https://shop.example/cart",
                             link_id("https://shop.example/cart").hex())]


def test_bad_tokens_and_unknown_messages_record_nothing() -> None:
    shop = shop_with("세일 {{ link('https://shop.example/p/123') }}")
    good = tokens(shop.outbox()[0].chain[0]["text"])[0]
    assert shop.record_click(good[:-2], at=T0) is None
    assert shop.record_click(good[:10] + ("A" if good[10] != "A" else "B") + good[11:], at=T0) is None
    foreign = TrackingPolicy(base_url="https://shop.example/r", secret="a-different-secret-0123456789")
    assert shop.record_click(tokens(foreign.link(shop.outbox()[0].key, "https://shop.example/p/123"))[0], at=T0) is None
    # signed with the right secret, but for a message this shop never planned, or a link its message lacks
    assert shop.record_click(tokens(TRACKING.link("9" * 32, "https://shop.example/p/123"))[0], at=T0) is None
    assert shop.record_click(tokens(TRACKING.link(shop.outbox()[0].key, "https://evil.example/"))[0], at=T0) is None
    assert clicks(shop) == []
    assert shop.record_click(good, at=T0) == "https://shop.example/p/123"
    assert len(clicks(shop)) == 1


def test_a_batch_of_clicks_is_judged_click_by_click_and_written_at_once() -> None:
    shop = shop_with("세일 {{ link('https://shop.example/p/123') }}")
    rows = {r.customer_id: r for r in shop.outbox()}
    good = [tokens(rows[c].chain[0]["text"])[0] for c in ("c0", "c1")]
    forged = good[0][:-2]
    foreign = tokens(TRACKING.link("9" * 32, "https://shop.example/p/123"))[0]
    batch = [(good[0], T0 + timedelta(hours=1)), (forged, T0), (foreign, T0), (good[1], T0 + timedelta(hours=2)),
             (good[0], T0 + timedelta(hours=3))]
    writes = []
    store = shop.source.campaign_store()
    original = store.add_events
    store.add_events = lambda events: (writes.append(len(events)), original(events))[1]  # type: ignore[method-assign]
    assert shop.record_clicks(batch) == ["https://shop.example/p/123", None, None, "https://shop.example/p/123",
                                         "https://shop.example/p/123"]
    assert writes == [3]  # one write for the batch
    assert [(c[0], c[1], c[2]) for c in clicks(shop)] == [
        ("c0", T0 + timedelta(hours=1), rows["c0"].key), ("c1", T0 + timedelta(hours=2), rows["c1"].key),
        ("c0", T0 + timedelta(hours=3), rows["c0"].key)]
    assert shop.record_clicks([(forged, T0)]) == [None]
    assert shop.record_clicks([]) == []
    assert writes == [3]


def test_a_click_before_the_send_is_recorded_for_the_attribution_layer_to_filter() -> None:
    shop = shop_with("세일 {{ link('https://shop.example/p/123') }}")
    row = shop.outbox()[0]
    early = row.send_at - timedelta(minutes=5)  # nothing was dispatched yet
    assert shop.record_click(tokens(row.chain[0]["text"])[0], at=early) == "https://shop.example/p/123"
    assert [c[1] for c in clicks(shop)] == [early]


def test_a_tracked_link_is_measured_before_the_sms_lms_choice() -> None:
    filler = "가" * 15  # 30 bytes in CP949
    informational = MessagingPolicy(tracking=TRACKING)
    plain = shop_with(f"{filler} https://s.kr/1", policy=informational, purpose="informational")
    tracked = shop_with(f"{filler} {{{{ link('https://s.kr/1') }}}}", policy=informational, purpose="informational")
    plain_item, tracked_item = plain.outbox()[0].chain[0], tracked.outbox()[0].chain[0]
    assert cp949_length(plain_item["text"]) <= 90 < cp949_length(tracked_item["text"])
    assert cp949_length(tracked_item["text"].replace(tracked_item["text"].split()[-1], "https://s.kr/1")) <= 90
    assert plain_item["kind"] == "sms"
    assert tracked_item["kind"] == "lms"  # only the tracked link made it long
    assert tracked.outbox()[0].cost == informational.prices["lms"]


def test_link_without_a_tracking_base_is_refused_when_the_campaign_is_saved_or_previewed() -> None:
    shop = Shop.open()
    shop.messaging_policy = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
    shop.load_customers([{"customer_id": "c0", "name": "김", "phone": "010-0000-0000", "sms_consent": True}])
    campaign = {"id": "sale", "purpose": "advertising", "channels": ["sms"],
                "variants": [{"name": "a", "content": {"text": "{{ link('https://shop.example/') }}"}}],
                "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}
    with pytest.raises(CampaignError, match="no tracking base is configured"):
        shop.save_campaign(campaign, now=T0)
    with pytest.raises(CampaignError, match="no tracking base is configured"):
        shop.preview(campaign, now=T0)


def test_an_email_carries_a_signed_one_click_unsubscribe_link_that_opts_out() -> None:
    shop = shop_with("겨울 세일", channels=("email",), subject="세일")
    row = {r.customer_id: r for r in shop.outbox()}["c0"]
    message = Message.from_rendered(row.chain[0], key=row.key, customer_id="c0", campaign_id="sale")
    mail = SmtpChannel("localhost", sender="shop@example.kr").email(message)
    url = mail["List-Unsubscribe"].strip("<>")
    assert url == TRACKING.unsubscribe(row.key)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in message.text  # the footer shows the same link
    token = url.rsplit("/", 1)[1]
    assert shop.record_click(token, at=T0) is None  # not a click token
    assert not shop.record_unsubscribe(token[:-1], at=T0)
    assert shop.source.campaign_store().opt_outs() == {}
    assert shop.record_unsubscribe(token, at=T0)
    assert shop.record_unsubscribe(token, at=T0 + timedelta(seconds=1))  # twice: harmless
    assert set(shop.source.campaign_store().opt_outs()) == {"c0"}
    assert set(shop.source.campaign_store().opt_outs()["c0"]) == {"email"}


def test_a_shop_on_its_own_database_records_the_click_in_the_message_events_table() -> None:
    import sqlite3

    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT)")
    connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TEXT)")
    connection.execute("INSERT INTO customers VALUES ('c0', '김민서', '010-3000-0000')")
    connection.commit()
    shop = Shop.from_dbapi(connection, dialect="sqlite")
    shop.messaging_policy = MessagingPolicy(sender_name="모아샵", sender_contact="1588-0000", opt_out_number="080-000-0000", tracking=TRACKING)
    shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "공지 {{ link('https://shop.example/n/1') }}"}}],
                        "schedule": {"kind": "one_off", "at": T0.isoformat()}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    row = shop.outbox()[0]
    assert shop.record_click(tokens(row.chain[0]["text"])[0], at=T0 + timedelta(hours=1)) == "https://shop.example/n/1"
    [event] = shop.source.campaign_store().message_events()
    assert {k: event[k] for k in ("customer_id", "event", "ts", "message_key", "campaign_id", "channel", "code")} == {
        "customer_id": "c0", "event": "message_clicked", "ts": T0 + timedelta(hours=1), "message_key": row.key,
        "campaign_id": "notice", "channel": "sms", "code": link_id("https://shop.example/n/1").hex()}


def test_a_click_names_the_channel_that_carried_the_message_after_a_fallback() -> None:
    import asyncio
    from collections.abc import Sequence

    from shopcrm.channels import Channel, ConsoleChannel, Rejected, SendResult
    from shopcrm.dispatching import Dispatcher

    class Refusing(Channel):
        name = "refusing"
        kinds = frozenset({"brand_message"})

        async def send(self, batch: Sequence[Message]) -> list[SendResult]:
            return [Rejected("not a friend any more", code="3102") for _ in batch]

    shop = Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": "c0", "name": "김민서", "phone": "010-0000-0000", "sms_consent": True,
                          "kakao_consent": True, "kakao_friend": True}])
    shop.save_campaign({"id": "sale", "purpose": "advertising", "channels": ["brand_message", "sms"],
                        "variants": [{"name": "a", "content": {"text": "세일 {{ link('https://shop.example/p/1') }}"}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    shop.tick(now=T0)
    channels = {"brand_message": Refusing(), "sms": ConsoleChannel(write=lambda _: None)}
    report = asyncio.run(Dispatcher(shop, channels, clock=lambda: T0).run())
    assert report.outcomes == {"sent": 1, "fallback": 1}
    row = shop.outbox()[0]
    sms = row.chain[1]
    assert sms["channel"] == "sms"
    assert shop.record_click(tokens(sms["text"])[0], at=T0 + timedelta(hours=1)) == "https://shop.example/p/1"
    [click] = clicks(shop)
    assert click[4:6] == ("sms", sms["kind"])


def test_a_tracked_click_and_the_order_it_leads_to_reach_the_campaign_report(tmp_path: Path) -> None:
    """send -> click -> convert -> credit -> report, through the real pieces: the link rendered into the SMS, the
    click recorded from its token, the order credited to that message by the report's last-click model."""
    from shopcrm.channels import JsonlChannel

    shop = shop_with("{{ name }}님 겨울 세일 {{ link('https://shop.example/p/123') }}")
    shop.dispatch({"sms": JsonlChannel(tmp_path / "sent.jsonl")}, clock=lambda: T0)
    sent = {r.customer_id: r for r in shop.outbox()}
    token = tokens(sent["c1"].chain[0]["text"])[0]
    assert shop.record_click(token, at=T0 + timedelta(hours=1)) == "https://shop.example/p/123"
    shop.load_events([
        {"customer_id": "c1", "event": "order_completed", "ts": T0 + timedelta(hours=2), "amount": 30000, "order_id": "o1"},
        {"customer_id": "c0", "event": "order_completed", "ts": T0 + timedelta(days=9), "amount": 5000, "order_id": "o2"},
    ])
    row = shop.report("sale", now=T0 + timedelta(days=10)).row("sale")
    assert (row["sent"], row["clicked"], row["attributed_conversions"], row["attributed_revenue"]) == (2, 1, 1, 30000)
    assert row["ctr"] == 0.5
