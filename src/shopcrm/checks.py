"""Checking a shop for silent zeros: saved segments, campaigns and playbooks that can never match or fire.

A misspelt event name counts 0 without complaint; a playbook enabled on a shop that has no trigger
events, or no ``name`` column for its copy, never sends.  :func:`check_shop` finds these from facts the
:class:`~shopcrm.shop.Shop` gathers (the events seen, with their counts and latest time; the tables'
columns; the saved segments and campaigns; the policies).  It is pure: no I/O.

>>> facts = ShopFacts(seen_events={"order_completed": SeenEvent(3, None)}, customer_columns=("customer_id",),
...                   event_columns=("customer_id", "event", "ts"), segments={"buyers": parse_rule(
...                   {"performed": "order_complete"})})
>>> print(check_shop(facts))
1 warning
warnings:
  segment 'buyers' [unseen-event]: ... did you mean 'order_completed'?
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import attrs
import jinja2
import jinja2.meta
import jinja2.nodes
from sqlglot import exp

from shopcrm.campaigns import PLAYBOOKS, Campaign, Content, MessagingPolicy, Triggered
from shopcrm.campaigns._models import Branch, Step
from shopcrm.campaigns._policy import CONSENT_GROUP
from shopcrm.campaigns._templates import TemplateLimits, _environment
from shopcrm.dsl import Rule, children, parse_rule
from shopcrm.dsl._nodes import (
    Aggregate,
    Cycle,
    FirstPerformed,
    InSegment,
    LastPerformed,
    Lifecycle,
    Performed,
    Rfm,
)
from shopcrm.lifecycle import LifecyclePolicy
from shopcrm.recipients import RecipientColumns
from shopcrm.schema import Schema

__all__ = [
    "CheckReport",
    "Finding",
    "SeenEvent",
    "Severity",
    "ShopFacts",
    "check_campaign",
    "check_shop",
    "closest",
    "event_properties",
    "rule_events",
    "seen_events_query",
    "segment_references",
    "template_reads",
]

Severity = Literal["error", "warning", "info"]
_ORDER: tuple[Severity, ...] = ("error", "warning", "info")
_PLURAL = {"error": "errors", "warning": "warnings", "info": "infos"}
#: names every template sees besides the customer's columns (see ``message_context``, and ``link`` for tracked links), and jinja2's globals
_CONTEXT = frozenset({"customer_id", "campaign", "shop", "now", "cart", "link", "recommendations"})
_GLOBALS = frozenset(jinja2.Environment().globals)
#: the customer column (a RecipientColumns field) that addresses each channel
_CONTACT = {"sms": "phone", "alimtalk": "phone", "brand_message": "phone", "email": "email", "push": "push_token"}
#: a trigger whose latest event is older than this is mentioned (info)
STALE_AFTER = timedelta(days=30)


@attrs.frozen(kw_only=True)
class Finding:
    """One problem: how bad (``severity``), a stable ``code``, what it is about (``kind`` and ``name``: a
    segment, campaign, playbook, column, policy or the events table), what is wrong and what would be right
    (``message``) and the close existing name when there is one (``suggestion``)."""

    severity: Severity
    code: str
    kind: str
    name: str
    message: str
    suggestion: str | None = None

    @property
    def subject(self) -> str:
        """``segment 'vip'``, ``campaign 'cart_reminder'``, ``policy``."""
        return f"{self.kind} {self.name!r}" if self.name else self.kind

    def __str__(self) -> str:
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        return f"{self.subject} [{self.code}]: {self.message}{hint}"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class CheckReport:
    """The findings of :meth:`Shop.check <shopcrm.shop.Shop.check>`, errors first.  ``ok`` is true when
    there are no errors (warnings and infos may remain)."""

    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def infos(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "info")

    def about(self, kind: str, name: str | None = None) -> CheckReport:
        """The findings about one kind of object (``"campaign"``), or one object of it."""
        return CheckReport(tuple(f for f in self.findings if f.kind == kind and (name is None or f.name == name)))

    def codes(self) -> list[str]:
        """The findings' codes, in order (handy in tests)."""
        return [f.code for f in self.findings]

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def _summary(self) -> str:
        if not self.findings:
            return "no problems found"
        counts = [(s, sum(1 for f in self.findings if f.severity == s)) for s in _ORDER]
        return ", ".join(f"{n} {s if n == 1 else _PLURAL[s]}" for s, n in counts if n)

    def __str__(self) -> str:
        lines = [self._summary()]
        for severity in _ORDER:
            group = [f for f in self.findings if f.severity == severity]
            if group:
                lines.append(f"{_PLURAL[severity]}:")
                lines += [f"  {f}" for f in group]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colours = {"error": "#b00020", "warning": "#8a6d00", "info": "#555"}
        rows = "".join(
            f"<tr><td style='color:{colours[f.severity]}'>{f.severity}</td><td>{html.escape(f.subject)}</td>"
            f"<td><code>{html.escape(f.code)}</code></td><td>{html.escape(f.message)}"
            f"{'<br>did you mean <b>' + html.escape(f.suggestion) + '</b>?' if f.suggestion else ''}</td></tr>"
            for f in self.findings
        )
        table = ("<table><tr><th>severity</th><th>about</th><th>code</th><th>problem</th></tr>"
                 f"{rows}</table>") if rows else ""
        return f"<div><b>{html.escape(self._summary())}</b>{table}</div>"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings]}


