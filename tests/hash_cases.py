"""Random audiences and campaigns for the engine-computed broadcast hashes (``sources/_audience_hashes.py``): each
member's hashes as an engine computes them must be the planner's own, or missing where Python must compute them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from shopcrm.campaigns import (
    Campaign,
    MessagingPolicy,
    bucket,
    idempotency_key,
    in_global_control,
    parse_campaign,
)
from shopcrm.campaigns._planner import _choose
from shopcrm.sources._audience_hashes import audience_hashes, hash_expressions
from shopcrm.sources._base import Source
from shopcrm.sources._reads import EngineReader

NOW = datetime(2026, 11, 24, 13)
OCCURRENCE = "once"
#: ids a shop may hold: plain ones (keyed by the engine) and ones whose repr Python escapes (keyed in Python)
PLAIN_TEXT = st.text(alphabet=st.sampled_from("abcXYZ019 -_.@#한글é€"), max_size=12)
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)
INTEGER_IDS = st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=25, unique=True)


def text_ids(plain: bool) -> st.SearchStrategy[list[str]]:
    return st.lists(PLAIN_TEXT if plain else st.one_of(PLAIN_TEXT, ANY_TEXT), min_size=1, max_size=25, unique=True)


@st.composite
def campaigns(draw: st.DrawFn) -> tuple[Campaign, MessagingPolicy]:
    weights = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    advertising = draw(st.booleans())
    campaign = parse_campaign({
        "id": draw(st.sampled_from(["winter-sale", "C.1_x"])), "channels": ["sms"],
        "purpose": "advertising" if advertising else "informational",
        "holdout_percent": draw(st.sampled_from([0, 10, 12.5, 50, 99.99])),
        "variants": [{"name": f"v{i}", "weight": w, "content": {"text": "hi"}} for i, w in enumerate(weights)],
        "schedule": {"kind": "one_off", "at": "2026-11-24T21:30:00"},
    })
    policy = MessagingPolicy(sender_name="상점", sender_contact="1588-0000", opt_out_number="080-123-4567",
                             global_control_percent=draw(st.sampled_from([0, 5, 33.3, 99.999])),
                             global_control_salt=draw(st.sampled_from(["global_control", "gc-'26"])))
    return campaign, policy


def engine_hashes(source: Source, campaign: Campaign, policy: MessagingPolicy) -> dict[Any, tuple[Any, ...]] | None:
    """What a tick hands the planner for ``campaign``'s members on ``source`` (its customers table's every id)."""
    reader = EngineReader(source, NOW, lifecycle_policy=None)
    id_type = reader.schema.customers.columns.get("customer_id")
    computed = hash_expressions(source.dialect, campaign, policy, OCCURRENCE, id_type, reader.col("customer_id", "c"))
    data = reader.customer_columns(["customer_id"], None, computed)
    found = audience_hashes(campaign, OCCURRENCE, id_type, data)
    assert set(data) == {"customer_id"}, "the hash columns are taken out of the recipient columns"
    if found is None:
        return None
    assert found.members is data["customer_id"]  # beside the audience as the tick hands it over
    columns = found.columns()
    return {m: tuple(None if column is None else column[i] for column in columns) for i, m in enumerate(found.members)}


def python_hashes(campaign: Campaign, policy: MessagingPolicy, customer_id: Any) -> tuple[Any, ...]:
    """The planner's own hashes of one member (None: a hash the campaign does not ask)."""
    step = campaign.send_steps()[0]
    variants = campaign.variants_of(step)
    advertising = campaign.purpose == "advertising"
    return (
        idempotency_key(campaign.id, OCCURRENCE, step.send, customer_id),
        in_global_control(customer_id, policy) if advertising and policy.global_control_percent else None,
        bucket(f"holdout:{campaign.id}", customer_id) < campaign.holdout_percent * 100 if campaign.holdout_percent else None,
        variants.index(_choose(variants, campaign.id, step.send, customer_id)) if len(variants) > 1 else None,
    )


def check(found: dict[Any, tuple[Any, ...]] | None, ids: list[Any], campaign: Campaign, policy: MessagingPolicy,
          *, keyed: bool) -> None:
    """Every member's engine hashes are Python's; keys are given exactly when ``keyed`` (plain ids)."""
    assert found is not None
    assert set(found) == set(ids)
    for customer_id in ids:
        key, *rest = found[customer_id]
        expected_key, *expected_rest = python_hashes(campaign, policy, customer_id)
        assert key == (expected_key if keyed else None), customer_id
        assert rest == expected_rest, customer_id
