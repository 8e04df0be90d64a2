"""A preview from groups of alike customers: the funnel and the plan decided once per group, counted by its size. Pure.

A broadcast preview at a million customers spends its time on customers, not on decisions: most of them share
every input the funnel and the planner read (which contact points they have, their consents, opt-outs, zone and
night consent, the values their templates read, whether their hashes put them in the global control group, the
holdout or a variant).  The engine counts customers per distinct combination of those inputs
(``sources/_preview_groups.py``; :func:`hash_columns` builds the hash expressions as sqlglot trees from each
engine's quirks), :func:`plan_groups` decides each combination once with the planner's own functions, weighting
it by its count, up to the rendering, and :func:`preview_of_groups` renders once per render class, variant and
:func:`render_signature` of the template values (for a text of literal parts and names, with or without a Korean
particle, the values' lengths and CP949 bytes decide SMS against LMS: a name is not rendered per customer, nor
even per distinct name).  The result is :func:`shopcrm.campaigns.preview`'s, exactly: the property tests compare
the two on random shops (``tests/campaigns/test_preview_sql.py`` in Python, on DuckDB and SQLite;
``tests/engines/test_preview_groups_engines.py`` on PostgreSQL).

What a group cannot carry stays with the exact per-customer path (:func:`shopcrm.campaigns._preview._preview`):
customers with planned messages in the ledger (their frequency caps read their own history, and an earlier
decision of this campaign is found by a per-customer key) or with a recorded opt-out (lifted by a consent given
after it, customer by customer) are previewed one by one and added in (``rest``).  :func:`grouping_blockers`
names what keeps a whole campaign on the per-customer path: templates reading a cart, a trigger event, the
customer id, recommendations, the campaign or the shop, tracked links or an e-mail channel (what the planner
itself does not share between customers) and a template value of a float, JSON or unknown column type;
:func:`exact_costs` refuses prices whose sum would not be exact in floating point in any order (the planner adds
costs message by message: whole prices, or halves and quarters, are exact far beyond a million messages).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import attrs
from sqlglot import exp

from shopcrm.campaigns._models import Campaign, Content, OneOff, Send, Triggered
from shopcrm.campaigns._planner import Recipient, ShopState, _Caps, _Planner, bucket, scenario_span
from shopcrm.campaigns._policy import MessagingPolicy, control_threshold
from shopcrm.campaigns._preview import _STAGES, ChannelFunnel, Preview
from shopcrm.campaigns._templates import Renderer, uses_link
from shopcrm.schema import ColumnType

__all__ = [
    "WHITESPACE", "PreviewGroup", "blank_text", "control_threshold", "exact_costs", "groups_of", "grouping_blockers", "hash_columns", "plan_groups", "preview_of_groups", "render_signature", "variant_bounds",
]

#: what Python's ``str.strip()`` removes (``str.isspace``): a text made only of these is a missing contact point
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
#: template names the planner never shares between customers (per-customer values or per-message tokens)
_UNSHARED = ("cart", "event", "customer_id", "recommendations", "campaign", "shop")
_SPAN = 2 ** 64


@attrs.frozen(kw_only=True)
class PreviewGroup:
    """``count`` audience members who decide alike: ``recipient`` stands for all of them (its id is a placeholder),
    with whether their hashes put them in the global control group, the campaign's holdout, and which variant."""

    recipient: Recipient
    count: int
    controlled: bool = False
    held_out: bool = False
    variant: int = 0


def grouping_blockers(
    campaign: Campaign, policy: MessagingPolicy, columns: Mapping[str, ColumnType], *, renderer: Renderer | None = None,
) -> list[str]:
    """Why ``campaign`` cannot be previewed from groups (empty: it can), each reason in words, except the prices
    (:func:`exact_costs` needs the audience's size).  ``columns``: the customers table's column types."""
    renderer = renderer or Renderer()
    why: list[str] = []
    if "email" in campaign.channels:
        why.append("an e-mail channel (its unsubscribe link is signed per message)")
    for step in campaign.send_steps()[:1]:
        for variant in campaign.variants_of(step):
            names = renderer.names(variant.content)
            if variant.content.recommend is not None:
                why.append(f"variant {variant.name!r} recommends products (per customer)")
            why += [f"a template reads {name!r} (per customer)" for name in _UNSHARED if name in names]
            if policy.tracking is not None and uses_link(names):
                why.append("a template makes tracked links (per message)")
            why += [f"a template reads {name!r}, a {kind.value} column (grouped values may not render alike)"
                    for name in names if (kind := columns.get(name)) in (ColumnType.FLOAT, ColumnType.JSON, ColumnType.OTHER)]
    return list(dict.fromkeys(why))


