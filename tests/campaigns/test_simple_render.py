"""Templates made of text and ``{{ name }}`` / ``{{ name.attribute }}`` outputs with pure one-value filters are
rendered without jinja2 (``Renderer._simple``): exactly what jinja2 renders, and every failure still jinja2's."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopcrm.campaigns._limits import TemplateLimits
from shopcrm.campaigns._templates import Renderer
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
    ("{{ event.product_name | default(event.product_id) }}", False),  # a filter with an argument
    ("{% if name %}{{ name }}{% endif %}", False),
    ("{{ link('https://shop.example') }}", False),
])
def test_which_templates_are_rendered_without_jinja2(source: str, simple: bool) -> None:
    renderer = Renderer()
    context = {"name": "민수", "event": {"order_id": "O-1", "amount": 12000}}
    assert (renderer._simple(source, context) is not None) is simple
    assert renderer._simple_plan(source) is not None or not simple
