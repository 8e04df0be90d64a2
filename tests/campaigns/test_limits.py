"""Templates within limits: hostile templates fail fast with a CampaignError, never hang, exhaust memory or escape."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopcrm.campaigns import (
    Content,
    Decorations,
    MessagingPolicy,
    Recipient,
    Renderer,
    ShopState,
    TemplateLimits,
    parse_campaign,
    plan,
)
from shopcrm.errors import CampaignError

CTX = {"customer_id": "C1", "name": "김민준", "age": 0, "items": [1, 2, 3]}

HOSTILE = {
    "a range too long": ("{% for i in range(10**8) %}x{% endfor %}", "templates loop at most 10,000 times"),
    "nested loops": ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "units of work"),
    "string repetition": ("{{ 'x' * 10**9 }}", "repetition would make a value of 1,000,000,000"),
    "list repetition": ("{{ ([1] * 10**9)|length }}", "repetition would make a value"),
    "a huge power": ("{{ 9 ** (9 ** 9) }}", "9 ** 387420489 would have more than 4,096 bits"),
    "a huge product": ("{% set n = 2 ** 4000 %}{{ n * n }}", "a product of more than 4,096 bits"),
    "doubling with +": ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                        "'+' would make a value"),
    "doubling with ~": ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                        "'~' would make a string"),
    "a %-format width": ("{{ '%0999999999d' % 1 }}", "a %-format width 999,999,999"),
    "the format filter": ("{{ '%0999999999d'|format(1) }}", "a %-format width 999,999,999"),
    "a str.format width": ("{{ '{:>999999999}'.format(1) }}", "a format width 999,999,999"),
    "padding": ("{{ 'x'.ljust(1000000000) }}", "ljust() width 1,000,000,000"),
    "the center filter": ("{{ 'x'|center(1000000000) }}", "center width 1,000,000,000"),
    "replace blowing up": ("{{ ('x' * 1000)|replace('x', 'x' * 1000) }}", "replace() would make a string of 1,000,000"),
    "join blowing up": ("{{ ('ab' * 100)|join('x' * 100000) }}", "join would make a string"),
    "to_bytes": ("{{ (10).to_bytes(1000000000, 'big') }}", "to_bytes length"),
    "batch padding": ("{{ range(10)|batch(1000000000, 'x')|list }}", "batch count"),
    "exponential macros": ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", "units of work"),
    "a recursive loop": ("{% for c in items recursive %}{{ loop([1] * 5) if loop.depth < 30 }}{% endfor %}", "units of work"),
    "endless recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursed too deeply"),
    "division by zero": ("{{ 100 // age }}", "ZeroDivisionError: integer division or modulo by zero"),
    "mutating a list": ("{% set l = [] %}{{ l.append(1) }}", "sandbox forbids"),
    "lorem ipsum": ("{{ lipsum(1000000) }}", "'lipsum' is undefined"),
    "too deep to compile": ("{{" + "(" * 2000 + "1" + ")" * 2000 + "}}", "nests too deeply"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_is_a_campaign_error_naming_its_place(name: str) -> None:
    source, message = HOSTILE[name]
    with pytest.raises(CampaignError) as error:
        Renderer().render(Content(text=source), "webhook", CTX, advertising=False, decorations=Decorations(), where="main.a")
    assert error.value.path == "main.a.webhook.text"
    assert message in str(error.value)


def test_ordinary_templates_still_render() -> None:
    out = Renderer().text(
        "{{ name }} {{ '{:,}'.format(12300) }} {{ '%05d' % 7 }} {{ 3 * 4 }} {{ 2 ** 10 }} {{ 'ab' * 3 }} {{ name ~ '!' }} "
        "{% for i in items %}{{ i }}{% endfor %} {{ items|join(',') }} {{ 'a-b'|replace('-', '+') }} {{ 'x'|center(5) }}|",
        CTX,
    )
    assert out == "김민준 12,300 00007 12 1024 ababab 김민준! 123 1,2,3 a+b   x  |"


def test_the_limits_are_the_renderers_own() -> None:
    small = Renderer(TemplateLimits(max_output_chars=10, max_range=3, max_work=50))
    with pytest.raises(CampaignError, match="renders more than 10 characters"):
        small.text("{{ 'x' * 11 }}", {})
    with pytest.raises(CampaignError, match="templates loop at most 3 times"):
        small.text("{% for i in range(4) %}{% endfor %}", {})
    with pytest.raises(CampaignError, match="more than 50 units of work"):
        small.text("{% for i in range(3) %}{% for j in range(3) %}{% for k in range(3) %}{% endfor %}{% endfor %}{% endfor %}", {})
    assert small.text("{% for i in range(3) %}{{ i }}{% endfor %}", {}) == "012"
    with pytest.raises(CampaignError, match="has 100,001 characters; at most 100,000"):
        Renderer().text("x" * 100_001, {})


@settings(max_examples=200, deadline=None)
@given(base=st.integers(-10**6, 10**6), exponent=st.integers(-10, 10**12), times=st.integers(-5, 10**12),
       text=st.text(max_size=20))
def test_arithmetic_on_any_numbers_renders_or_refuses(base: int, exponent: int, times: int, text: str) -> None:
    renderer = Renderer()
    context = {"b": base, "e": exponent, "t": times, "s": text}
    for source, small_enough, expected in [
        ("{{ b ** e }}", exponent < 0 or abs(base) <= 1 or (abs(base).bit_length() - 1) * exponent <= 4096, lambda: base ** exponent),
        ("{{ s * t }}", len(text) * max(times, 0) <= 100_000, lambda: text * times),
        ("{{ b * t }}", base.bit_length() + times.bit_length() <= 4096, lambda: base * times),
    ]:
        if small_enough:
            try:
                wanted = str(expected()).strip()
            except ArithmeticError as error:  # 0 ** -1: Python refuses it, and so does the template, with a place
                with pytest.raises(CampaignError, match=type(error).__name__):
                    renderer.text(source, context)
                continue
            assert renderer.text(source, context) == wanted
        else:
            with pytest.raises(CampaignError, match=r"bits|would make a value|exponent"):
                renderer.text(source, context)


def test_one_customers_failure_is_their_render_failed_and_the_plan_goes_on() -> None:
    policy = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
    doc = {"purpose": "informational", "channels": ["sms"], "schedule": {"kind": "one_off", "at": "2026-11-25T09:00:00"}}
    risky = parse_campaign({**doc, "id": "risky", "variants": [{"name": "a", "content": {"text": "{{ 100 // age }}점"}}]})
    hang = parse_campaign({**doc, "id": "hang", "variants": [{"name": "a", "content": {"text": "{{ 'x' * 10**9 }}"}}]})
    healthy = parse_campaign({**doc, "id": "healthy", "variants": [{"name": "a", "content": {"text": "{{ name }}님 안녕하세요"}}]})
    people = {cid: Recipient(customer_id=cid, phone="010", attributes={"age": age, "name": cid}) for cid, age in (("zero", 0), ("ten", 10))}
    state = ShopState(recipients=people, audiences={c.id: list(people) for c in (risky, hang, healthy)})
    result = plan([risky, hang, healthy], state, now=datetime(2026, 11, 25, 1), policy=policy)
    assert sorted((m.campaign_id, m.customer_id, m.chain[0].text) for m in result.messages) == [
        ("healthy", "ten", "ten님 안녕하세요"), ("healthy", "zero", "zero님 안녕하세요"), ("risky", "ten", "10점"),
    ]
    failed = sorted((s.campaign_id, s.customer_id, s.reason, s.detail) for s in result.suppressions)
    assert failed == [
        ("hang", "ten", "render_failed", "sms.text: repetition would make a value of 1,000,000,000 characters or items; "
                                         "a template value holds at most 100,000"),
        ("hang", "zero", "render_failed", "sms.text: repetition would make a value of 1,000,000,000 characters or items; "
                                          "a template value holds at most 100,000"),
        ("risky", "zero", "render_failed", "sms.text: ZeroDivisionError: integer division or modulo by zero"),
    ]
    assert all(s.key for s in result.suppressions)


def test_a_policy_url_template_that_breaks_is_a_campaign_error() -> None:
    broken = Decorations(unsubscribe_url="https://x/{customer}")
    with pytest.raises(CampaignError, match=r"email: KeyError: 'customer'"):
        Renderer().render(Content(text="t", subject="s"), "email", CTX, advertising=True, decorations=broken)