def exact_costs(policy: MessagingPolicy, audience: int) -> bool:
    """Whether any sum of at most ``audience`` prices is exact in floating point, in any order: every price is a
    multiple of ``1 / d`` (a power of two), so every partial sum is too, and it is exact while below ``2**53 / d``."""
    prices = [Fraction(float(p)) for p in policy.prices.values()]
    if not prices:
        return True
    scale = max(p.denominator for p in prices)
    return audience * max(prices) * scale < 2 ** 53


def variant_bounds(campaign: Campaign) -> list[int]:
    """For a first step with several variants, the sample buckets (0..9999) at which the chosen variant changes:
    variant ``i`` is chosen for buckets in ``[bounds[i - 1], bounds[i])`` (the planner's weighted choice is
    monotone in the bucket)."""
    step = campaign.send_steps()[0]
    variants = campaign.variants_of(step)
    total = sum(v.weight for v in variants)
    bounds: list[int] = []
    index = 0
    for point_bucket in range(10000):
        point = point_bucket * total // 10000
        chosen = len(variants) - 1
        for i, variant in enumerate(variants):
            if point < variant.weight:
                chosen = i
                break
            point -= variant.weight
        while chosen > index:
            bounds.append(point_bucket)
            index += 1
    return bounds


def hash_columns(
    campaign: Campaign, policy: MessagingPolicy, customer_id: exp.Expression, *, to_text: Callable[[exp.Expression], exp.Expression],
    concat: Callable[..., exp.Expression], md5_bucket: Callable[[exp.Expression], exp.Expression],
    sha_hex16: Callable[[exp.Expression], exp.Expression], string_order: Callable[[exp.Expression], exp.Expression],
) -> dict[str, exp.Expression]:
    """The per-customer hash inputs of the preview as SQL expressions over ``customer_id`` (only those the campaign
    needs): ``controlled`` (the global control group, advertising only), ``held_out`` (the holdout) and ``variant``
    (the index of the first step's variant).  The callables are the engine's quirks: text of a value, text
    concatenation, ``md5_bucket`` (the first 8 hex digits of md5 as an integer, mod 10,000) and ``sha_hex16``
    (the first 16 lower-case hex digits of SHA-256), and ``string_order`` (a text compared by code point)."""
    out: dict[str, exp.Expression] = {}
    ident = to_text(customer_id)
    if campaign.purpose == "advertising" and policy.global_control_percent:
        threshold = control_threshold(policy.global_control_percent)
        keyed = concat(exp.Literal.string(f"{policy.global_control_salt}:"), ident.copy())
        out["controlled"] = exp.true() if threshold >= _SPAN else exp.LT(
            this=string_order(sha_hex16(keyed)), expression=string_order(exp.Literal.string(f"{threshold:016x}")))
    if campaign.holdout_percent:
        keyed = concat(exp.Literal.string(f"holdout:{campaign.id}:"), ident.copy())
        out["held_out"] = exp.LT(this=exp.Paren(this=md5_bucket(keyed)), expression=_number(campaign.holdout_percent * 100))
    bounds = variant_bounds(campaign)
    if bounds:
        step = campaign.send_steps()[0]
        keyed = concat(exp.Literal.string(f"variant:{campaign.id}:{step.send}:"), ident.copy())
        chosen = exp.Paren(this=md5_bucket(keyed))
        case = exp.Case()
        for i, bound in enumerate(bounds):
            case = case.when(exp.LT(this=chosen.copy(), expression=exp.Literal.number(bound)), exp.Literal.number(i))
        out["variant"] = case.else_(exp.Literal.number(len(bounds)))
    return out


def blank_text(value: exp.Expression) -> exp.Expression:
    """Whether a non-NULL text is empty once Python's ``str.strip()`` is applied (made only of white space):
    trimming every white-space character from both ends leaves nothing (``TRIM(text, characters)`` on DuckDB and
    SQLite, ``TRIM(characters FROM text)`` on PostgreSQL: each removes any of the characters, not a prefix)."""
    return exp.Trim(this=value, expression=exp.Literal.string(WHITESPACE)).eq(exp.Literal.string(""))


