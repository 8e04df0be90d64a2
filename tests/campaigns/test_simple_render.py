"""Templates made of text and ``{{ name }}`` / ``{{ name.attribute }}`` outputs with pure one-value filters are
rendered without jinja2 (``Renderer._simple``): exactly what jinja2 renders, and every failure still jinja2's."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shopcrm.campaigns._limits import TemplateLimits
from shopcrm.campaigns._models import Content
from shopcrm.campaigns._playbooks import playbook
from shopcrm.campaigns._templates import Decorations, Rendered, Renderer
from shopcrm.errors import CampaignError

NAMES = ["name", "event", "n", "link", "missing"]
FILTERS = ["krw", "date", "은는", "이가", "을를", "으로", "upper", "default", "length"]
VALUES = (st.text(max_size=12) | st.sampled_from(["", "  ", "민수", "Kim", "가" * 1200, "\n"])
          | st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
          | st.sampled_from([None, True, False, 0.0, -0.0, Decimal("1.0"), Decimal("12000"), date(2026, 1, 2),
                             datetime(2026, 1, 2, 3, 4), [1, 2], ("a",)]))


@st.composite
def outputs(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    if draw(st.booleans()):
        name += "." + draw(st.sampled_from(["amount", "order_id", "items", "keys", "_private", "missing"]))
    if draw(st.booleans()):  # default('text'), the first filter (or, rarely, after another)
        name += "|" + draw(st.sampled_from(["default", "d"])) + "('" + draw(st.text(alphabet="고객 님ab0%\n", max_size=4)) + "')"
    for _ in range(draw(st.integers(0, 2))):
        name += "|" + draw(st.sampled_from(FILTERS))
    return "{{ " + name + " }}"


templates = st.lists(outputs() | st.text(alphabet=" 님,.!%\n\tab가#", max_size=6), min_size=1, max_size=5).map("".join)
contexts = st.fixed_dictionaries({}, optional={
    "name": VALUES, "n": VALUES,
    "event": st.dictionaries(st.sampled_from(["amount", "order_id", "items"]), VALUES, max_size=3),
})


def rendered(renderer: Renderer, source: str, context: dict[str, Any]) -> str | tuple[str, Any]:
    try:
        return renderer.text(source, context, where="t")
    except CampaignError as error:
        return ("error", error.problems)


@settings(max_examples=300, deadline=None)
@given(templates, contexts, st.sampled_from([TemplateLimits(), TemplateLimits(max_work=6, max_output_chars=40)]))
def test_a_simple_template_renders_what_jinja2_renders(source: str, context: dict[str, Any], limits: TemplateLimits) -> None:
    fast, slow = Renderer(limits), Renderer(limits)
    slow._simple = lambda source, reads: None  # type: ignore[method-assign]
    assert rendered(fast, source, context) == rendered(slow, source, context)


@pytest.mark.parametrize(("source", "simple"), [
    ("{{ name|은는 }} 겨울 세일 대상이에요.", True),
    ("{{ name }}님, 주문번호 {{ event.order_id }}, 결제금액 {{ event.amount|krw }}.", True),
    ("{{ name|upper }}", False),  # not one of the pure filters it applies itself
    ("{{ event.product_name | default(event.product_id) }}", False),  # a filter with an argument that is not text
    ("{{ grade_name | default('단골') }} 등급", True),  # undefined: the default's text
    ("{{ event.missing | d('없음') }}", True),
    ("{{ name | default('고객') | 은는 }}", True),
    ("{{ name | 은는 | default('고객') }}", False),  # default after another filter
    ("{{ range | default('x') }}", False),  # a global jinja2 reads, not undefined
    ("{{ name | default('a', true) }}", False),
    ("{% if name %}{{ name }}{% endif %}", False),
    ("{{ link('https://shop.example') }}", False),
])
def test_which_templates_are_rendered_without_jinja2(source: str, simple: bool) -> None:
    renderer = Renderer()
    context = {"name": "민수", "event": {"order_id": "O-1", "amount": 12000}}
    assert (renderer._simple(source, context) is not None) is simple
    assert renderer._simple_plan(source) is not None or not simple


# -- whole messages: Renderer._quick renders a chain's message from simple templates without the general path ------

KEY = "0123456789abcdef0123456789abcdef"
DECORATIONS = [Decorations(), Decorations(sender_line="마음상점 1588-0000", opt_out_line="무료수신거부 080-123-4567"),
               Decorations(ad_prefix="", sender_line="Shop", opt_out_line="Reply STOP to opt out")]

@st.composite
def plain_outputs(draw: st.DrawFn) -> str:
    """Outputs a context of plain values (``plain_contexts``) renders: the quick path's usual case."""
    name = draw(st.sampled_from(["name", "n", "event.order_id", "event.amount", "event.items"]))
    return "{{ " + name + "".join("|" + f for f in draw(st.lists(st.sampled_from(["krw", "은는", "이가"]), max_size=1))) + " }}"


