"""Recommendations in messages: the content asks, the tick gathers them in one batch per campaign, templates show
them (tracked links), Brand Message lists and carousels, e-mail product grids and SMS/LMS lines within the bytes."""

from __future__ import annotations

import html.parser
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shopcrm
import shopcrm.ticking
from shopcrm.campaigns import (
    SAMPLE_RECOMMENDATIONS,
    BrandLayout,
    Button,
    Content,
    Decorations,
    MessagingPolicy,
    RecommendedProduct,
    Renderer,
    parse_campaign,
)
from shopcrm.campaigns._korean import cp949_length
from shopcrm.campaigns._templates import LIMITS, SAMPLE_KEY
from shopcrm.channels import Message
from shopcrm.channels.solapi import SolapiChannel
from shopcrm.errors import CampaignError
from shopcrm.tracking import TrackingPolicy

SECRET = "a-test-secret-of-enough-bytes-for-hmac"
TRACKING = TrackingPolicy(base_url="https://shop.example/r", secret=SECRET)
KR = Decorations(ad_prefix="(광고)", sender_line="마음상점 1588-0000", opt_out_line="무료수신거부 080-123-4567",
                 unsubscribe_url="https://shop.example/u/{customer_id}", tracking=TRACKING)


def product(i: int, *, name: str | None = None, price: int = 10_000, image: bool = True) -> dict[str, Any]:
    return {"product_id": f"P{i}", "name": name or f"상품 {i}", "price": price, "category": "shoes",
            "image_url": f"https://img.example/{i}.jpg" if image else None,
            "product_url": f"https://shop.example/p/{i}", "strategy": "also_bought"}


def products(*items: dict[str, Any]) -> tuple[RecommendedProduct, ...]:
    return tuple(RecommendedProduct(item) for item in items)


def render(content: Content, channel: str, items: Sequence[dict[str, Any]], *, advertising: bool = True,
           decorations: Decorations = KR, key: str | None = None) -> Any:
    context = {"customer_id": "C1", "name": "김민준", "recommendations": products(*items)}
    return Renderer().render(content, channel, context, advertising=advertising, decorations=decorations, message_key=key)


# ------------------------------------------------------------------------------------------------------ the model
def test_a_content_asks_for_recommendations_with_a_checked_request() -> None:
    content = Content(text="{{ recommendations|length }}", recommend={"strategy": "also_bought", "k": 4})
    assert content.recommend is not None
    assert (content.recommend.strategy, content.recommend.k, content.recommend.exclude_trigger) == ("also_bought", 4, True)
    with pytest.raises(ValueError, match="strategy 'Also Bought!' is a recommender's name"):
        Content(text="x", recommend={"strategy": "Also Bought!"})
    with pytest.raises(ValueError, match="less than or equal to 12"):
        Content(text="x", recommend={"k": 50})
    with pytest.raises(ValueError, match="the templates read recommendations but the content asks for none"):
        Content(text="{% for p in recommendations %}{{ p.name }}{% endfor %}")


