"""Rendering per channel: strict variables, Korean filters, SMS/LMS by CP949 bytes, ad lines, AlimTalk slots."""

from __future__ import annotations

import pytest

from shopcrm.campaigns import AlimTalk, Button, Content, Decorations, Renderer
from shopcrm.errors import CampaignError

KR = Decorations(ad_prefix="(광고)", sender_line="마음상점 1588-0000", opt_out_line="무료수신거부 080-123-4567",
                 unsubscribe_url="https://shop.example/u/{customer_id}")
CTX = {"customer_id": "C1", "name": "김민준", "amount": 12300}


def render(content: Content, channel: str, *, advertising: bool = True, context: dict[str, object] | None = None) -> object:
    return Renderer().render(content, channel, context or CTX, advertising=advertising, decorations=KR)


def test_korean_filters_in_templates() -> None:
    out = Renderer().text("{{ name|은는 }} {{ amount|krw }} 적립, {{ name|josa('이/가') }} 주문", CTX)
    assert out == "김민준은 12,300원 적립, 김민준이 주문"


def test_a_missing_variable_is_an_error_naming_it_and_the_context() -> None:
    with pytest.raises(CampaignError, match=r"sms\.text: 'coupon' is undefined; the context has amount, customer_id, name"):
        render(Content(text="{{ coupon }} 드려요"), "sms")


def test_sandbox_forbids_attribute_escapes() -> None:
    with pytest.raises(CampaignError, match="sandbox"):
        Renderer().text("{{ name.__class__.__mro__[1].__subclasses__() }}", CTX)


def test_an_empty_subject_is_none_and_every_line_break_is_one() -> None:
    """An empty subject would make an LMS (billed as one, its subject dropped by the provider); a value's CR LF and
    CR are line breaks like LF (the providers count a break as the bytes they see)."""
    out = render(Content(text="{{ name }}님\r\n{{ note }}", subject="{{ title }}"), "sms", advertising=False,
                 context={**CTX, "title": " ", "note": "a\r\nb\rc"})
    assert (out.kind, out.subject, out.text) == ("sms", None, "김민준님\na\nb\nc")


def test_a_brand_message_holds_at_most_99_line_breaks_with_its_opt_out_line() -> None:
    assert render(Content(text="\n".join(["줄"] * 99)), "brand_message").text.count("\n") == 99  # 98 + the 080 line
    with pytest.raises(CampaignError, match=r"100 line breaks .* at most 99"):
        render(Content(text="\n".join(["줄"] * 100)), "brand_message")
    assert render(Content(text="\n".join(["줄"] * 100)), "brand_message", advertising=False).text.count("\n") == 99


def test_advertising_sms_carries_prefix_sender_and_opt_out_and_counts_those_bytes() -> None:
    short = render(Content(text="{{ name }}님 쿠폰"), "sms", advertising=False)
    assert (short.kind, short.text) == ("sms", "김민준님 쿠폰")
    ad = render(Content(text="{{ name }}님 쿠폰"), "sms")
    assert ad.text == "(광고) 마음상점 1588-0000\n김민준님 쿠폰\n무료수신거부 080-123-4567"
    # the ad lines count: 65 CP949 bytes in all, still an SMS; 26 more bytes of body make it an LMS
    assert ad.kind == "sms"
    assert render(Content(text="{{ name }}님 쿠폰" + "가" * 13), "sms", advertising=False).kind == "sms"
    assert render(Content(text="{{ name }}님 쿠폰" + "가" * 13), "sms").kind == "lms"
    with pytest.raises(CampaignError, match=r"sms.text: 2,0\d\d bytes \(CP949\) with the required ad lines; an LMS/MMS holds at most 2,000"):
        render(Content(text="가" * 980), "sms")
    mms = render(Content(text="사진", image_url="https://x/1.jpg"), "sms", advertising=False)
    assert mms.kind == "mms"
    with pytest.raises(CampaignError, match=r"sms\.subject: 42 bytes"):
        render(Content(text="본문", subject="가" * 21), "sms")


def test_alimtalk_fills_the_approved_slots_and_checks_them() -> None:
    content = Content(
        text="주문 완료 (대체 문자)",
        alimtalk=AlimTalk(template_code="ORDER_DONE", body="#{고객명}님, 주문하신 #{금액} 결제가 완료되었습니다.",
                          variables={"고객명": "{{ name }}", "금액": "{{ amount|krw }}"}),
        buttons=(Button(name="주문 확인", url="https://shop.example/o/{{ customer_id }}"),),
    )
    out = render(content, "alimtalk", advertising=False)
    assert out.text == "김민준님, 주문하신 12,300원 결제가 완료되었습니다."
    assert out.template_code == "ORDER_DONE"
    assert dict(out.variables) == {"#{고객명}": "김민준", "#{금액}": "12,300원"}
    assert out.buttons == (("주문 확인", "https://shop.example/o/C1"),)
    broken = Content(text="x", alimtalk=AlimTalk(template_code="T", body="#{a} #{b}", variables={"a": "1", "c": "2"}))
    with pytest.raises(CampaignError, match=r"#\{b\} with no value") as error:
        render(broken, "alimtalk", advertising=False)
    assert "['c'] are not slots of the approved body" in str(error.value)
    with pytest.raises(CampaignError, match="AlimTalk needs a pre-approved template"):
        render(Content(text="x"), "alimtalk", advertising=False)
    six = Content(text="x", buttons=tuple(Button(name=f"b{i}", url="u") for i in range(6)))
    with pytest.raises(CampaignError, match="6 buttons; Kakao messages allow at most 5"):
        render(six, "brand_message")


def test_advertising_email_has_prefix_footer_and_one_click_unsubscribe_headers() -> None:
    out = render(Content(text="본문", subject="{{ name }}님께 드리는 쿠폰", html="<b>{{ name }}</b>"), "email")
    assert out.subject == "(광고) 김민준님께 드리는 쿠폰"
    assert "https://shop.example/u/C1" in out.text
    assert dict(out.headers) == {"List-Unsubscribe": "<https://shop.example/u/C1>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    # html is escaped
    escaped = render(Content(text="t", subject="s", html="<b>{{ name }}</b>"), "email", context={**CTX, "name": "<script>"})
    assert escaped.html is not None
    assert "&lt;script&gt;" in escaped.html
    with pytest.raises(CampaignError, match="an e-mail needs a subject"):
        render(Content(text="t"), "email")