def render_signature(renderer: Renderer, content: Content) -> Callable[[Mapping[str, Any]], Any] | None:
    """For a content whose kind and success can depend on its values only through their lengths, a function giving
    each values mapping a signature: values with equal signatures render to the same kind, or fail alike, on every
    channel; None when the content is not of that shape (then every distinct value is rendered).

    The shape: no subject, HTML, buttons, AlimTalk or Brand Message layout, and a text template made only of literal
    text and ``{{ name }}`` or ``{{ name|은는 }}`` (a particle filter without arguments).  Each output then is the
    value, or the value with its particle, so the text is the literal parts and these pieces in order: what decides
    its kind (its CP949 bytes for SMS against LMS, its characters against a channel's limit, the template meter's
    charges, which count characters) are sums of the pieces' lengths.  A signature holds, per piece, the value's and
    the piece's lengths in characters and the piece's CP949 bytes (or that it has none); a value that is not text,
    or a piece that is empty, starts or ends with white space (``strip`` could cut into it) or carries the marks of
    ``sms_line``, signs as itself."""
    import jinja2.nodes as nodes

    from shopcrm.campaigns._korean import PARTICLES, cp949_length

    if content.subject is not None or content.html is not None or content.buttons or content.alimtalk is not None or (
            content.brand_message is not None and content.brand_message.layout != "text"):
        return None
    environment = renderer._text
    try:
        tree = environment.parse(content.text)
    except Exception:
        return None
    particles = {pair.replace("/", "") for pair in PARTICLES}
    pieces: list[tuple[str, Callable[..., Any] | None]] = []
    for output in tree.body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                continue
            if isinstance(node, nodes.Name) and node.ctx == "load":
                pieces.append((node.name, None))
            elif (isinstance(node, nodes.Filter) and isinstance(node.node, nodes.Name) and node.name in particles
                  and not node.args and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None):
                pieces.append((node.node.name, environment.filters[node.name]))
            else:
                return None

    def signature(values: Mapping[str, Any]) -> Any:
        out: list[Any] = []
        for name, particle in pieces:
            value = values.get(name, _ABSENT)
            if type(value) is not str:
                return ("itself", repr(dict(values)))
            try:
                piece = value if particle is None else particle(None, value)
            except Exception:
                return ("itself", repr(dict(values)))
            if (type(piece) is not str or not piece or piece[0].isspace() or piece[-1].isspace() or "\ue000" in piece
                    or "\ue001" in piece):
                return ("itself", repr(dict(values)))
            try:
                size = cp949_length(piece)
            except ValueError:
                size = -1
            out.append((len(value), len(piece), size))
        return tuple(out)

    return signature


_ABSENT = object()


def _number(value: float) -> exp.Expression:
    return exp.Literal.number(int(value) if float(value).is_integer() else value)


@attrs.frozen(kw_only=True)
class RenderClass:
    """Groups whose members reach the rendering alike: the same first channel, zone and template values of
    ``recipient`` (its other values do not matter), the same deferral and friendship (the price)."""

    channel: str
    deferred: bool
    recipient: Recipient


@attrs.define
class GroupPlan:
    """What the groups decide before rendering: the funnels' stages, the reasons members are left out, and for each
    group whose members reach the rendering the index of its :class:`RenderClass` (else None)."""

    audience: int
    stages: dict[str, list[int]]
    reasons: Counter[str]
    classes: list[RenderClass]
    class_of: list[int | None]


def _planners(campaign: Campaign, now: datetime, policy: MessagingPolicy) -> tuple[_Planner, _Planner, Campaign]:
    """The funnels' planner and the plan's (of the campaign as a broadcast of its first step at ``now``)."""
    empty = ShopState(recipients={})
    first = campaign.send_steps()[0]
    broadcast = campaign.model_copy(update={
        "schedule": OneOff(at=now.replace(tzinfo=UTC)),
        "variants": campaign.variants_of(first) if isinstance(first, Send) else campaign.variants,
        "enabled": True,
    })
    return _Planner([campaign], empty, now, policy), _Planner([broadcast], empty, now, policy, render_fallbacks=False), broadcast


