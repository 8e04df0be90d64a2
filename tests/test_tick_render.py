"""What a tick's renderer shares (issue 15): a template is given only the names it reads, a text is remembered by
the values (and types) it reads, and the channels of one message's chain share its body even when an event's
properties make the values unhashable.  Every rendering must equal jinja2's own over the whole context, by a
fresh renderer, or fail the same way."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopcrm.campaigns import Content, Decorations, Renderer
from shopcrm.campaigns._limits import metered
from shopcrm.errors import CampaignError

DECORATIONS = Decorations(sender_line="s 1588", opt_out_line="무료수신거부 080")
ALIMTALK = {"template_code": "T1", "body": "#{고객명}님, 주문 #{주문번호}, #{금액}",
            "variables": {"고객명": "{{ name }}", "주문번호": "{{ event.order_id }}", "금액": "{{ event.amount|krw }}"}}
TEXTS = [
    "{{ name }}님, 주문 {{ event.order_id }} {{ event.amount|krw }}",
    "{{ name }} {{ n }}",  # 1, 1.0, True and -0.0 are equal but print differently
    "{{ name|은는 }} {{ now }}",  # an aware and a naive instant may be equal and print differently
    "{{ name }} {% for i in range(n|int) %}*{% endfor %}",
    "{{ missing }}",  # undefined: the error lists every name the context has
    "{{ event.amount|krw }}",  # remembered by the attribute's value
    "{{ event.order_id }} {{ event|length }} {{ event.gone|default('-') }}",  # the event read whole too: not by attribute
]
VALUES = st.sampled_from([1, 1.0, True, -0.0, 0.0, 0, "1", None, Decimal("1.0"), Decimal("1")])
NOWS = st.sampled_from([datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 9, tzinfo=UTC), datetime(2026, 1, 1, 0, tzinfo=UTC)])


class View(Mapping[str, Any]):
    """A read-only context computed name by name (as the planner's is), each event a fresh dict."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getitem__(self, name: str) -> Any:
        value = self.values[name]
        return dict(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


class Jinja(Renderer):
    """Every text rendered as jinja2 renders it: the whole context, no memory (but compiled templates)."""

    def render_cached(self, content: Content, channel: str, context: Mapping[str, Any], **options: Any) -> Any:
        return self.render(content, channel, context, **options)

    def _body(self, content: Content, context: Mapping[str, Any], at: str) -> str:
        return self.text(content.text, context, where=f"{at}.text")

    def text(self, source: str, context: Mapping[str, Any], *, html: bool = False, where: str = "") -> str:
        template = self.template(source, html=html, where=where)
        try:
            return metered(self.limits, template.generate(context)).strip()
        except Exception as error:
            raise CampaignError([(where, f"{type(error).__name__}: {error}")]) from None


JINJA = Jinja()


def render(renderer: Renderer, content: Content, channel: str, context: Mapping[str, Any]) -> Any:
    try:
        return renderer.render_cached(content, channel, context, advertising=False, decorations=DECORATIONS)
    except CampaignError as error:
        return [where for where, _ in error.problems]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(
    st.sampled_from(TEXTS), st.booleans(),
    st.fixed_dictionaries({"name": st.sampled_from(["민수", "지영"]), "n": VALUES, "now": NOWS,
                           "event": st.fixed_dictionaries({"order_id": st.sampled_from(["A1", "A2"]),
                                                           "amount": st.sampled_from([1000, 1000.0, 2500, -0.0, 0.0])})}),
), min_size=1, max_size=10))
def test_a_shared_renderer_renders_what_jinja_does(calls: list[tuple[str, bool, dict[str, Any]]]) -> None:
    """Each call renders a message's chain (AlimTalk or a Brand Message, then its SMS fallback) through one view."""
    shared, jinja = Renderer(), JINJA
    contents = {(text, alimtalk): Content(text=text, alimtalk=ALIMTALK if alimtalk else None)
                for text in TEXTS for alimtalk in (False, True)}
    for text, alimtalk, values in calls:
        content, view = contents[(text, alimtalk)], View(values)
        for channel in ("alimtalk" if alimtalk else "brand_message", "sms"):
            assert render(shared, content, channel, view) == render(jinja, content, channel, view), (text, channel, values)


def test_a_template_asks_the_context_only_for_the_names_it_reads() -> None:
    class Strict(View):
        def __getitem__(self, name: str) -> Any:
            if name != "name":
                raise AssertionError(f"asked for {name}")
            return super().__getitem__(name)

    content = Content(text="{{ name }}님")
    rendered = Renderer().render(content, "sms", Strict({"name": "민수", "now": 1}), advertising=False, decorations=DECORATIONS)
    assert rendered.text == "민수님"


def test_an_undefined_name_is_reported_with_every_name_the_context_has() -> None:
    with pytest.raises(CampaignError, match="the context has event, name, now"):
        Renderer().render(Content(text="{{ missing }}"), "sms", View({"name": "a", "now": 1, "event": {}}),
                          advertising=False, decorations=DECORATIONS)


def test_equal_values_that_print_differently_never_share_a_text() -> None:
    renderer, content = Renderer(), Content(text="{{ n }}")
    assert [renderer.render(content, "sms", {"n": n}, advertising=False, decorations=DECORATIONS).text
            for n in (1, 1.0, True, 1)] == ["1", "1.0", "True", "1"]