@attrs.frozen
class SeenEvent:
    """How often an event name occurs in the events table, and its latest time."""

    count: int
    last: datetime | None


@attrs.frozen(kw_only=True)
class ShopFacts:
    """What :func:`check_shop` looks at; ``customer_columns`` None means the shop has no tables yet."""

    seen_events: Mapping[str, SeenEvent]
    customer_columns: tuple[str, ...] | None
    event_columns: tuple[str, ...] = ()
    segments: Mapping[str, Rule] = attrs.field(factory=dict)
    campaigns: Sequence[Campaign] = ()
    messaging_policy: MessagingPolicy = attrs.field(factory=MessagingPolicy)
    recipient_columns: RecipientColumns = attrs.field(factory=RecipientColumns)
    lifecycle_policy: LifecyclePolicy = attrs.field(factory=LifecyclePolicy)
    now: datetime | None = None


def seen_events_query(schema: Schema) -> exp.Select:
    """``SELECT event, count(*), max(ts) FROM events GROUP BY event``: every event name the shop has."""
    event = exp.column("event", table="e", quoted=True)
    return exp.select(event, exp.Count(this=exp.Star()), exp.Max(this=exp.column("ts", table="e", quoted=True))).from_(
        schema.events.relation("e")
    ).group_by(event)


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (difflib), if one is close enough to be a likely misspelling."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def rule_events(rule: Rule, lifecycle: LifecyclePolicy | None = None) -> list[tuple[str, str]]:
    """The event names a rule reads, as ``(name, what)`` pairs (``what`` says where: ``performed``,
    ``not_followed_by``, ``the lifecycle policy's order event`` ...), in order, without repeats; the
    lifecycle, RFM and cycle nodes read the policy's order event (and cart event for ``cart_abandoned``)."""
    policy = lifecycle or LifecyclePolicy()
    out: dict[str, str] = {}

    def walk(node: Rule) -> None:
        if isinstance(node, Performed):
            out.setdefault(node.performed, "performed")
            if node.not_followed_by is not None:
                out.setdefault(node.not_followed_by.performed, "not_followed_by")
        elif isinstance(node, Aggregate):
            out.setdefault(node.performed, f"{node.aggregate} of {node.of}")
        elif isinstance(node, FirstPerformed):
            out.setdefault(node.first_performed, "first_performed")
        elif isinstance(node, LastPerformed):
            out.setdefault(node.last_performed, "last_performed")
        elif isinstance(node, Lifecycle | Rfm | Cycle):
            out.setdefault(policy.order_event, "the lifecycle policy's order event")
            if isinstance(node, Lifecycle) and node.moment == "cart_abandoned":
                out.setdefault(policy.cart_event, "the lifecycle policy's cart event")
        for child in children(node):
            walk(child)

    walk(rule)
    return list(out.items())


def segment_references(rule: Rule) -> list[str]:
    """The named segments a rule refers to with ``in_segment``."""
    if isinstance(rule, InSegment):
        return [rule.in_segment]
    return [name for child in children(rule) for name in segment_references(child)]