def plan_groups(campaign: Campaign, groups: Sequence[PreviewGroup], *, now: datetime, policy: MessagingPolicy) -> GroupPlan:
    """Every group's funnel and plan up to the rendering (:func:`_preview._funnels` and :meth:`_Planner.broadcast`,
    decided once per group and counted by its size); raises the plan's own :class:`~shopcrm.errors.CampaignError`
    when the policy lacks what the campaign needs."""
    advertising = campaign.purpose == "advertising"
    planner, planning, broadcast = _planners(campaign, now, policy)
    planning.run()  # nobody to plan: the policy's own checks (sender lines, a tracking base), as the plan makes them
    caps = _Caps(policy, ())  # the groups have no history: only a cap of 0 can bind
    due = planning.occurrence(broadcast)
    assert due is not None  # a one-off at now
    _, due_at = due
    expired = now - due_at > broadcast.max_delay
    earliest = max(due_at, now)
    control = advertising and bool(policy.global_control_percent)
    channels = list(campaign.channels)
    stages = {stage: [0] * len(channels) for stage in _STAGES if stage != "audience"}
    reasons = Counter[str]()
    classes: dict[str, int] = {}
    found: list[RenderClass] = []
    class_of: list[int | None] = []
    audience = 0
    for group in groups:
        class_of.append(None)
        n, recipient = group.count, group.recipient
        if n <= 0:
            continue
        audience += n
        zone = recipient.timezone or policy.timezone
        for i, channel in enumerate(channels):  # the funnel of each channel alone (_preview._funnels)
            if recipient.contact(channel) is None:
                continue
            stages["with_contact"][i] += n
            if planner.blocked(channel, recipient, advertising) is not None:
                continue
            stages["allowed"][i] += n
            send_at = planner.allowed(now, (channel,), recipient, zone, advertising)
            if caps.zero_limits and caps.binding(None, campaign.purpose, channel, send_at) is not None:
                continue
            stages["not_capped"][i] += n
            stages["sendable_now" if send_at == now else "deferred"][i] += n
            if group.controlled and advertising:
                continue
            stages["after_global_control"][i] += n
            if not (group.held_out and campaign.holdout_percent):
                stages["after_holdout"][i] += n
        # the plan through the chain (_Planner.broadcast, counted)
        if expired:
            reasons["expired"] += n
            continue
        chain, why = planning.chain(broadcast, recipient, advertising)
        if not chain:
            reasons[why[0][0] if why else "no_contact"] += n
            continue
        send_at = planning.allowed(earliest, chain, recipient, zone, advertising)
        if caps.zero_limits and caps.binding(None, campaign.purpose, chain[0], send_at) is not None:
            reasons["capped"] += n
            continue
        if control and group.controlled:
            reasons["global_control"] += n
            continue
        if campaign.holdout_percent and group.held_out:
            reasons["holdout"] += n
            continue
        shared = attrs.evolve(recipient, customer_id=None, phone=None, email=None, push_token=None, consents={},
                              opted_out=frozenset(), night_consent=False, timezone=zone)
        render_class = RenderClass(channel=chain[0], deferred=send_at > earliest, recipient=shared)
        key = repr(render_class)
        index = classes.get(key)
        if index is None:
            index = classes[key] = len(found)
            found.append(render_class)
        class_of[-1] = index
    return GroupPlan(audience=audience, stages=stages, reasons=reasons, classes=found, class_of=class_of)


