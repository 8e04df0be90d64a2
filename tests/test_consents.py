"""K2: the append-only evidence of consents (who, when, how, which text), and what a consent given or withdrawn
does to the opt-outs the planner and the dispatcher honour."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import shopcrm
from shopcrm.campaigns import MessagingPolicy
from shopcrm.consents import CONSENT_GROUPS, ConsentRecord, consent_record, opt_outs_after

T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
SALE = {"id": "sale", "purpose": "advertising", "channels": ["sms"], "variants": [{"name": "a", "content": {"text": "세일"}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}


def record(group: str, granted: bool, minute: int, customer: str = "c1") -> ConsentRecord:
    return consent_record(customer, group, granted=granted, at=T0 + timedelta(minutes=minute), how="web form", by="test",
                          text_version="v1" if granted else None, recorded_at=T0 + timedelta(minutes=minute))


# ----------------------------------------------------------------------------------- the pure rule
def _expected(initial: dict[str, tuple[datetime, str]], records: list[ConsentRecord], group: str) -> datetime | None:
    """The reference: a group is opted out from its latest opt-out or withdrawal (its own or ``all``) unless a
    consent of the group was given after it (at the same instant the opt-out stands)."""
    outs = [at for g, (at, _) in initial.items() if g in (group, "all")]
    outs += [r.at for r in records if not r.granted and r.group in (group, "all")]
    grants = [r.at for r in records if r.granted and r.group == group]
    if not outs or (grants and max(grants) > max(outs)):
        return None
    return max(outs)


ALL_GROUPS = ("all", *CONSENT_GROUPS)
minutes = st.integers(min_value=0, max_value=6)


@given(
    initial=st.dictionaries(st.sampled_from(ALL_GROUPS), minutes, max_size=3),
    steps=st.lists(st.tuples(st.sampled_from(ALL_GROUPS), st.booleans(), minutes), max_size=8),
)
def test_each_group_is_opted_out_from_its_latest_withdrawal_unless_a_later_consent_lifts_it(
    initial: dict[str, int], steps: list[tuple[str, bool, int]],
) -> None:
    current = {g: (T0 + timedelta(minutes=m), "080") for g, m in initial.items()}
    records = [record(g, granted, m) for g, granted, m in steps if not (granted and g == "all")]
    after = opt_outs_after(current, records)
    for group in CONSENT_GROUPS:
        covering = [at for g, (at, _) in after.items() if g in (group, "all")]
        assert (max(covering) if covering else None) == _expected(current, records, group), group


def test_a_consent_lifts_an_all_opt_out_for_its_group_only_and_keeps_its_reason_for_the_others() -> None:
    current = {"all": (T0, "080 call")}
    after = opt_outs_after(current, [record("sms", True, 5)])
    assert after == dict.fromkeys(("kakao", "email", "push"), (T0, "080 call"))


# ----------------------------------------------------------------------------------- what a record must say
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"group": "all", "granted": True}, r"'all' is not a consent group here; use one of sms, kakao, email, push \('all' names"),
    ({"group": "fax"}, r"'fax' is not a consent group here; use one of sms, kakao"),
    ({"text_version": None}, r"a consent given needs text_version: the version of the consent text"),
    ({"how": " "}, r"needs how: how the customer did it"),
    ({"by": ""}, r"needs by: who records it"),
    ({"granted": "yes"}, r"granted must be True \(a consent given\) or False \(withdrawn\), not 'yes'"),
    ({"how": "x" * 201}, r"how has 201 characters; at most 200"),
])
def test_a_record_that_lacks_what_the_evidence_needs_is_refused_saying_what_would_be_right(
    kwargs: dict[str, object], message: str,
) -> None:
    given_ = {"group": "sms", "granted": True, "how": "signup form", "by": "web", "text_version": "v1"} | kwargs
    with pytest.raises(ValueError, match=message):
        consent_record("c1", at=T0, recorded_at=T0, **given_)  # type: ignore[arg-type]


def test_a_withdrawal_needs_no_text_version_and_may_name_every_group() -> None:
    withdrawn = consent_record("c1", "all", granted=False, how="080 call", by="080", text_version=None, at=T0, recorded_at=T0)
    assert (withdrawn.group, withdrawn.granted, withdrawn.text_version) == ("all", False, None)


# ----------------------------------------------------------------------------------- on a shop
def _shop(path: Path | None = None) -> shopcrm.Shop:
    shop = shopcrm.Shop.open(path) if path else shopcrm.Shop.open()
    shop.messaging_policy = POLICY
    shop.load_customers([{"customer_id": f"c{i}", "phone": f"010-1111-000{i}", "sms_consent": True} for i in range(3)])
    shop.save_campaign(SALE, now=T0 - timedelta(days=1))
    return shop


def test_a_withdrawal_stops_advertising_at_once_and_announces_itself_with_an_opted_out_event() -> None:
    shop = _shop()
    shop.record_consent("c1", "sms", granted=False, how="080 call", by="080-service", at=T0 - timedelta(hours=1))
    result = shop.tick(now=T0, dry_run=True)
    assert {s.customer_id: s.reason for s in result.suppressions} == {"c1": "opted_out"}
    assert sorted(m.customer_id for m in result.messages) == ["c0", "c2"]
    [event] = shop.source.con.execute(
        "SELECT customer_id, event, ts, channel, reason FROM events WHERE event = 'opted_out'").fetchall()
    assert event == ("c1", "opted_out", T0 - timedelta(hours=1), "sms", "consent withdrawn (080 call)")


def test_a_consent_given_after_an_opt_out_lifts_it_and_one_given_before_does_not() -> None:
    shop = _shop()
    shop.record_opt_out("c1", "all", at=T0 - timedelta(days=3), reason="080 call")
    shop.record_opt_out("c2", "sms", at=T0 - timedelta(days=3), reason="080 call")
    shop.record_consent("c1", "sms", granted=True, how="app settings", by="app", text_version="mkt-2026-03",
                        at=T0 - timedelta(days=1))
    shop.record_consent("c2", "sms", granted=True, how="paper form", by="store", text_version="mkt-2026-03",
                        at=T0 - timedelta(days=5))  # signed before the opt-out: the opt-out stands
    result = shop.tick(now=T0, dry_run=True)
    assert sorted(m.customer_id for m in result.messages) == ["c0", "c1"]
    assert {s.customer_id: s.reason for s in result.suppressions} == {"c2": "opted_out"}
    outs = shop.source.campaign_store().opt_outs()
    assert outs == {"c1": {g: T0 - timedelta(days=3) for g in ("kakao", "email", "push")}, "c2": {"sms": T0 - timedelta(days=3)}}


def test_the_log_keeps_every_record_in_order_and_a_later_open_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    shop = _shop(path)
    first = shop.record_consent("c0", "sms", granted=True, how="signup form", by="web", text_version="v1",
                                at=T0 - timedelta(days=400), now=T0 - timedelta(days=400))
    shop.record_consent("c0", "sms", granted=False, how="unsubscribe link", by="web", now=T0 - timedelta(days=10))
    shop.record_consent("c0", "sms", granted=True, how="checkout checkbox", by="web", text_version="v2",
                        at=T0 - timedelta(days=2), now=T0 - timedelta(days=2))
    shop.record_consent("c1", "email", granted=True, how="signup form", by="web", text_version="v2", now=T0)
    shop.close()
    with shopcrm.Shop.open(path, read_only=True) as again:
        log = again.consent_log("c0")
        assert [(r.granted, r.how, r.text_version, r.at) for r in log] == [
            (True, "signup form", "v1", T0 - timedelta(days=400)),
            (False, "unsubscribe link", None, T0 - timedelta(days=10)),
            (True, "checkout checkbox", "v2", T0 - timedelta(days=2)),
        ]
        assert log[0] == first
        assert [r.customer_id for r in again.consent_log()] == ["c0", "c0", "c0", "c1"]
        assert again.source.campaign_store().opt_outs() == {}  # the withdrawal was lifted by the consent after it
        with pytest.raises(shopcrm.ReadOnlyShopError):
            again.record_consent("c1", "sms", granted=False, how="080 call", by="080")


def test_a_consent_names_a_customer_of_the_shop() -> None:
    shop = _shop()
    with pytest.raises(KeyError, match="no customer 'c9' in 'customers'; an opt-out or a consent names a customer"):
        shop.record_consent("c9", "sms", granted=True, how="web form", by="web", text_version="v1")
    assert shop.consent_log() == []