def _branch_rules(steps: Sequence[Step]) -> Iterator[Rule]:
    for step in steps:
        if isinstance(step, Branch):
            yield step.if_
            yield from _branch_rules(step.then)
            yield from _branch_rules(step.else_)


def _template_sources(content: Content) -> list[str]:
    sources = [content.text, content.subject, content.html]
    if content.alimtalk is not None:
        sources += list(content.alimtalk.variables.values())
    sources += [x for b in content.buttons for x in (b.name, b.url)]
    image = content.image_url
    return [s for s in [*sources, image] if s is not None]


_PARSER = _environment(autoescape=False, limits=TemplateLimits())  # the renderer's filters, for find_undeclared


def template_reads(source: str) -> set[str]:
    """The top-level names a template needs: those it reads outside ``| default(...)`` and ``is defined``
    (a syntax error reads nothing here; saving the campaign reports it)."""
    try:
        tree = _PARSER.parse(source)
        undeclared = jinja2.meta.find_undeclared_variables(tree)
    except jinja2.TemplateError:
        return set()
    guarded: set[int] = set()
    for node in tree.find_all(jinja2.nodes.Filter):
        if node.name in ("default", "d") and isinstance(node.node, jinja2.nodes.Name):
            guarded.add(id(node.node))
    for test in tree.find_all(jinja2.nodes.Test):
        if test.name in ("defined", "undefined") and isinstance(test.node, jinja2.nodes.Name):
            guarded.add(id(test.node))
    return {n.name for n in tree.find_all(jinja2.nodes.Name)
            if n.ctx == "load" and n.name in undeclared and id(n) not in guarded}


def event_properties(source: str) -> set[str]:
    """The trigger-event properties a template needs (``{{ event.order_id }}``), outside ``default``."""
    try:
        tree = _PARSER.parse(source)
    except jinja2.TemplateError:
        return set()
    guarded = {id(f.node) for f in tree.find_all(jinja2.nodes.Filter) if f.name in ("default", "d")}
    return {g.attr for g in tree.find_all(jinja2.nodes.Getattr)
            if isinstance(g.node, jinja2.nodes.Name) and g.node.name == "event" and id(g) not in guarded}


def _subject(campaign: Campaign) -> tuple[str, str]:
    return ("playbook" if campaign.id in PLAYBOOKS else "campaign", campaign.id)


def check_shop(facts: ShopFacts) -> CheckReport:
    """Every problem that would make a saved segment or campaign silently useless, errors first."""
    found: list[Finding] = []
    seen = facts.seen_events
    columns = facts.customer_columns
    if columns is None:
        found.append(Finding(severity="info", code="no-data", kind="shop", name="",
                             message="the shop has no customers or events tables yet; load data, then check again"))
    elif not seen:
        found.append(Finding(severity="info", code="no-events", kind="events", name="",
                             message="the events table is empty: every rule that reads events counts 0 until "
                                     "events are loaded"))

    def unseen(kind: str, name: str, rule_name: str, what: str, severity: Severity = "warning") -> None:
        if rule_name in seen or columns is None:
            return
        found.append(Finding(
            severity=severity, code="unseen-event", kind=kind, name=name,
            message=f"event {rule_name!r} ({what}) never occurs in the events table, so this part counts 0; "
                    f"name an event the shop records", suggestion=closest(rule_name, seen)))

    for segment, rule in sorted(facts.segments.items()):
        for event, what in rule_events(rule, facts.lifecycle_policy):
            unseen("segment", segment, event, what)
        for other in segment_references(rule):
            if other not in facts.segments:
                found.append(Finding(severity="error", code="unknown-segment", kind="segment", name=segment,
                                     message=f"in_segment {other!r} names no saved segment; save it or change the rule",
                                     suggestion=closest(other, facts.segments)))
    for campaign in facts.campaigns:
        found += check_campaign(campaign, facts)
    advertising = [c for c in facts.campaigns if c.enabled and c.purpose == "advertising"]
    advertisers = [c.id for c in advertising]
    channels = {channel for c in advertising for channel in c.channels}
    problems = facts.messaging_policy.problems("advertising", channels) if advertisers else []
    if problems:
        found.append(Finding(
            severity="error", code="policy-ad-lines", kind="policy", name="",
            message=f"advertising campaigns ({', '.join(advertisers)}) cannot send: " + "; ".join(problems)))
    rank = {s: i for i, s in enumerate(_ORDER)}
    return CheckReport(tuple(sorted(found, key=lambda f: rank[f.severity])))