def preview_of_groups(
    campaign: Campaign, plan: GroupPlan, rendered: Iterable[tuple[RenderClass, int, Mapping[str, Any], int]], *, now: datetime,
    policy: MessagingPolicy, ledger: int = 0, rest: Preview | None = None,
) -> Preview:
    """The preview of ``campaign`` at ``now`` (naive UTC) from :func:`plan_groups`'s ``plan`` and ``rendered``: for
    each render class and variant (an index of the first step's variants), the members' template values (the customers-table columns the first step's templates read)
    and how many share them; plus ``rest``, the preview of the members computed one by one (its funnels, counts and
    cost are added in; ``ledger``: the number of ledger messages the caps counted).  Each distinct (class, values)
    is rendered once."""
    advertising = campaign.purpose == "advertising"
    _, planning, broadcast = _planners(campaign, now, policy)
    due = planning.occurrence(broadcast)
    assert due is not None
    _, due_at = due
    step = broadcast.send_steps()[0]
    variants = broadcast.variants_of(step)
    reasons = Counter(plan.reasons)
    by_channel, by_kind = Counter[str](), Counter[str]()
    deferred = 0
    costs: Counter[float] = Counter()
    kinds: dict[tuple[Any, ...], str | None] = {}
    signatures = [render_signature(planning.renderer, v.content) for v in variants]
    signed: dict[tuple[int, tuple[Any, ...]], Any] = {}
    for render_class, variant, values, n in rendered:
        if n <= 0:
            continue
        variant = variant if len(variants) > 1 else 0
        recipient = render_class.recipient
        sign = signatures[variant]
        if sign is None:
            signature: Any = repr(values)
        else:
            try:
                plain = (variant, tuple(values.items()))
                signature = signed.get(plain)
                if signature is None:
                    signature = signed[plain] = sign(values)
            except TypeError:  # unhashable values
                signature = sign(values)
        memo = (variant, render_class.channel, recipient.timezone, repr(recipient.attributes), signature)
        kind = kinds.get(memo, "")
        if kind == "":
            content = variants[variant].content
            if values:
                recipient = attrs.evolve(recipient, attributes={**recipient.attributes, **values})
            try:
                context = planning.context(recipient, broadcast, step, due_at, None, content.recommend)
                kind = planning.renderer.render_cached(content, render_class.channel, context, advertising=advertising,
                                                       decorations=planning.decorations, message_key="").kind
            except Exception:  # the planner's render_failed (its detail is not counted)
                kind = None
            kinds[memo] = kind
        if kind is None:
            reasons["render_failed"] += n
            continue
        by_channel[render_class.channel] += n
        by_kind[kind] += n
        deferred += n if render_class.deferred else 0
        costs[policy.price(kind, friend=render_class.recipient.kakao_friend)] += n
    # every partial sum of these prices is exact (the caller checked exact_costs), so any order gives the sum the
    # planner makes message by message; no message at all leaves the planner's integer 0
    cost: float = float(sum(Fraction(price) * n for price, n in costs.items())) if costs else 0
    stages = plan.stages
    funnels = [ChannelFunnel(channel=channel, audience=0, **{stage: counts[i] for stage, counts in stages.items()})
               for i, channel in enumerate(campaign.channels)]
    audience = plan.audience
    if rest is not None:
        audience += rest.audience
        funnels = [attrs.evolve(f, **{stage: getattr(f, stage) + getattr(r, stage) for stage in _STAGES if stage != "audience"})
                   for f, r in zip(funnels, rest.funnels, strict=True)]
        by_channel.update(rest.planned_by_channel)
        by_kind.update(rest.planned_by_kind)
        deferred += rest.deferred
        reasons.update(rest.suppressed)
        reasons["holdout"] += rest.holdout
        reasons["global_control"] += rest.global_control
        cost = rest.estimated_cost + cost if costs else rest.estimated_cost
    reasons = +reasons  # no zero counts (a Counter adds only what happened)
    return Preview(
        campaign_id=campaign.id,
        now=now,
        audience=audience,
        funnels=tuple(attrs.evolve(f, audience=audience) for f in funnels),
        planned_by_channel=dict(+by_channel),
        planned_by_kind=dict(+by_kind),
        deferred=deferred,
        holdout=reasons.pop("holdout", 0),
        global_control=reasons.pop("global_control", 0),
        suppressed=dict(reasons),
        estimated_cost=cost,
        triggered_since=(now - scenario_span(campaign.schedule.steps) - campaign.max_delay
                         if isinstance(campaign.schedule, Triggered) else None),
        ledger=ledger,
    )


def groups_of(
    campaign: Campaign, recipients: Mapping[Any, Recipient], members: Collection[Any], policy: MessagingPolicy,
    template_columns: Collection[str],
) -> tuple[list[PreviewGroup], list[list[Any]]]:
    """The groups of ``members`` as the engine's aggregate counts them, computed in Python (one per distinct
    recipient apart from its id and ``template_columns``, with the hashes the planner draws), and per group its
    members' ids: the reference side of the tests."""
    from shopcrm.campaigns._policy import in_global_control

    bounds = variant_bounds(campaign)
    step = campaign.send_steps()[0]
    found: dict[str, int] = {}
    groups: list[PreviewGroup] = []
    ids: list[list[Any]] = []
    for customer_id in dict.fromkeys(members):
        recipient = recipients.get(customer_id)
        if recipient is None:
            continue
        controlled = campaign.purpose == "advertising" and in_global_control(customer_id, policy)
        held = bool(campaign.holdout_percent) and bucket(f"holdout:{campaign.id}", customer_id) < campaign.holdout_percent * 100
        point = bucket(f"variant:{campaign.id}:{step.send}", customer_id)
        variant = sum(1 for b in bounds if point >= b)
        shared = attrs.evolve(recipient, customer_id=None, attributes={
            k: v for k, v in recipient.attributes.items() if k not in template_columns})
        key = repr((shared, controlled, held, variant))
        at = found.get(key)
        if at is None:
            at = found[key] = len(groups)
            groups.append(PreviewGroup(recipient=shared, count=0, controlled=controlled, held_out=held, variant=variant))
            ids.append([])
        groups[at] = attrs.evolve(groups[at], count=groups[at].count + 1)
        ids[at].append(customer_id)
    return groups, ids