def test_brand_message_layouts_are_checked_when_the_campaign_is_built() -> None:
    def campaign(content: dict[str, Any]) -> Any:
        return parse_campaign({"id": "c", "purpose": "advertising", "channels": ["brand_message"],
                               "variants": [{"name": "a", "content": {"text": "추천", **content}}],
                               "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}})

    with pytest.raises(CampaignError, match="a Brand Message list shows recommended products: add"):
        campaign({"brand_message": {"layout": "list", "header": "추천"}})
    with pytest.raises(CampaignError, match=r"holds 3 to 4 products; recommend\.k is 2: ask for at least 3"):
        campaign({"brand_message": {"layout": "list", "header": "추천"}, "recommend": {"k": 2}})
    with pytest.raises(CampaignError, match="a Brand Message list needs a header"):
        campaign({"brand_message": {"layout": "list"}, "recommend": {"k": 4}})
    with pytest.raises(CampaignError, match="one button per card"):
        campaign({"brand_message": {"layout": "carousel"}, "recommend": {"k": 4},
                  "buttons": [{"name": "보기", "url": "https://x.kr"}]})
    with pytest.raises(CampaignError, match="at most 8 characters"):
        campaign({"brand_message": {"layout": "carousel", "item_button": "지금 바로 구매하러 가기"}, "recommend": {"k": 4}})
    assert campaign({"brand_message": {"layout": "carousel"}, "recommend": {"k": 6}}).variants[0].content.brand_message


# ------------------------------------------------------------------------------------------------------ templates
def test_templates_see_each_product_with_a_tracked_link_of_the_message() -> None:
    content = Content(text="{% for p in recommendations %}{{ p.name }} {{ p.price|krw }} {{ p.url }}\n{% endfor %}",
                      recommend={"k": 2})
    key = "ab" * 16
    out = render(content, "brand_message", [product(1), product(2, price=25_900)], key=key)
    assert f"상품 1 10,000원 {TRACKING.link(key, 'https://shop.example/p/1')}" in out.text
    assert f"상품 2 25,900원 {TRACKING.link(key, 'https://shop.example/p/2')}" in out.text
    assert out.links == ("https://shop.example/p/1", "https://shop.example/p/2")  # clicks resolve to the product
    # without a tracking base the plain product URL
    plain = render(content, "brand_message", [product(1)], decorations=Decorations(opt_out_line="무료수신거부 080-1"))
    assert "상품 1 10,000원 https://shop.example/p/1" in plain.text


def test_customers_with_the_same_products_share_a_rendering_but_not_their_link_tokens() -> None:
    content = Content(text="{{ recommendations[0].url }}", recommend={"k": 1})
    renderer = Renderer()
    items = products(product(1))
    one, two = ("1" * 32, "2" * 32)
    a = renderer.render_cached(content, "sms", {"recommendations": items}, advertising=False, decorations=KR, message_key=one)
    b = renderer.render_cached(content, "sms", {"recommendations": products(product(1))}, advertising=False,
                               decorations=KR, message_key=two)
    assert a.text == TRACKING.link(one, "https://shop.example/p/1")
    assert b.text == TRACKING.link(two, "https://shop.example/p/1")


class _Grid(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_an_email_product_grid_escapes_every_value_and_reads_without_images() -> None:
    content = Content(text="추천 상품", subject="추천", html="<h1>{{ name }}님께</h1>{{ recommendations|product_grid }}",
                      recommend={"k": 3})
    items = [product(1, name="<script>alert(1)</script>"), product(2, image=False), product(3, name='따옴표 " & 앰퍼')]
    out = render(content, "email", items, key="cd" * 16)
    assert "<script>" not in out.html
    parsed = _Grid()
    parsed.feed(out.html)
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert [i["src"] for i in images] == ["https://img.example/1.jpg", "https://img.example/3.jpg"]  # none for P2
    assert images[0]["alt"] == "<script>alert(1)</script>"  # as text, escaped in the markup
    links = {attrs["href"] for tag, attrs in parsed.tags if tag == "a"}
    assert links == {TRACKING.link("cd" * 16, f"https://shop.example/p/{i}") for i in (1, 2, 3)}
    text = "".join(parsed.text)
    assert "상품 2" in text
    assert '따옴표 " & 앰퍼' in text
    assert text.count("10,000원") == 3
    cells = [attrs for tag, attrs in parsed.tags if tag == "td"]
    assert len(cells) == 4  # two rows of two, the last cell empty


def test_the_grid_is_empty_without_products_and_refuses_odd_columns() -> None:
    content = Content(text="x", subject="s", html="[{{ recommendations|product_grid }}]", recommend={"k": 3})
    assert render(content, "email", []).html.startswith("[]")
    bad = Content(text="x", subject="s", html="{{ recommendations|product_grid(9) }}", recommend={"k": 3})
    with pytest.raises(CampaignError, match="product_grid takes 1 to 4 columns"):
        render(bad, "email", [product(1)])


names = st.text(alphabet=st.sampled_from(list("가나다라마바사아자차카타파하 ABCxyz123")), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    catalog=st.lists(st.tuples(names, st.integers(0, 10_000_000)), min_size=0, max_size=30),
    lead=st.integers(0, 1_800),  # with the ad lines, the lead still fits an LMS
    cap=st.none() | st.integers(0, 1_500),
    advertising=st.booleans(),
)
def test_sms_lines_keep_whole_products_within_the_lms_budget(
    catalog: list[tuple[str, int]], lead: int, cap: int | None, advertising: bool,
) -> None:
    items = [product(i, name=n.strip() or "x", price=p) for i, (n, p) in enumerate(catalog, 1)]
    source = "안내" + "가" * (lead // 2) + "\n{{ recommendations|sms_line" + ("" if cap is None else f"({cap})") + " }}"
    content = Content(text=source, recommend={"k": 12})
    out = render(content, "sms", items, advertising=advertising, key=SAMPLE_KEY)
    assert cp949_length(out.text) <= LIMITS["lms_bytes"]
    body = out.text.split("\n")
    if advertising:
        body = body[1:-1]
    shown = [line for line in body[1:] if line]
    lines = [" ".join(x for x in (item["name"], f"{item['price']:,}원", TRACKING.link(SAMPLE_KEY, item["product_url"])) if x)
             for item in items]
    assert shown == lines[:len(shown)]  # whole products, in order
    used = sum(cp949_length(line) for line in shown) + max(len(shown) - 1, 0)
    if cap is not None:
        assert used <= cap
    if len(shown) < len(lines):  # the next one would not have fit
        extra = cp949_length(lines[len(shown)]) + (1 if shown else 0)
        assert cp949_length(out.text) + extra > LIMITS["lms_bytes"] or (cap is not None and used + extra > cap)
    assert out.links == tuple(item["product_url"] for item in items[:len(shown)])


def test_sms_lines_on_other_channels_show_every_product() -> None:
    content = Content(text="추천: {{ recommendations|sms_line(sep=' / ') }}", recommend={"k": 2})
    out = render(content, "push", [product(1), product(2)], advertising=False, key="ef" * 16)
    assert out.text == ("추천: 상품 1 10,000원 " + TRACKING.link("ef" * 16, "https://shop.example/p/1") + " / 상품 2 10,000원 "
                        + TRACKING.link("ef" * 16, "https://shop.example/p/2"))


# ------------------------------------------------------------------------------------------ Brand Message layouts
def test_a_brand_message_list_holds_three_or_four_pictured_products() -> None:
    content = Content(text="{{ name }}님을 위한 추천", recommend={"k": 6},
                      brand_message={"layout": "list", "header": "{{ name }}님 추천 상품"},
                      buttons=({"name": "더 보기", "url": "https://shop.example"},))
    items = [product(1, name="아주 긴 이름의 프리미엄 캐시미어 울 코트 네이비 에디션"), product(2, image=False), product(3),
             product(4), product(5), product(6)]
    out = render(content, "brand_message", items, key="12" * 16)
    assert (out.kind, out.layout, out.header) == ("brand_message", "list", "김민준님 추천 상품")
    assert [i[2] for i in out.items] == [f"https://img.example/{i}.jpg" for i in (1, 3, 4, 5)]  # no image: skipped
    assert len(out.items[0][0]) <= LIMITS["brand_list_main_title_chars"]
    assert out.items[0][0].endswith("…")
    assert out.items[1][3] == TRACKING.link("12" * 16, "https://shop.example/p/3")
    assert out.text.endswith("무료수신거부 080-123-4567")
    assert out.buttons == (("더 보기", "https://shop.example"),)
    with pytest.raises(CampaignError, match="needs at least 3 recommended products with an image; 2 of the 3"):
        render(content, "brand_message", [product(1), product(2, image=False), product(3)])
    long_header = content.model_copy(update={"brand_message": BrandLayout(
        layout="list", header="{{ name }}님만을 위해 고른 이번 주 추천 상품 모음")})
    with pytest.raises(CampaignError, match=r"brand_message\.header: the list header .* it needs 1 to 20"):
        render(long_header, "brand_message", items)
    # a list's buttons are named in at most 8 characters (a text Brand Message's in 14: providers.md 2.3)
    wide = content.model_copy(update={"buttons": (Button(name="이번 주 추천 더 보기", url="https://shop.example"),)})
    with pytest.raises(CampaignError, match="button name '이번 주 추천 더 보기' has 12 characters; at most 8"):
        render(wide, "brand_message", items)
    assert render(wide.model_copy(update={"brand_message": None, "recommend": None}), "brand_message", []).buttons == (
        ("이번 주 추천 더 보기", "https://shop.example"),)


def test_a_brand_message_carousel_makes_a_card_per_product() -> None:
    content = Content(text="추천", recommend={"k": 8}, brand_message={"layout": "carousel"})
    out = render(content, "brand_message", [product(i, price=1000 * i) for i in range(1, 9)], key="34" * 16)
    assert out.layout == "carousel"
    assert len(out.items) == 6  # a carousel holds at most 6 cards
    title, text, image, link, button = out.items[1]
    assert (title, text, image, button) == ("상품 2", "2,000원 · shoes", "https://img.example/2.jpg", "보러 가기")
    assert link == TRACKING.link("34" * 16, "https://shop.example/p/2")
    with pytest.raises(CampaignError, match="needs at least 2 recommended products with an image; 1 of the 1"):
        render(content, "brand_message", [product(1)])


def test_solapi_builds_the_wide_item_list_and_carousel_feed_payloads() -> None:
    images = {f"https://img.example/{i}.jpg": f"FILE{i}" for i in range(1, 6)}
    channel = SolapiChannel(api_key="k", api_secret="s", sender="0212345678", pf_id="PF1", image_ids=images)
    listed = Message(key="k1", customer_id="C1", channel="brand_message", kind="brand_message", to="010-1234-5678",
                     text="추천", purpose="advertising", layout="list", header="추천 상품",
                     buttons=(("더 보기", "https://shop.example"),),
                     items=tuple((f"상품 {i}", "1,000원", f"https://img.example/{i}.jpg", f"https://r/{i}", "") for i in (1, 2, 3, 4)))
    assert channel.validate(listed) == []
    # Solapi's SDKs require a main item and at least three sub items
    assert channel.validate(attrs_evolve(listed, items=listed.items[:3])) == [
        "Solapi's Brand Message list (BMS_WIDE_ITEM_LIST) needs 4 products with images (a main item and at least 3 sub "
        "items); this one has 3: ask for recommend k=4 or more, or use the carousel layout (2 to 6 cards)"]
    body = channel.body(listed)
    assert body["type"] == "BMS_WIDE_ITEM_LIST"
    bms = body["kakaoOptions"]["bms"]
    assert bms["targeting"] == "I"
    assert bms["header"] == "추천 상품"
    assert bms["mainWideItem"] == {"title": "상품 1", "imageId": "FILE1", "linkMobile": "https://r/1", "linkPc": "https://r/1"}
    assert [i["imageId"] for i in bms["subWideItemList"]] == ["FILE2", "FILE3", "FILE4"]
    assert bms["buttons"][0]["name"] == "더 보기"
    carousel = Message(key="k2", customer_id="C1", channel="brand_message", kind="brand_message", to="010-1234-5678",
                       text="추천", purpose="advertising", layout="carousel", friend=False,
                       items=tuple((f"상품 {i}", "1,000원", f"https://img.example/{i}.jpg", f"https://r/{i}", "보기")
                                   for i in (1, 6)))
    assert channel.validate(carousel) == [
        "the Brand Message carousel's product images ['https://img.example/6.jpg'] have no Solapi file id (storage type "
        "BMS): upload them and map them in image_ids"]
    cards = channel.body(attrs_evolve(carousel, items=carousel.items[:1] * 2))["kakaoOptions"]["bms"]
    assert cards["targeting"] == "M"
    assert cards["chatBubbleType"] == "CAROUSEL_FEED"
    assert cards["carousel"]["list"][0] == {"header": "상품 1", "content": "1,000원", "imageId": "FILE1", "imageLink": "https://r/1",
                                             "buttons": [{"name": "보기", "linkType": "WL", "linkMobile": "https://r/1",
                                                          "linkPc": "https://r/1"}]}


def attrs_evolve(message: Message, **changes: Any) -> Message:
    import attrs

    return attrs.evolve(message, **changes)


def test_a_message_keeps_its_layout_through_the_outbox() -> None:
    content = Content(text="추천", recommend={"k": 3}, brand_message={"layout": "list", "header": "추천"})
    out = render(content, "brand_message", [product(1), product(2), product(3)])
    import attrs

    item = {**attrs.asdict(out), "contact": "010-1111-2222"}
    message = Message.from_rendered(item, key="k", customer_id="C1")
    assert (message.layout, message.header, message.items) == ("list", "추천", out.items)


# ------------------------------------------------------------------------------------------------ in a shop's tick
T0 = datetime(2026, 11, 25, 1)  # 10:00 in Seoul


class FakeRecommender:
    """Records each call; recommends P10, P11, ... minus what is excluded, k of them."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, shop: Any, customer_ids: list[Any], *, strategy: str, k: int, now: datetime,
                 exclude: Mapping[Any, Collection[Any]] | None = None) -> dict[Any, list[dict[str, Any]]]:
        self.calls.append({"ids": sorted(customer_ids), "strategy": strategy, "k": k, "now": now, "exclude": exclude})
        out = {}
        for cid in customer_ids:
            skip = set((exclude or {}).get(cid, ()))
            out[cid] = [product(i) for i in range(10, 30) if f"P{i}" not in skip][:k]
        return out


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRecommender:
    recommender = FakeRecommender()
    monkeypatch.setattr(shopcrm.ticking, "_for_customers", recommender)
    return recommender


def _shop() -> shopcrm.Shop:
    shop = shopcrm.Shop.open()
    shop.messaging_policy = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                                            tracking=TRACKING)
    shop.load_customers([{"customer_id": f"C{i}", "name": "김민서", "phone": f"010-0000-000{i}", "sms_consent": True,
                          "kakao_consent": True, "kakao_friend": True} for i in range(1, 5)])
    shop.load_events([{"customer_id": "C1", "event": "cart_added", "ts": T0 - timedelta(hours=1), "product_id": "P10"}])
    return shop


def test_a_broadcast_gathers_recommendations_once_for_its_whole_audience(fake: FakeRecommender) -> None:
    shop = _shop()
    shop.save_campaign({
        "id": "picks", "purpose": "advertising", "channels": ["brand_message", "sms"],
        "variants": [{"name": "a", "content": {
            "text": "{{ name }}님 추천: {% for p in recommendations %}{{ p.name }} {{ p.url }} {% endfor %}",
            "recommend": {"strategy": "popular", "k": 3}}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    }, now=T0 - timedelta(days=1))
    result = shop.tick(now=T0)
    assert len(fake.calls) == 1
    assert fake.calls[0] == {"ids": ["C1", "C2", "C3", "C4"], "strategy": "popular", "k": 3, "now": T0, "exclude": None}
    assert len(result.messages) == 4
    for message in result.messages:
        first = message.chain[0]
        assert "상품 10 " + TRACKING.link(message.key, "https://shop.example/p/10") in first.text
        assert first.links == tuple(f"https://shop.example/p/{i}" for i in (10, 11, 12))


def test_a_tick_renders_the_real_recommenders_products_from_the_catalog() -> None:
    shop = _shop()  # no fake: shopcrm.recommend.for_customers answers from the shop's events and catalog
    shop.load_products([{"product_id": f"P{i}", "name": f"상품 {i}", "price": 1000 * i, "category": "shoes",
                         "image_url": f"https://img.example/{i}.jpg", "product_url": f"https://shop.example/p/{i}"}
                        for i in (10, 11, 12)], at=T0 - timedelta(days=3))
    shop.load_events([{"customer_id": c, "event": "order_completed", "ts": T0 - timedelta(days=2), "product_id": p}
                      for c, p in (("C2", "P11"), ("C3", "P11"), ("C3", "P12"), ("C4", "P12"))])
    shop.save_campaign({
        "id": "picks", "purpose": "advertising", "channels": ["sms"],
        "variants": [{"name": "a", "content": {
            "text": "{% for p in recommendations %}{{ p.name }}({{ p.price|int }}) {% endfor %}",
            "recommend": {"strategy": "popular", "k": 2}}}],
        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
    }, now=T0 - timedelta(days=1))
    texts = {m.customer_id: m.chain[0].text for m in shop.tick(now=T0).messages}
    # popular: P11 and P12 have two buyers each (ties by product id), P10 none
    assert all("상품 11(11000) 상품 12(12000)" in text for text in texts.values()), texts
    assert sorted(texts) == ["C1", "C2", "C3", "C4"]


def test_a_scenario_leaves_out_the_product_that_triggered_it(fake: FakeRecommender) -> None:
    shop = _shop()
    shop.save_campaign({
        "id": "carted", "purpose": "advertising", "channels": ["brand_message"],
        "variants": [{"name": "a", "content": {"text": "함께 보면 좋은 상품", "recommend": {"k": 3},
                                               "brand_message": {"layout": "list", "header": "함께 보면 좋아요"}}}],
        "schedule": {"kind": "triggered", "on": "cart_added", "steps": [{"send": "picks"}]},
    }, now=T0 - timedelta(days=1))
    result = shop.tick(now=T0)
    assert fake.calls[0]["ids"] == ["C1"]
    assert fake.calls[0]["exclude"] == {"C1": {"P10"}}
    (message,) = result.messages
    listed = message.chain[0]
    assert listed.layout == "list"
    assert [title for title, *_ in listed.items] == ["상품 11", "상품 12", "상품 13"]
    # the outbox keeps the layout for the dispatcher
    (row,) = [r for r in shop.outbox() if r.key == message.key]
    sent = Message.from_rendered(row.chain[0], key=row.key, customer_id="C1")
    assert (sent.layout, sent.header, sent.items) == ("list", "함께 보면 좋아요", listed.items)


def test_a_recommender_that_refuses_names_the_campaign(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("unknown strategy 'telepathy'; strategies: also_bought, popular")

    monkeypatch.setattr(shopcrm.ticking, "_for_customers", refuse)
    shop = _shop()
    shop.save_campaign({"id": "odd", "purpose": "advertising", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ recommendations|sms_line }}",
                                                               "recommend": {"strategy": "telepathy"}}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    with pytest.raises(CampaignError, match=r"odd.recommend: the recommender refused 'telepathy' \(k=4\): unknown strategy"):
        shop.tick(now=T0)


def test_saving_checks_the_templates_with_sample_products() -> None:
    shop = _shop()
    with pytest.raises(CampaignError, match=r"brand_message\.header: .*no element 5"):  # k=3 samples: no sixth
        shop.save_campaign({"id": "few", "purpose": "advertising", "channels": ["brand_message"],
                            "variants": [{"name": "a", "content": {
                                "text": "추천", "recommend": {"k": 3},
                                "brand_message": {"layout": "list", "header": "{{ recommendations[5].name }}"}}}],
                            "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0)
    assert len(SAMPLE_RECOMMENDATIONS) >= 12


def test_the_email_grid_in_chromium_reads_without_images(tmp_path: Any) -> None:
    """The grid as a mail client with images off shows it: every product's name and price visible, two per row,
    the links tracked, a hostile name shown as text (no script runs)."""
    import shutil

    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    if chromium is None or sync_playwright is None:
        pytest.skip("chromium or playwright is not installed (apt-get install chromium; pip install playwright)")
    content = Content(text="추천", subject="추천", html="{{ recommendations|product_grid }}", recommend={"k": 4})
    items = [product(1, name="<script>window.hacked=1</script>"), product(2, image=False), product(3), product(4)]
    page_file = tmp_path / "mail.html"
    html_text = render(content, "email", items, key="56" * 16).html
    page_file.write_text(f"<!doctype html><meta charset='utf-8'><body style='width:600px'>{html_text}</body>",
                         encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 800, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
            page.goto(page_file.as_uri(), wait_until="load")
            assert page.evaluate("window.hacked === undefined")
            cells = page.locator("td.shopcrm-product")
            assert cells.count() == 4
            texts = [cells.nth(i).inner_text() for i in range(4)]
            assert texts[0].startswith("<script>window.hacked=1</script>")
            assert all("10,000원" in t for t in texts)
            assert "상품 2" in texts[1]
            boxes = [cells.nth(i).bounding_box() for i in range(4)]
            assert all(b is not None for b in boxes)
            first, second, third = boxes[0], boxes[1], boxes[2]
            assert first is not None
            assert second is not None
            assert third is not None
            assert abs(first["y"] - second["y"]) < 1
            assert second["x"] > first["x"]
            assert third["y"] > first["y"]  # the next row
            hrefs = page.eval_on_selector_all("td.shopcrm-product a", "els => els.map(e => e.href)")
            assert set(hrefs) == {TRACKING.link("56" * 16, f"https://shop.example/p/{i}") for i in (1, 2, 3, 4)}
        finally:
            browser.close()
