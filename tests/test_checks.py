"""shop.check(), the count-time UnseenEventWarning, the CampaignWarning of save_campaign and `shopcrm doctor`:
every way a saved segment or campaign can silently count or send nothing is named, with a did-you-mean."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import shopcrm
from shopcrm import CampaignWarning, CheckReport, Shop, UnseenEventWarning
from shopcrm.campaigns import MessagingPolicy
from shopcrm.checks import (
    SeenEvent,
    ShopFacts,
    check_shop,
    event_properties,
    seen_events_query,
    template_reads,
)
from shopcrm.cli import main
from shopcrm.dsl import did
from shopcrm.schema import ColumnType, Schema, Table

NOW = datetime(2026, 3, 2, 12)
POLICY = MessagingPolicy(sender_name="모아샵", sender_contact="02-123-4567", opt_out_number="080-123-4567")


def customers(**drop: bool) -> list[dict[str, Any]]:
    rows = []
    for i in range(3):
        row: dict[str, Any] = {
            "customer_id": f"c{i}", "name": f"고객{i}", "phone": f"010-1234-000{i}", "sms_consent": True,
            "kakao_consent": True, "kakao_friend": True,
        }
        rows.append({k: v for k, v in row.items() if not drop.get(k)})
    return rows


def events(*names: str) -> list[dict[str, Any]]:
    return [{"customer_id": "c0", "event": name, "ts": datetime(2026, 3, 1, 9), "product_id": "p1",
             "order_id": "o1", "amount": 10000} for name in names]


def make_shop(path: str | Path = ":memory:", *, names: tuple[str, ...] = ("order_completed", "cart_added"),
              **drop: bool) -> Shop:
    shop = Shop.open(path)
    shop.messaging_policy = POLICY
    shop.load_customers(customers(**drop))
    if names:
        shop.load_events(events(*names))
    return shop


@pytest.fixture
def shop() -> Iterator[Shop]:
    with make_shop() as opened:
        yield opened


def promo(text: str, *, purpose: str = "advertising", channels: tuple[str, ...] = ("sms",)) -> dict[str, Any]:
    return {"id": "promo", "purpose": purpose, "channels": list(channels),
            "variants": [{"name": "a", "content": {"text": text}}],
            "schedule": {"kind": "one_off", "at": "2026-03-03T10:00:00"}}


def test_a_clean_shop_has_no_findings_and_saving_warns_nothing(shop: Shop) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shop.save_segment("buyers", did("order_completed"))
        shop.enable_playbook("cart_reminder", now=NOW)
        shop.save_campaign(promo("{{ name }}님, 봄 세일이 시작됐어요"), now=NOW)
        assert shop.count(did("order_completed"), now=NOW) == 1
    report = shop.check(now=NOW)
    assert report.findings == ()
    assert report.ok
    assert str(report) == "no problems found"
    assert report.to_dict() == {"ok": True, "findings": []}


def test_a_misspelt_event_in_a_saved_segment_is_named_with_the_close_name(shop: Shop) -> None:
    shop.save_segment("buyers", did("order_complete").within(last="30d"))
    report = shop.check(now=NOW)
    [finding] = report.findings
    assert (finding.severity, finding.code, finding.kind, finding.name) == ("warning", "unseen-event", "segment", "buyers")
    assert finding.suggestion == "order_completed"
    assert "'order_complete'" in finding.message
    assert "never occurs" in finding.message
    assert report.ok  # a warning is not an error
    text = str(report)
    assert text.startswith("1 warning\nwarnings:\n  segment 'buyers' [unseen-event]")
    assert text.endswith("did you mean 'order_completed'?")
    assert "order_completed" in report._repr_html_()
    assert report.to_dict()["findings"][0]["suggestion"] == "order_completed"


def test_an_event_with_no_close_name_has_no_suggestion(shop: Shop) -> None:
    shop.save_segment("refunds", did("refund_issued"))
    [finding] = shop.check(now=NOW).findings
    assert finding.code == "unseen-event"
    assert finding.suggestion is None


def test_a_playbook_whose_trigger_never_occurs_warns_on_enable_and_in_the_report() -> None:
    with make_shop(names=("order_completed",)) as shop:
        with pytest.warns(CampaignWarning) as caught:
            campaign = shop.enable_playbook("cart_reminder", now=NOW)
        assert campaign.id == "cart_reminder"  # saved anyway: the first cart event may come tomorrow
        assert [c.id for c in shop.campaigns()] == ["cart_reminder"]
        warning = caught[0].message
        assert isinstance(warning, CampaignWarning)
        assert isinstance(warning.findings, CheckReport)
        assert warning.findings.codes() == ["trigger-never-seen"]
        assert "'cart_added' never occurs" in str(warning)
        assert caught[0].filename == __file__  # points at the caller's line
        [finding] = shop.check(now=NOW).about("playbook", "cart_reminder").findings
        assert finding.code == "trigger-never-seen"
        shop.load_events(events("cart_added"))
        assert shop.check(now=NOW).findings == ()


def test_a_misspelt_exit_event_and_branch_event_are_found(shop: Shop) -> None:
    document = {
        "id": "nudge", "purpose": "informational", "channels": ["sms"],
        "variants": [{"name": "a", "content": {"text": "장바구니를 확인하세요"}}],
        "schedule": {"kind": "triggered", "on": "cart_add", "exit_on": ["order_complete"], "steps": [
            {"wait": "1d"}, {"if": {"performed": "product_view"}, "then": [{"send": "reminder"}]}]},
    }
    report = shop.check(now=NOW, campaign=shopcrm.campaigns.parse_campaign(document))
    found = {(f.code, f.suggestion) for f in report.findings}
    assert found == {("trigger-never-seen", "cart_added"), ("unseen-event", "order_completed"),
                     ("unseen-event", None)}


def test_a_template_variable_without_a_column_is_an_error() -> None:
    with make_shop(names=(), name=True) as shop:
        with pytest.warns(CampaignWarning, match=r"\{\{ name \}\}"):
            shop.enable_playbook("cart_reminder", now=NOW)
        report = shop.check(now=NOW)
        assert not report.ok
        codes = report.about("playbook", "cart_reminder").codes()
        assert sorted(codes) == ["trigger-never-seen", "unknown-event-property",  # event.product_id
                                 "unknown-template-variable", "unseen-event"]  # exit_on order_completed
        assert "no 'name' column" in str(report)
        assert "cart_url" not in str(report)  # read through | default(...): not needed


def test_a_misspelt_template_variable_gets_the_close_column(shop: Shop) -> None:
    report = shop.check(now=NOW, campaign=shopcrm.campaigns.parse_campaign(promo("{{ nmae }}님, 세일이에요")))
    [finding] = report.findings
    assert (finding.severity, finding.code, finding.suggestion) == ("error", "unknown-template-variable", "name")


def test_an_event_property_the_events_table_lacks_is_an_error(shop: Shop) -> None:
    report = shop.check(now=NOW, campaign=shopcrm.campaigns.playbook("price_drop"))
    assert report.codes() == ["unknown-event-property"] * 3 + ["trigger-never-seen"]
    assert "no 'old_price' column" in str(report)
    assert shop.check(now=NOW, campaign=shopcrm.campaigns.playbook("order_completed")).findings == ()


def test_template_reads_skips_defaults_and_defined_tests() -> None:
    assert template_reads("{{ name }} {{ shop_url | default('x') }} {% if coupon is defined %}{{ coupon }}{% endif %}") \
        == {"name", "coupon"}
    assert template_reads("{% for item in cart %}{{ item.product_name }}{% endfor %}") == {"cart"}
    assert template_reads("{{ broken") == set()
    assert event_properties("{{ event.product_name | default(event.product_id) }} {{ event.amount|krw }}") \
        == {"product_id", "amount"}


def test_a_missing_consent_column_is_found_for_advertising_only() -> None:
    with make_shop(sms_consent=True) as shop:
        with pytest.warns(CampaignWarning, match="sms_consent"):
            shop.save_campaign(promo("{{ name }}님, 봄 세일"), now=NOW)
        [finding] = shop.check(now=NOW).findings
        assert (finding.severity, finding.code, finding.name) == ("error", "missing-consent-column", "promo")
        assert "'sms_consent'" in finding.message
        assert "no one has consented" in finding.message
        informational = shopcrm.campaigns.parse_campaign(promo("{{ name }}님, 주문 안내", purpose="informational"))
        assert shop.check(now=NOW, campaign=informational).findings == ()


def test_a_channel_missing_in_part_of_the_chain_is_a_warning_and_in_all_of_it_an_error() -> None:
    with make_shop(kakao_friend=True) as shop:
        chain = shopcrm.campaigns.parse_campaign(promo("{{ name }}님, 봄 세일", channels=("brand_message", "sms")))
        [finding] = shop.check(now=NOW, campaign=chain).findings
        assert (finding.severity, finding.code) == ("warning", "missing-friend-column")
    with make_shop(phone=True) as shop:
        sms = shopcrm.campaigns.parse_campaign(promo("{{ name }}님, 봄 세일"))
        [finding] = shop.check(now=NOW, campaign=sms).findings
        assert (finding.severity, finding.code) == ("error", "missing-contact-column")
        assert "no channel of the chain can reach anyone" in finding.message


def test_a_policy_without_the_080_number_is_an_error_once_an_advertising_campaign_exists(shop: Shop) -> None:
    shop.save_campaign(promo("{{ name }}님, 주문 안내", purpose="informational"), now=NOW)
    shop.messaging_policy = MessagingPolicy(sender_name="모아샵")
    assert shop.check(now=NOW).findings == ()  # informational messages carry no ad lines
    shop.messaging_policy = POLICY
    shop.save_campaign({**promo("{{ name }}님, 봄 세일"), "id": "spring"}, now=NOW)
    shop.messaging_policy = MessagingPolicy(sender_name="모아샵")
    report = shop.check(now=NOW)
    [finding] = report.findings
    assert (finding.severity, finding.code, finding.kind) == ("error", "policy-ad-lines", "policy")
    assert "spring" in finding.message
    assert "opt_out_number" in finding.message


def test_an_sms_text_outside_ks_x_1001_warns_on_save_and_an_alimtalk_only_text_does_not(shop: Shop) -> None:
    with pytest.warns(CampaignWarning) as caught:
        shop.save_campaign(promo("{{ name }}님, 똠얌꿍 밀키트 세일"), now=NOW)
    [warning] = [w.message for w in caught.list if isinstance(w.message, CampaignWarning)]
    assert warning.findings.codes() == ["sms-outside-ks-x-1001"]
    [finding] = shop.check(now=NOW).findings
    assert finding.severity == "warning"
    assert "the SMS text of main.a has '똠', outside KS X 1001" in finding.message  # step main (one-off), variant a
    assert "1029" in finding.message
    shop.delete_campaign("promo")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shop.save_campaign({**promo("{{ name }}님, 봄 세일이 시작됐어요")}, now=NOW)


def test_an_unknown_segment_reference_is_an_error(shop: Shop) -> None:
    shop.save_segment("buyers", did("order_completed"))
    shop.save_segment("vip", {"in_segment": "buyers"})
    shop.source.segment_store().delete("buyers")  # behind the shop's back
    [finding] = shop.check(now=NOW).findings
    assert (finding.code, finding.name, finding.severity) == ("unknown-segment", "vip", "error")


def test_an_old_trigger_is_mentioned_as_info(shop: Shop) -> None:
    shop.enable_playbook("cart_reminder", now=NOW)
    [finding] = shop.check(now=datetime(2026, 6, 1)).findings
    assert (finding.severity, finding.code) == ("info", "trigger-stale")
    assert shop.check(now=datetime(2026, 6, 1)).ok


def test_an_empty_events_table_is_mentioned() -> None:
    with make_shop(names=()) as shop:
        shop.save_segment("buyers", did("order_completed"))
        report = shop.check(now=NOW)
        assert report.codes() == ["unseen-event", "no-events"]


def test_the_seen_events_query_is_one_grouped_query() -> None:
    schema = Schema(Table("customers", {"customer_id": ColumnType.STRING}),
                    Table("events", {"customer_id": ColumnType.STRING, "event": ColumnType.STRING,
                                     "ts": ColumnType.TIMESTAMP}))
    assert seen_events_query(schema).sql("duckdb") == \
        'SELECT "e"."event", COUNT(*), MAX("e"."ts") FROM "events" AS e GROUP BY "e"."event"'


def test_check_shop_is_pure_over_facts() -> None:
    facts = ShopFacts(seen_events={"order_completed": SeenEvent(2, None)}, customer_columns=("customer_id",),
                      segments={"vip": shopcrm.parse_rule({"lifecycle": "loyal"})})
    assert check_shop(facts).findings == ()
    facts = ShopFacts(seen_events={"purchase": SeenEvent(2, None)}, customer_columns=("customer_id",),
                      segments={"vip": shopcrm.parse_rule({"lifecycle": "loyal"})})
    [finding] = check_shop(facts).findings
    assert "lifecycle policy's order event" in finding.message


# ------------------------------------------------------------------ count time
def counting(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    fetch = shop.source.fetch

    def counted(query: Any) -> Any:
        calls.append(query)
        return fetch(query)

    monkeypatch.setattr(shop.source, "fetch", counted)
    return calls


def test_counting_an_unseen_event_warns_with_the_closest_name(shop: Shop) -> None:
    with pytest.warns(UnseenEventWarning, match="did you mean 'order_completed'") as caught:
        assert shop.count(did("order_complete"), now=NOW) == 0
    warning = caught[0].message
    assert isinstance(warning, UnseenEventWarning)
    assert (warning.event, warning.suggestion) == ("order_complete", "order_completed")
    assert caught[0].filename == __file__
    with pytest.warns(UnseenEventWarning):
        shop.members(did("order_completed") & did("cart_add"), now=NOW)
    shop.save_segment("buyers", did("order_complete"))
    with pytest.warns(UnseenEventWarning, match="'order_complete'"):
        shop.count_many([{"in_segment": "buyers"}], now=NOW)


def test_existing_events_do_not_warn_and_the_seen_names_are_read_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = counting(shop, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shop.count(did("order_completed"), now=NOW) == 1
        assert len(calls) == 2  # the grouped event query, then the count
        assert shop.count(did("cart_added"), now=NOW) == 1
        assert shop.count({"attribute": "name", "eq": "고객1"}, now=NOW) == 1
    assert len(calls) == 4  # one query per count after the first
    with pytest.warns(UnseenEventWarning):
        shop.count(did("order_complete"), now=NOW)
    assert len(calls) == 5


def test_loading_events_forgets_the_seen_names(shop: Shop) -> None:
    with pytest.warns(UnseenEventWarning):
        shop.count(did("refund_issued"), now=NOW)
    shop.load_events(events("refund_issued"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shop.count(did("refund_issued"), now=NOW) == 1


def test_a_table_filled_behind_the_shops_back_is_read_again_after_the_ttl(shop: Shop) -> None:
    with pytest.warns(UnseenEventWarning):
        shop.count(did("refund_issued"), now=NOW)
    shop.source.load("events", events("refund_issued"))  # type: ignore[attr-defined]
    shop.seen_events_ttl = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shop.count(did("refund_issued"), now=NOW) == 1


# ------------------------------------------------------------------- doctor
def test_doctor_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.duckdb"
    with make_shop(clean) as shop:
        shop.enable_playbook("order_completed", now=NOW)
    assert main(["doctor", "--db", str(clean), "--now", "2026-03-02T12:00:00"]) == 0
    assert capsys.readouterr().out.strip() == "no problems found"

    warned = tmp_path / "warned.duckdb"
    with make_shop(warned) as shop:
        shop.save_segment("buyers", did("order_complete"))
    assert main(["doctor", "--db", str(warned), "--now", "2026-03-02T12:00:00"]) == 0  # warnings only
    assert "did you mean 'order_completed'?" in capsys.readouterr().out

    broken = tmp_path / "broken.duckdb"
    with make_shop(broken, sms_consent=True) as shop:
        with pytest.warns(CampaignWarning):
            shop.save_campaign(promo("{{ name }}님, 봄 세일"), now=NOW)
        shop.messaging_policy = MessagingPolicy()  # saved with the shop: no 080 number, no sender name
    assert main(["doctor", "--db", str(broken), "--now", "2026-03-02T12:00:00"]) == 1  # the saved policy: no 080
    out = capsys.readouterr().out
    assert out.startswith("2 errors\nerrors:\n")
    assert "[missing-consent-column]" in out
    assert "[policy-ad-lines]" in out
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"sender_name": "모아샵", "sender_contact": "1588-0000", "opt_out_number": "080-123-4567"}), encoding="utf-8")
    assert main(["doctor", "--db", str(broken), "--policy", str(policy), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    assert [f["code"] for f in document["findings"]] == ["missing-consent-column"]
    assert main(["doctor", "--db", str(tmp_path / "typo.duckdb")]) == 2
    assert "no shop file" in capsys.readouterr().err
    assert not (tmp_path / "typo.duckdb").exists()