def check_campaign(campaign: Campaign, facts: ShopFacts) -> list[Finding]:
    """The findings about one campaign (without the shop-wide policy finding)."""
    kind, name = _subject(campaign)
    seen = facts.seen_events
    columns = facts.customer_columns
    out: list[Finding] = []
    if columns is None:
        return out
    off = "" if campaign.enabled else " (the campaign is disabled)"

    schedule = campaign.schedule
    # each unseen name once per campaign; a scenario's trigger is reported as such
    reported = {schedule.on} if isinstance(schedule, Triggered) else set()

    def event_finding(event: str, what: str, severity: Severity, code: str = "unseen-event") -> None:
        if event in seen or event in reported:
            return
        reported.add(event)
        out.append(Finding(severity=severity, code=code, kind=kind, name=name,
                           message=f"event {event!r} ({what}) never occurs in the events table{off}",
                           suggestion=closest(event, seen)))

    audience_events = rule_events(campaign.audience, facts.lifecycle_policy)
    for event, what in audience_events:
        event_finding(event, f"audience: {what}; the audience counts 0 without it", "warning")
    for other in segment_references(campaign.audience):
        rule = facts.segments.get(other)
        if rule is None:
            out.append(Finding(severity="error", code="unknown-segment", kind=kind, name=name,
                               message=f"the audience names segment {other!r}, which is not saved",
                               suggestion=closest(other, facts.segments)))
            continue
        for event, what in rule_events(rule, facts.lifecycle_policy):
            if event not in dict(audience_events):
                event_finding(event, f"audience via segment {other!r}: {what}", "warning")
    if isinstance(schedule, Triggered):
        if schedule.on not in seen:
            out.append(Finding(
                severity="warning", code="trigger-never-seen", kind=kind, name=name,
                message=f"the trigger event {schedule.on!r} never occurs in the events table, so this scenario "
                        f"never starts{off}; send {schedule.on!r} events (or trigger on an event the shop records)",
                suggestion=closest(schedule.on, seen)))
        else:
            last = seen[schedule.on].last
            if facts.now is not None and last is not None and facts.now - last > STALE_AFTER:
                out.append(Finding(
                    severity="info", code="trigger-stale", kind=kind, name=name,
                    message=f"the trigger event {schedule.on!r} last occurred {(facts.now - last).days} days ago; "
                            "is the shop still sending it?"))
        for event in schedule.exit_on:
            event_finding(event, "exit_on: the scenario never ends early on it", "warning")
        for rule in _branch_rules(schedule.steps):
            for event, what in rule_events(rule, facts.lifecycle_policy):
                event_finding(event, f"branch: {what}", "warning")
    out += _template_findings(campaign, facts, kind, name)
    out += _channel_findings(campaign, facts, kind, name)
    out += _text_findings(campaign, kind, name)
    return out


def _text_findings(campaign: Campaign, kind: str, name: str) -> list[Finding]:
    """SMS texts written with syllables outside KS X 1001 (K12 counts them; strict EUC-KR carriers and Solapi do not
    take them)."""
    from shopcrm.campaigns._korean import outside_ks_x_1001

    if "sms" not in campaign.channels:
        return []
    out: list[Finding] = []
    for step in campaign.send_steps():
        for variant in campaign.variants_of(step):
            content = variant.content
            found = outside_ks_x_1001(f"{content.text}{content.subject or ''}")
            if found:
                out.append(Finding(
                    severity="warning", code="sms-outside-ks-x-1001", kind=kind, name=name,
                    message=f"the SMS text of {step.send}.{variant.name} has {', '.join(map(repr, found))}, outside KS X "
                            "1001 (EUC-KR's 2,350 syllables): carriers that read strict EUC-KR garble them and Solapi "
                            "refuses the message (error 1029); write the word another way"))
    return out


