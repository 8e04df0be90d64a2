"""One renderer shares a content's text among the channels of a chain and among customers with the same values:
every rendering equals what a fresh renderer gives (or fails the same way)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopcrm.campaigns import Content, Decorations, Renderer
from shopcrm.errors import CampaignError
from shopcrm.tracking import TrackingPolicy

DECORATIONS = Decorations(sender_line="s 1588", opt_out_line="무료수신거부 080",
                          tracking=TrackingPolicy(base_url="https://t.example/r", secret="s" * 32))
TEXTS = [
    "{{ name }}님, 세일",
    "{{ name|은는 }} 대상이에요 {{ 100 // n }}%",
    "{{ name }} {{ link('https://shop.example/a') }}",  # a tracked link: per message, never shared
    "{{ name }} {% for i in range(n) %}*{% endfor %}",  # a global
    "{{ cart|sms_line }}",  # product lines recorded per message
    "{{ name }} " + "가" * 40,
]


def render(renderer: Renderer, content: Content, channel: str, context: dict[str, Any], key: str) -> Any:
    try:
        return renderer.render(content, channel, context, advertising=True, decorations=DECORATIONS, message_key=key)
    except CampaignError as error:
        return error.problems


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(
    st.sampled_from(TEXTS), st.sampled_from(["sms", "brand_message", "push"]),
    st.fixed_dictionaries({"name": st.sampled_from(["민수", "지영", "Kim"]), "n": st.integers(0, 3),
                           "cart": st.just(())}),
    st.sampled_from(["a" * 32, "b" * 32]),
), min_size=1, max_size=12))
def test_a_shared_renderer_renders_what_a_fresh_one_does(calls: list[tuple[str, str, dict[str, Any], str]]) -> None:
    shared = Renderer()
    contents = {text: Content(text=text) for text in TEXTS}
    for text, channel, context, key in calls:
        assert render(shared, contents[text], channel, context, key) == render(Renderer(), contents[text], channel, context, key)