simple_texts = st.lists(st.one_of(plain_outputs(), plain_outputs(), plain_outputs(), st.text(alphabet=" 님,.!%\nab가#{}", max_size=8),
                                  st.text(alphabet=" 님,.!%\n\tab가#{}\ue000", max_size=8), outputs()),
                        min_size=1, max_size=3).map("".join)
# a product line's mark (what sms_line leaves for the SMS's byte budget) is a value like any other here
plain_values = st.text(alphabet="민수가 Kim#{}", max_size=8) | st.integers(-10**6, 10**6) | st.just("\ue0000\ue001")
plain_contexts = st.fixed_dictionaries({"name": plain_values, "n": plain_values, "event": st.fixed_dictionaries(
    {"order_id": plain_values, "amount": st.integers(0, 10**7), "items": plain_values})})


@st.composite
def contents(draw: st.DrawFn) -> Content:
    slots = draw(st.lists(st.sampled_from(["고객명", "주문번호", "금액"]), max_size=3, unique=True))
    body = draw(st.sampled_from(["", "안내: ", "#{없는칸} "])) + " ".join(f"#{{{s}}}" for s in slots) + draw(
        st.sampled_from(["", "x" * 1000]))
    variables = {s: draw(simple_texts) for s in draw(st.lists(st.sampled_from(slots or ["고객명"]), unique=True))}
    try:
        return Content.model_validate({
            "text": draw(simple_texts), "subject": draw(st.none() | simple_texts),
            "buttons": draw(st.lists(st.fixed_dictionaries({"name": simple_texts, "url": simple_texts}), max_size=2)),
            "alimtalk": draw(st.none() | st.just({"template_code": "T1", "body": body or "#{고객명}", "variables": variables})),
            "image_url": draw(st.none() | st.just("https://img.example/1.png")),
        })
    except ValueError:
        assume(False)
        raise


class ReadOnly(Mapping[str, Any]):
    """A read-only context, as the planner's: the chain's channels may share the texts rendered for it."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def outcome(render: Callable[[], Rendered]) -> Rendered | tuple[str, Any]:
    try:
        return render()
    except CampaignError as error:
        return ("error", error.problems)


@settings(max_examples=200, deadline=None)
@given(contents(), plain_contexts | plain_contexts | contexts, st.lists(st.sampled_from(["sms", "alimtalk", "push", "webhook", "brand_message", "email"]),
                                      min_size=1, max_size=3),
       st.booleans(), st.sampled_from(DECORATIONS), st.booleans())
def test_the_quick_path_renders_what_render_renders(
    content: Content, context: dict[str, Any], chain: list[str], advertising: bool, decorations: Decorations, shared: bool,
) -> None:
    quick, general = Renderer(), Renderer()
    given_context: Mapping[str, Any] = ReadOnly(context) if shared else context
    for channel in chain:  # a chain's channels, one context: the second channel reuses the first one's texts
        fast = quick._quick(content, channel, given_context, advertising=advertising, decorations=decorations)
        slow = outcome(lambda channel=channel: general.render(content, channel, context, advertising=advertising,
                                                              decorations=decorations, message_key=KEY))
        if fast is not None:
            assert fast == slow
        # and render_cached, which takes the quick path first, gives what render gives
        assert outcome(lambda channel=channel: Renderer().render_cached(
            content, channel, given_context, advertising=advertising, decorations=decorations, message_key=KEY)) == slow


def test_an_order_confirmation_takes_the_quick_path_on_both_channels() -> None:
    campaign = playbook("order_completed")
    content = campaign.variants_of(campaign.send_steps()[0])[0].content
    context = ReadOnly({"name": "민수", "event": {"order_id": "O-1", "amount": 12000}})
    renderer, general = Renderer(), Renderer()
    for channel in ("alimtalk", "sms"):
        fast = renderer._quick(content, channel, context, advertising=False, decorations=DECORATIONS[1])
        assert fast is not None
        assert fast == general.render(content, channel, context, advertising=False, decorations=DECORATIONS[1])
    assert fast.text == "민수님, 주문이 완료되었습니다. 주문번호 O-1, 결제금액 12,000원."


def test_a_context_changed_between_channels_is_read_again() -> None:
    content = Content(text="{{ name }}님 안녕하세요")
    context = {"name": "민수"}
    renderer = Renderer()
    first = renderer._quick(content, "sms", context, advertising=False, decorations=Decorations())
    context["name"] = "지영"
    second = renderer._quick(content, "push", context, advertising=False, decorations=Decorations())
    assert first is not None
    assert second is not None
    assert (first.text, second.text) == ("민수님 안녕하세요", "지영님 안녕하세요")
