"""Audience preview: how many of a campaign's audience each channel reaches, stage by stage, and the cost. Pure.

The funnel of one channel: the audience -> with a contact point on the channel ->
allowed to receive it (consent, opt-out, consent age, channel friendship; for
advertising only) -> not over a frequency cap -> sendable now or deferred by the
clock rules -> outside the shop's global control group (advertising only) ->
outside the holdout.  The ``planned`` part runs the planner itself on the whole chain (fallbacks included), so its counts and cost are exactly what
a tick at ``now`` would plan.

This module is the reference: ``shop.preview`` answers from groups of alike customers counted by the engine where
that is exact (:mod:`shopcrm.campaigns._preview_sql`), and the property tests hold the two equal.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from shopcrm.campaigns._models import Campaign, OneOff, Send, Triggered
from shopcrm.campaigns._planner import Plan, ShopState, _Planner, _Tally, bucket, paused_gc, scenario_span
from shopcrm.campaigns._policy import CONSENT_GROUP, MessagingPolicy, global_control_members
from shopcrm.timeline import to_utc_naive

__all__ = ["ChannelFunnel", "Preview", "preview"]

_STAGES = ("audience", "with_contact", "allowed", "not_capped", "sendable_now", "deferred", "after_global_control",
           "after_holdout")


@attrs.frozen(kw_only=True)
class ChannelFunnel:
    """One channel of the chain, as if it were the only one."""

    channel: str
    audience: int
    with_contact: int
    allowed: int
    not_capped: int
    sendable_now: int
    deferred: int
    #: not in the shop's global control group (:func:`shopcrm.campaigns.in_global_control`; advertising only)
    after_global_control: int
    after_holdout: int

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class Preview:
    """The funnel per channel and what the planner would plan now through the whole chain."""

    campaign_id: str
    now: datetime
    audience: int
    funnels: tuple[ChannelFunnel, ...]
    #: messages the planner plans now, per first channel and per concrete kind (sms, lms, ...)
    planned_by_channel: dict[str, int]
    planned_by_kind: dict[str, int]
    deferred: int
    holdout: int
    suppressed: dict[str, int]
    estimated_cost: float
    #: a scenario is previewed for the audience members whose trigger event is at or after this instant
    #: (those a tick at ``now`` still walks); ``None`` for a broadcast
    triggered_since: datetime | None = None
    #: the messages already in the outbox that the frequency caps counted (planned within the longest cap)
    ledger: int = 0
    #: members the planner leaves out because they are in the shop's global control group (advertising only)
    global_control: int = 0

    @property
    def planned(self) -> int:
        return sum(self.planned_by_channel.values())

    def as_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["funnels"] = [f.as_dict() for f in self.funnels]
        out["planned"] = self.planned
        return out

    def __str__(self) -> str:
        width = max(len(s) for s in _STAGES)
        head = f"{'':<{width}}" + "".join(f"{f.channel:>15}" for f in self.funnels)
        lines = [f"preview of {self.campaign_id} at {self.now:%Y-%m-%d %H:%M} UTC: audience {self.audience:,}"
                 + (f" (members whose trigger event is at or after {self.triggered_since:%Y-%m-%d %H:%M} UTC)"
                    if self.triggered_since is not None else ""), head]
        for stage in _STAGES:
            lines.append(f"{stage:<{width}}" + "".join(f"{getattr(f, stage):>15,}" for f in self.funnels))
        by_kind = ", ".join(f"{k} {v:,}" for k, v in sorted(self.planned_by_kind.items())) or "none"
        lines.append(f"planned through the chain: {self.planned:,} ({by_kind}); deferred {self.deferred:,}; "
                     f"global control {self.global_control:,}; holdout {self.holdout:,}; estimated cost {self.estimated_cost:,.0f}")
        if self.suppressed:
            from shopcrm.labels import label

            lines.append("left out: " + ", ".join(f"{label('reason', k)} {v:,}" for k, v in sorted(self.suppressed.items())))
        lines.append(f"caps counted the {self.ledger:,} messages already in the outbox; a tick also counts what "
                     "campaigns planned before this one in the same tick (higher priority) take, so it can plan fewer")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(f"<th>{html.escape(f.channel)}</th>" for f in self.funnels)
        rows = "".join(
            f"<tr><th>{stage}</th>" + "".join(f"<td>{getattr(f, stage):,}</td>" for f in self.funnels) + "</tr>"
            for stage in _STAGES
        )
        return (f"<table><caption>{html.escape(self.campaign_id)}: audience {self.audience:,}, planned {self.planned:,}, "
                f"cost {self.estimated_cost:,.0f}</caption><tr><th></th>{cells}</tr>{rows}</table>")


def preview(campaign: Campaign, state: ShopState, *, now: datetime, policy: MessagingPolicy | None = None) -> Preview:
    """The audience funnel of ``campaign`` if it were sent at ``now`` to ``state.audiences[campaign.id]``.

    A triggered campaign is previewed as a broadcast of its first send step to its audience (the shell gives
    the members whose trigger event a tick at ``now`` still walks: see :attr:`Preview.triggered_since`).
    Frequency caps count ``state.ledger`` (the messages already planned), not what other campaigns would plan
    in the same tick: a tick plans campaigns by priority, so one of lower priority may find caps taken.
    """
    with paused_gc():
        return _preview(campaign, state, to_utc_naive(now), policy or MessagingPolicy())


def _preview(campaign: Campaign, state: ShopState, when: datetime, rules: MessagingPolicy, *, by_member: bool = False) -> Preview:
    """The preview; ``by_member`` computes it member by member as before the one-pass funnels and broadcast plan
    (the same preview, slower: tests and benchmarks compare them)."""
    members = list(dict.fromkeys(state.audiences.get(campaign.id, ())))
    planner = _Planner([campaign], state, when, rules)
    advertising = campaign.purpose == "advertising"
    held_out = (
        {c for c in members if bucket(f"holdout:{campaign.id}", c) < campaign.holdout_percent * 100}
        if campaign.holdout_percent else set()
    )
    controlled = global_control_members(members, rules) if advertising else frozenset()
    funnels = (_funnels_by_member if by_member else _funnels)(campaign, members, state, planner, when, held_out, controlled)
    first = campaign.send_steps()[0]
    broadcast = campaign.model_copy(update={
        "schedule": OneOff(at=when.replace(tzinfo=UTC)),
        "variants": campaign.variants_of(first) if isinstance(first, Send) else campaign.variants,
        "enabled": True,
    })
    planning = _Planner([broadcast], attrs.evolve(state, audiences={campaign.id: members}), when, rules,
                        render_fallbacks=False, batch=not by_member)
    if advertising and not by_member and rules.global_control_percent:  # the funnels' hashes, not computed again
        planning.in_control = dict.fromkeys(members, False) | dict.fromkeys(controlled, True)
    if by_member:
        result: Plan = planning.run()
        counted = _Tally(reasons=result.reasons())
        for m in result.messages:
            counted.add(m.channel, m.chain[0].kind, m.deferred, m.estimated_cost)
    else:  # counted as the plan goes: no message objects built for a preview
        counted = planning.tally = _Tally()
        planning.run()
    reasons = counted.reasons
    return Preview(
        campaign_id=campaign.id,
        now=when,
        audience=len(members),
        funnels=tuple(funnels),
        planned_by_channel=dict(counted.by_channel),
        planned_by_kind=dict(counted.by_kind),
        deferred=counted.deferred,
        holdout=reasons.pop("holdout", 0),
        global_control=reasons.pop("global_control", 0),
        suppressed=dict(reasons),
        estimated_cost=counted.cost,
        triggered_since=(when - scenario_span(campaign.schedule.steps) - campaign.max_delay
                         if isinstance(campaign.schedule, Triggered) else None),
        ledger=len(state.ledger),
    )


def _funnels(
    campaign: Campaign, members: Sequence[Any], state: ShopState, planner: _Planner, when: datetime, held_out: Collection[Any],
    controlled: Collection[Any],
) -> list[ChannelFunnel]:
    """Every channel's funnel in one pass over the members: what a channel decides from a member's contact points,
    consents, opt-outs, zone and night consent (allowed or not, and when it could send) is decided once per
    distinct combination; caps are asked only for members with messages in the ledger (when no cap forbids all)."""
    rules, recipients = planner.policy, state.recipients
    advertising = campaign.purpose == "advertising"
    channels = list(campaign.channels)
    groups = tuple(dict.fromkeys(g for c in channels if (g := CONSENT_GROUP[c]) is not None))
    now = planner.now
    stale = rules.consent_lapsed_before(now)  # a consent given before it has lapsed (K8)
    sent, zero_limits, binding = planner.caps.sent, planner.caps.zero_limits, planner.caps.binding
    decided: dict[tuple[Any, ...], tuple[tuple[int, str, bool, datetime | None], ...]] = {}
    stages = {stage: [0] * len(channels) for stage in _STAGES if stage != "audience"}
    with_contact, allowed, not_capped = stages["with_contact"], stages["allowed"], stages["not_capped"]
    sendable_now, deferred = stages["sendable_now"], stages["deferred"]
    after_global_control, after_holdout = stages["after_global_control"], stages["after_holdout"]
    for customer_id in members:
        recipient = recipients.get(customer_id)
        if recipient is None:
            continue
        consents = recipient.consents
        zone = recipient.timezone or rules.timezone
        pattern = (recipient.phone is None, recipient.email is None, recipient.push_token is None, recipient.kakao_friend,
                   recipient.opted_out, zone, recipient.night_consent, *[
                       None if (given := consents.get(g)) is None else stale is not None and given < stale
                       for g in groups])
        per = decided.get(pattern)
        if per is None:
            per = decided[pattern] = tuple(
                (i, channel, planner.blocked(channel, recipient, advertising) is None,
                 planner.allowed(when, (channel,), recipient, zone, advertising))
                for i, channel in enumerate(channels) if recipient.contact(channel) is not None
            )
        history = zero_limits or bool(sent.get(customer_id))
        out = customer_id in controlled
        held = customer_id in held_out
        for i, channel, ok, send_at in per:
            with_contact[i] += 1
            if not ok:
                continue
            allowed[i] += 1
            assert send_at is not None
            if history and binding(customer_id, campaign.purpose, channel, send_at) is not None:
                continue
            not_capped[i] += 1
            if send_at == when:
                sendable_now[i] += 1
            else:
                deferred[i] += 1
            if out:
                continue
            after_global_control[i] += 1
            if not held:
                after_holdout[i] += 1
    return [ChannelFunnel(channel=channel, audience=len(members), **{stage: counts[i] for stage, counts in stages.items()})
            for i, channel in enumerate(channels)]


def _funnels_by_member(
    campaign: Campaign, members: Sequence[Any], state: ShopState, planner: _Planner, when: datetime, held_out: Collection[Any],
    controlled: Collection[Any],
) -> list[ChannelFunnel]:
    """:func:`_funnels` channel by channel and member by member, as it was before (kept to prove them equal in
    tests and to measure the difference; slower)."""
    rules = planner.policy
    advertising = campaign.purpose == "advertising"
    funnels = []
    for channel in campaign.channels:
        counts = Counter[str]()
        for customer_id in members:
            counts["audience"] += 1
            recipient = state.recipients.get(customer_id)
            if recipient is None or recipient.contact(channel) is None:
                continue
            counts["with_contact"] += 1
            if planner.blocked(channel, recipient, advertising) is not None:
                continue
            counts["allowed"] += 1
            zone = recipient.timezone or rules.timezone
            send_at = planner.allowed(when, (channel,), recipient, zone, advertising)
            if planner.caps.binding(customer_id, campaign.purpose, channel, send_at) is not None:
                continue
            counts["not_capped"] += 1
            counts["sendable_now" if send_at == when else "deferred"] += 1
            if customer_id in controlled:
                continue
            counts["after_global_control"] += 1
            if customer_id not in held_out:
                counts["after_holdout"] += 1
        funnels.append(ChannelFunnel(channel=channel, **{stage: counts[stage] for stage in _STAGES}))
    return funnels