def _template_findings(campaign: Campaign, facts: ShopFacts, kind: str, name: str) -> list[Finding]:
    columns = set(facts.customer_columns or ())
    known = columns | _CONTEXT | _GLOBALS
    triggered = isinstance(campaign.schedule, Triggered)
    if triggered:
        known.add("event")
    reads: dict[str, str] = {}
    properties: dict[str, str] = {}
    for step in campaign.send_steps():
        for variant in campaign.variants_of(step):
            for source in _template_sources(variant.content):
                for var in sorted(template_reads(source)):
                    reads.setdefault(var, f"{step.send}.{variant.name}")
                for prop in sorted(event_properties(source)) if triggered else ():
                    properties.setdefault(prop, f"{step.send}.{variant.name}")
    out = []
    for var, where in reads.items():
        if var in known:
            continue
        if var == "event":
            message = ("the templates read 'event', which only a triggered scenario has; use customer columns "
                       f"(in {where})")
        else:
            message = (f"the templates read {{{{ {var} }}}} (in {where}), but the customers table has no {var!r} "
                       f"column and no campaign context is called so; add the column, or write "
                       f"{{{{ {var} | default('...') }}}}")
        out.append(Finding(severity="error", code="unknown-template-variable", kind=kind, name=name,
                           message=message, suggestion=closest(var, columns)))
    event_columns = set(facts.event_columns)
    if event_columns and "properties" not in event_columns:  # a JSON properties column may hold anything
        for prop, where in properties.items():
            if prop not in event_columns:
                out.append(Finding(
                    severity="error", code="unknown-event-property", kind=kind, name=name,
                    message=f"the templates read {{{{ event.{prop} }}}} (in {where}), but the events table has no "
                            f"{prop!r} column (nor a JSON properties column); add it to the trigger events, or write "
                            f"{{{{ event.{prop} | default('...') }}}}",
                    suggestion=closest(prop, event_columns - {"customer_id", "event", "ts"})))
    return out


def _channel_findings(campaign: Campaign, facts: ShopFacts, kind: str, name: str) -> list[Finding]:
    columns = set(facts.customer_columns or ())
    mapping = facts.recipient_columns
    missing: list[tuple[str, str, str]] = []
    usable = 0
    for channel in campaign.channels:
        contact_field = _CONTACT.get(channel)
        contact = getattr(mapping, contact_field) if contact_field else None
        problems: list[tuple[str, str]] = []
        if contact_field is not None and (contact is None or contact not in columns):
            where = f"column {contact!r}" if contact else "no column"
            problems.append(("missing-contact-column",
                             f"its contact ({contact_field}) is mapped to {where}, which the customers table "
                             f"lacks; add the column or set RecipientColumns({contact_field}=...)"))
        group = CONSENT_GROUP.get(channel)
        if campaign.purpose == "advertising" and group is not None:
            consent = mapping.consents.get(group)
            if consent is None or consent not in columns:
                problems.append(("missing-consent-column",
                                 f"advertising needs the {group!r} consent, read from column {consent!r}, which "
                                 f"the customers table lacks, so no one has consented; add the column or set "
                                 f"RecipientColumns(consents={{{group!r}: ...}})"))
        if (channel == "brand_message" and facts.messaging_policy.brand_message_friends_only
                and (mapping.kakao_friend is None or mapping.kakao_friend not in columns)):
            problems.append(("missing-friend-column",
                             f"Brand Messages go to the channel's friends only, read from column "
                             f"{mapping.kakao_friend!r}, which the customers table lacks"))
        if problems:
            missing += [(channel, code, p) for code, p in problems]
        else:
            usable += 1
    severity: Severity = "warning" if usable else "error"
    out = []
    for named, code, problem in missing:
        tail = "" if usable else " (no channel of the chain can reach anyone)"
        out.append(Finding(severity=severity, code=code, kind=kind, name=name,
                           message=f"channel {named!r}: {problem}{tail}"))
    return out


def parse_segments(saved: Iterable[tuple[str, str]]) -> dict[str, Rule]:
    """Saved segments (name, rule JSON) as rules."""
    return {name: parse_rule(document) for name, document in saved}
