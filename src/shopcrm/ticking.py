"""The shell around the planner: read what a tick needs from the shop, plan, record the plan.

One tick at ``now``:

1. for each enabled one-off or recurring campaign, the occurrence due at ``now`` that was not
   planned before: its audience (the compiled rule) and those customers' contact points;
2. for each enabled triggered campaign, the customers whose trigger event happened in the
   window that can still produce a message (the scenario's longest span plus ``max_delay``),
   all their trigger instants since the campaign was saved (re-entry rules need the first),
   their exit events, and, when a rule or a template needs it, their attributes and events;
3. the outbox rows that decide duplicates (scenario keys) and frequency caps;
4. :func:`shopcrm.campaigns.plan`, then one transaction that records the planned messages,
   the holdouts and the scenario suppressions, and marks the occurrences planned.

Running a tick twice records nothing twice: keys are the outbox's primary key and a
planned occurrence is not planned again.
"""

from __future__ import annotations

import gc
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import attrs
from sqlglot import exp

from shopcrm.campaigns import (
    AudienceHashes,
    Branch,
    Campaign,
    LedgerEntry,
    MessagingPolicy,
    Plan,
    PlannedMessage,
    Recipient,
    Recurring,
    Renderer,
    ShopState,
    Suppression,
    Triggered,
    Wait,
    WaitUntil,
    plan,
)
from shopcrm.campaigns._models import reentry_blocks, stored_campaign
from shopcrm.campaigns._planner import (
    KeyCache,
    due_occurrence,
    entry_decision,
    paused_gc,
    scenario_span,
)
from shopcrm.dsl import Everyone, Rule, children
from shopcrm.dsl._nodes import (
    Aggregate,
    And,
    Attribute,
    Cycle,
    FirstPerformed,
    LastPerformed,
    Lifecycle,
    Not,
    Or,
    Performed,
    Rfm,
    Sample,
)
from shopcrm.recipients import RecipientColumns, with_opt_outs
from shopcrm.sources._audience_hashes import audience_hashes, hash_expressions
from shopcrm.sources._campaign_store import OutboxBatch, OutboxRow, PiecedTexts
from shopcrm.sources._reads import EngineReader, Preloaded
from shopcrm.sources._tick_marks import TickAdvance
from shopcrm.timeline import to_utc_naive

if TYPE_CHECKING:
    from shopcrm._view import ShopView
    from shopcrm.campaigns import Preview
    from shopcrm.lifecycle import LifecyclePolicy

__all__ = ["TickResult", "gather", "tick"]

_EVENT_NODES = (Performed, Aggregate, FirstPerformed, LastPerformed, Lifecycle, Rfm, Cycle)


@attrs.frozen(kw_only=True)
class TickResult:
    """What a tick planned and left out, and how many outbox rows it recorded."""

    now: datetime
    plan: Plan
    recorded: int
    occurrences: tuple[tuple[str, str], ...]
    dry_run: bool = False
    #: the outbox rows this tick recorded (or, in a dry run, would record), by status: ``planned`` (one per
    #: message), ``entered`` (a scenario entry), ``holdout``, ``global_control``, and the suppressions of scenario steps by reason
    rows_by_status: dict[str, int] = attrs.field(factory=dict)

    @property
    def messages(self) -> tuple[PlannedMessage, ...]:
        return self.plan.messages

    @property
    def suppressions(self) -> tuple[Suppression, ...]:
        return self.plan.suppressions

    def by_campaign(self) -> dict[str, Counter[str]]:
        """Per campaign: ``planned``, ``deferred`` and each suppression reason, counted."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for m in self.plan.messages:
            out[m.campaign_id]["planned"] += 1
            if m.deferred:
                out[m.campaign_id]["deferred"] += 1
        for s in self.plan.suppressions:
            out[s.campaign_id][s.reason] += 1
        return dict(out)

    def __str__(self) -> str:
        lines = [f"tick at {self.now:%Y-%m-%d %H:%M} UTC: {len(self.messages):,} messages planned, "
                 f"{len(self.suppressions):,} times a customer was left out (per campaign and reason below)"]
        rows = sum(self.rows_by_status.values())
        if rows:
            parts = ", ".join(f"{k} {v:,}" for k, v in sorted(self.rows_by_status.items(), key=lambda kv: (kv[0] != "planned", kv[0])))
            lines.append(f"  outbox rows {'that would be ' if self.dry_run else ''}recorded: {rows:,} = {parts}"
                         " (a row per message, per scenario entry, per holdout and per scenario step left out; a "
                         "broadcast's other reasons are not recorded: each tick derives them again)")
        if self.dry_run:
            lines.append("  dry run: nothing recorded")
        for campaign_id, counts in sorted(self.by_campaign().items()):
            detail = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: (kv[0] != "planned", kv[0])))
            lines.append(f"  {campaign_id}: {detail}")
        return "\n".join(lines)


def reads_events(rule: Rule) -> bool:
    """Whether evaluating ``rule`` needs the customer's events (not only attributes)."""
    return isinstance(rule, _EVENT_NODES) or any(reads_events(c) for c in children(rule))


def history_names(rule: Rule, policy: LifecyclePolicy) -> frozenset[str] | None:
    """The event names whose events decide ``rule`` for one customer (the reference reads no other event of
    the history), or None when any event may (a node this does not know).  A lifecycle stage, an RFM segment
    and a purchase cycle read the order events; a lifecycle moment also the cart and activity events."""
    if isinstance(rule, Performed):
        follow = rule.not_followed_by
        return frozenset({rule.performed, *([follow.performed] if follow is not None else [])})
    if isinstance(rule, Aggregate):
        return frozenset({rule.performed})
    if isinstance(rule, FirstPerformed):
        return frozenset({rule.first_performed})
    if isinstance(rule, LastPerformed):
        return frozenset({rule.last_performed})
    if isinstance(rule, Lifecycle) and rule.moment is not None:
        return frozenset({policy.order_event, policy.cart_event, *policy.activity_events})
    if isinstance(rule, Lifecycle | Rfm | Cycle):
        return frozenset({policy.order_event})
    if isinstance(rule, Everyone | Attribute | Sample):
        return frozenset()
    if isinstance(rule, And | Or | Not):
        found: set[str] = set()
        for child in children(rule):
            names = history_names(child, policy)
            if names is None:
                return None
            found |= names
        return frozenset(found)
    return None


def _cart_names(policy: LifecyclePolicy) -> frozenset[str]:
    """The events :func:`shopcrm.profile.current_cart` reads."""
    return frozenset({policy.cart_event, "cart_removed", policy.order_event})


def branch_rules(steps: Sequence[Any]) -> list[Rule]:
    out: list[Rule] = []
    for step in steps:
        if isinstance(step, Branch):
            out += [step.if_, *branch_rules(step.then), *branch_rules(step.else_)]
    return out


def template_names(campaign: Campaign, renderer: Renderer) -> set[str]:
    """The top-level names every template of the campaign reads."""
    names: set[str] = set()
    for step in campaign.send_steps():
        for variant in campaign.variants_of(step):
            names.update(renderer.names(variant.content))
    return names


def _trigger_names(campaigns: Iterable[Campaign]) -> list[str]:
    """The events scenarios start and end on (issue 14: a product situation among them is read as an event)."""
    return [name for c in campaigns if isinstance(c.schedule, Triggered) for name in (c.schedule.on, *c.schedule.exit_on)]


def _properties(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event's properties for templates: its columns (but customer_id and event), a JSON ``properties``
    column merged in."""
    out = {k: v for k, v in event.items() if k not in ("customer_id", "event", "properties")}
    raw = event.get("properties")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if isinstance(raw, Mapping):
        out.update(raw)
    return out


def gather(
    shop: ShopView, campaigns: Sequence[tuple[Campaign, datetime]], now: datetime, policy: MessagingPolicy,
    *, step: Callable[[str], None] | None = None, full: bool = False, reads: dict[str, Read] | None = None,
    key_cache: KeyCache | None = None,
) -> tuple[ShopState, list[tuple[str, str]]]:
    """The planner's input for a tick at ``now`` and the occurrences this tick plans; ``step`` is told each
    campaign read (a progress bar).

    A triggered scenario ticked before (its :class:`~shopcrm.sources._tick_marks.TickMark`, the campaign as
    saved then) is read from its mark on: the customers with a trigger or exit event since the mark (less
    ``policy.late_events_within``) and those whose wake-up has come.  ``full`` reads every scenario whole.
    ``reads`` receives, per scenario, what was read (the tick advances the marks with it once it has recorded).
    ``key_cache`` remembers the idempotency keys asked to decide whom to read (the tick's plan asks them again)."""
    done = step or (lambda _: None)
    keys_asked = KeyCache() if key_cache is None else key_cache
    reader = EngineReader(shop.source, now, lifecycle_policy=shop.lifecycle_policy,
                          triggers=_trigger_names(c for c, _ in campaigns))
    store = shop.source.campaign_store()
    columns: RecipientColumns = shop.recipient_columns
    customer_columns = list(reader.schema.customers.columns)
    contact_columns = [c for c in customer_columns if c in columns.names()]
    renderer = Renderer()
    recipients: dict[Any, Recipient] = {}
    audiences: dict[str, list[Any]] = {}
    triggers: dict[str, dict[Any, list[datetime]]] = {}
    exits: dict[str, dict[Any, list[datetime]]] = {}
    histories: dict[Any, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]] = {}
    contexts: dict[Any, dict[str, Any]] = {}
    trigger_events = _TriggerEvents()
    occurrences: list[tuple[str, str]] = []
    received: dict[str, dict[Any, datetime]] = {}
    hashes: dict[str, AudienceHashes] = {}
    enabled = [(c, saved) for c, saved in campaigns if c.enabled]

    broadcasts = [(c, saved) for c, saved in enabled if not isinstance(c.schedule, Triggered)]
    planned = store.occurrences([c.id for c, _ in broadcasts])
    for campaign, saved_at in broadcasts:
        due = due_occurrence(campaign, now, policy.timezone)
        done(campaign.id)
        # an occurrence due before the campaign was saved is not its to send
        if due is None or (campaign.id, due[0]) in planned or due[1] < saved_at:
            continue
        occurrences.append((campaign.id, due[0]))
        schedule = campaign.schedule
        if isinstance(schedule, Recurring) and schedule.reentry != "every_time":
            since = None if schedule.reentry == "once" else due[1] - schedule.reentry
            last: dict[Any, datetime] = {}
            for got in store.outbox(campaign_ids=[campaign.id], since=since):
                if got.status in ("planned", "holdout", "global_control") and (got.customer_id not in last or got.due_at > last[got.customer_id]):
                    last[got.customer_id] = got.due_at
            received[campaign.id] = last
        read = template_names(campaign, renderer)
        wanted = [c for c in customer_columns if c in read]
        audience = shop._resolve(campaign.audience)
        members = reader.members(audience)
        fields = list(dict.fromkeys(["customer_id", *contact_columns, *wanted]))
        # the members' hashes (keys, control group, holdout, variant) by the engine, in the same read
        id_type = reader.schema.customers.columns.get("customer_id")
        computed = hash_expressions(reader.source.dialect, campaign, policy, due[0], id_type, reader.col("customer_id", "c"))
        data = reader.customer_columns(fields, None if isinstance(audience, Everyone) else members, computed)
        hashed = audience_hashes(campaign, due[0], id_type, data)
        if hashed is not None:
            hashes[campaign.id] = hashed
        audiences[campaign.id] = data["customer_id"]
        _merge(recipients, columns.recipients(data, now=now, attributes=wanted))
        if "cart" in read:  # every member's cart, from one query over the audience's cart and order events
            carts = _carts(reader, members)
            for cid in data["customer_id"]:
                contexts.setdefault(cid, {})["cart"] = carts.get(cid, ())

    settled: set[str] = set()
    ledger: list[LedgerEntry] = []
    scenario_rows: dict[str, OutboxRow] = {}
    scenarios = [(c, saved) for c, saved in enabled if isinstance(c.schedule, Triggered)]
    marks = store.tick_marks()
    known = {} if full or not scenarios else marks.marks([c.id for c, _ in scenarios])
    # each scenario's audience and branch rules, resolved once (a saved segment is read from its store)
    scenario_rules = {c.id: [shop._resolve(r) for r in [c.audience, *branch_rules(c.schedule.steps)]]  # type: ignore[union-attr]
                      for c, _ in scenarios}
    # the scenarios read from their marks on, and where their new events start
    fresh_from: dict[str, datetime] = {}
    for campaign, saved_at in scenarios:
        mark = known.get(campaign.id)
        if mark is not None and mark.saved_at == saved_at and mark.ticked_at <= now:
            window_start = max(now - scenario_span(campaign.schedule.steps) - campaign.max_delay, saved_at)  # type: ignore[union-attr]
            fresh_from[campaign.id] = max(mark.ticked_at - policy.late_events_within, window_start)
    # their customers: new trigger or exit events since the mark, and those whose next step has come due; the
    # events and rows of all of them read once (arrivals since the earliest mark: a customer read once more than
    # needed decides nothing new)
    candidates: dict[str, list[Any]] = {}
    pre = Preloaded(events={}, rows={})
    history_of: frozenset[Any] = frozenset()  # the customers whose whole history (of the names read) pre holds
    history_names_read: frozenset[str] | None = frozenset()  # those names (None: every name)
    marked_rows: dict[str, list[OutboxRow]] = {}
    if fresh_from:
        arriving = [n for c, _ in scenarios if c.id in fresh_from for n in (c.schedule.on, *c.schedule.exit_on)]  # type: ignore[union-attr]
        arrived = reader.arrivals(arriving, min(fresh_from.values()))
        for campaign, _ in scenarios:
            if campaign.id in fresh_from:
                names = {campaign.schedule.on, *campaign.schedule.exit_on}  # type: ignore[union-attr]
                candidates[campaign.id] = sorted({*(cid for cid, name in arrived if name in names),
                                                  *marks.due(campaign.id, now)}, key=repr)
        everybody = sorted({cid for found in candidates.values() for cid in found}, key=repr)
        if everybody:
            # their trigger and exit events since the earliest instant a scenario reads them from, and their rows:
            # the new arrivals selected by the query that found them (not listed), the woken customers listed
            since_all: datetime | None = min(_reads_from(c, saved, now) for c, saved in scenarios if c.id in candidates)
            new = {cid for cid, _ in arrived}
            preload_names: list[str] | None = arriving
            if len(everybody) <= _WIDE_PRELOAD:
                # few customers (an idle tick's woken ones): their histories too, in the same scan, every instant up
                # to now (a scan of the events saved; each read below keeps its own names and instants)
                readings = [_history_reading(shop, scenario_rules[c.id], template_names(c, renderer))
                            for c, _ in scenarios if c.id in candidates]
                preload_names = None if None in readings else sorted({*arriving, *(n for r in readings if r for n in r)})
                since_all = None
                history_of = frozenset(everybody)
                history_names_read = None if preload_names is None else frozenset(preload_names)
            pre = reader.preload([cid for cid in everybody if cid not in new], names=preload_names, since=since_all,
                                 arrived=reader.arrived(arriving, min(fresh_from.values())) if new else None)
            # and what the outbox decided for them in these scenarios, one read for all (each scenario keeps the rows
            # of its triggered customers below, as a read of its own would give them, in the same order)
            for row in store.outbox(campaign_ids=sorted(candidates), customer_ids=everybody):
                marked_rows.setdefault(row.campaign_id, []).append(row)
    # the customers whose history a rule or a cart may need, per scenario: read after the loop, once for all
    later: list[_Needy] = []
    rows_of: dict[Any, dict[str, Any]] = dict(pre.rows)
    built: dict[Any, frozenset[str]] = {}  # the template fields each watermark-read recipient was made with
    for campaign, saved_at in scenarios:
        schedule = campaign.schedule
        assert isinstance(schedule, Triggered)
        done(campaign.id)
        horizon = scenario_span(schedule.steps) + campaign.max_delay
        window_start = max(now - horizon, saved_at)
        since = None if schedule.reentry == "every_time" else saved_at
        ids: exp.Select | list[Any]
        marked = campaign.id in candidates
        if marked:
            ids = candidates[campaign.id]
            found = pre.take(ids, {schedule.on}, since if since is not None else window_start)
        else:
            ids = reader.triggered_ids(schedule.on, window_start)
            if reads is not None:
                reads[campaign.id] = Read(saved_at=saved_at, examined=None)
            found = reader.events(reader.events_named([schedule.on], since if since is not None else window_start), ids)
        if schedule.where is not None:  # issue 15: e.g. segment_entered with segment "vip" only
            found = [event for event in found if schedule.matches(_properties(event))]
        per_customer: dict[Any, list[datetime]] = defaultdict(list)
        for event in found:
            per_customer[event["customer_id"]].append(event["ts"])
            trigger_events.raw[(event["customer_id"], schedule.on, event["ts"])] = event
        triggers[campaign.id] = dict(per_customer)
        if reads is not None and marked:  # whose wake-ups this tick replaces
            reads[campaign.id] = Read(saved_at=saved_at, examined=tuple(ids))
        if schedule.exit_on:
            ended: dict[Any, list[datetime]] = defaultdict(list)
            for event in (pre.take(ids, set(schedule.exit_on), window_start) if marked
                          else reader.events(reader.events_named(list(schedule.exit_on), window_start), ids)):
                ended[event["customer_id"]].append(event["ts"])
            exits[campaign.id] = dict(ended)
        rules = scenario_rules[campaign.id]
        needs_rows = any(not isinstance(r, Everyone) for r in rules)
        names = template_names(campaign, renderer)
        wanted = [c for c in customer_columns if c in names]
        # what the outbox decided for these customers, at any date (re-entry rules read old entries): customers
        # with nothing left to decide need no history, so a steady stream of ticks reads only the new ones
        decided: list[OutboxRow] = []
        if per_customer and marked:  # its triggered customers are among those read for all marked scenarios
            decided = [r for r in marked_rows.get(campaign.id, ()) if r.customer_id in per_customer]
        elif per_customer:
            decided = store.outbox(campaign_ids=[campaign.id], customer_ids=list(per_customer))
        scenario_rows.update((r.key, r) for r in decided)
        keys = {r.key for r in decided}
        if any(not isinstance(r, Everyone) for r in rules[1:]):
            needy = set(per_customer)  # a branch may come due for anyone
        else:
            undecided = _Undecided(campaign, schedule, now, cart="cart" in names, key_cache=keys_asked)
            decided_ids = _hashed_ids(decided)
            needy = {cid for cid, times in per_customer.items() if undecided(cid, times, keys, decided_ids)}
        read_columns = list(dict.fromkeys(["customer_id", *contact_columns, *wanted]))
        if marked:
            # a customer already made a recipient with these template fields (by an earlier scenario) is the same
            # recipient again: only the others are made
            have = frozenset(wanted)
            fresh = [cid for cid in ids if cid in pre.rows and not (cid in built and have <= built[cid])]
            for cid in fresh:
                built[cid] = built.get(cid, frozenset()) | have
            picked = [pre.rows[cid] for cid in fresh]
            data = {c: [row[c] for row in picked] for c in read_columns}
        else:
            data = reader.customer_columns(read_columns, ids)
        _merge(recipients, columns.recipients(data, now=now, attributes=wanted))
        if needy and (needs_rows or "cart" in names):
            reading = _history_reading(shop, rules, names)  # only the events its rules and its carts read
            wants = _Needy(needy=sorted(needy, key=repr), rows=needs_rows, events=reading, cart="cart" in names)
            later.append(wants)
            if needs_rows and not marked:
                rows_of.update((row["customer_id"], row) for row in reader.customers(customer_columns, wants.needy))
    # the histories: each customer's events of the names any scenario that needs them reads (None: every event),
    # one read per distinct set of names; a history is shared by the scenarios, so it holds what each reads
    needs: dict[Any, frozenset[str] | None] = {}
    for wants in later:
        if wants.events != frozenset():
            for cid in wants.needy:
                so_far = needs.get(cid, frozenset())
                needs[cid] = None if so_far is None or wants.events is None else so_far | wants.events
    # a customer read with the preload keeps its events of the names it needs, when the preload read them all (a
    # scenario read whole this tick, its mark stale, may need other names of the same customer)
    preloaded = {c for c, n in needs.items() if c in history_of and (
        history_names_read is None or (n is not None and n <= history_names_read))}
    history_events = _history_events(reader, {c: n for c, n in needs.items() if c not in preloaded}, now)
    for cid in preloaded:
        history_events[cid] = list(pre.take([cid], needs[cid]))
    for wants in later:
        _histories(wants, history_events, rows_of, histories, contexts, shop.lifecycle_policy)

    # the customers this plan can decide for; when they are few (a watermark tick), their opt-outs and capped
    # messages are read by id instead of whole tables (the planner reads them for these customers only)
    deciding = {*recipients, *(cid for found in triggers.values() for cid in found)}
    by_id = len(deciding) <= _READ_BY_ID
    apply_opt_outs(shop, recipients, now, deciding if by_id else None)
    longest_cap = max((cap.per for cap in policy.caps), default=timedelta(0))
    keys_seen: set[str] = set()
    for sent in store.ledger_since(now - longest_cap, deciding if by_id else None):
        ledger.append(sent)
        keys_seen.add(sent.key)
    for done_row in scenario_rows.values():
        if done_row.key in keys_seen:
            continue
        if done_row.status == "planned":
            ledger.append(_entry(done_row))
        else:
            settled.add(done_row.key)
    state = ShopState(
        recipients=recipients, audiences=audiences, triggers=triggers, exits=exits, histories=histories,
        contexts=contexts, trigger_events=trigger_events, ledger=ledger, settled=frozenset(settled), received=received,
        recorded=_recorded(ledger, scenario_rows.values()), schema=reader.schema, lifecycle_policy=shop.lifecycle_policy,
        recommendations=recommendations_for(shop, [c for c, _ in enabled], audiences, triggers, trigger_events, now),
        hashes=hashes,
    )
    return state, occurrences


class _TriggerEvents(Mapping[tuple[Any, str, datetime], Mapping[str, Any]]):
    """The trigger events' properties by (customer, event name, instant), each made from its event when first
    read (a tick reads tens of thousands of trigger events; templates and recommendations read a few)."""

    __slots__ = ("_made", "raw")

    def __init__(self) -> None:
        self.raw: dict[tuple[Any, str, datetime], Mapping[str, Any]] = {}
        self._made: dict[tuple[Any, str, datetime], Mapping[str, Any]] = {}

    def __getitem__(self, key: tuple[Any, str, datetime]) -> Mapping[str, Any]:
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = _properties(self.raw[key])
        return found

    def __iter__(self) -> Iterator[tuple[Any, str, datetime]]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __contains__(self, key: object) -> bool:
        return key in self.raw


def _reads_from(campaign: Campaign, saved_at: datetime, now: datetime) -> datetime:
    """The earliest instant a tick reads a scenario's trigger and exit events from: the campaign's saving when
    its re-entry rule reads old entries, else the window a tick walks."""
    schedule = campaign.schedule
    assert isinstance(schedule, Triggered)
    window_start = max(now - scenario_span(schedule.steps) - campaign.max_delay, saved_at)
    return window_start if schedule.reentry == "every_time" else saved_at


#: at most how many customers a watermark tick reads with their histories in one scan (see :func:`gather`)
_WIDE_PRELOAD = 1_000


def _history_reading(shop: ShopView, rules: Sequence[Rule], names: Collection[str]) -> frozenset[str] | None:
    """The event names a scenario's history reads for its (resolved) rules and, when its templates (reading
    ``names``) show the cart, for its carts (None: every event; empty: none)."""
    if not any(reads_events(r) for r in rules) and "cart" not in names:
        return frozenset()
    parts = [history_names(r, shop.lifecycle_policy) for r in rules]
    if "cart" in names:
        parts.append(_cart_names(shop.lifecycle_policy))
    return None if None in parts else frozenset().union(*parts)  # type: ignore[arg-type]


@attrs.frozen
class _Needy:
    """The customers of one scenario whose history the planner may need: their customers ``rows`` (for rules),
    their ``events`` (rules or a cart) and their ``cart`` (templates)."""

    needy: list[Any]
    rows: bool
    #: the event names its rules and carts read (None: every event)
    events: frozenset[str] | None
    cart: bool


def _history_events(reader: EngineReader, needs: Mapping[Any, frozenset[str] | None], now: datetime) -> dict[Any, list[dict[str, Any]]]:
    """Each customer's events up to ``now`` of the names it needs (None: every event), in two reads at most (a
    scan of the events each): the customers needing every event, and the others with the union of the names they
    need, each customer's events then kept to its own names (as a read per set of names would give them)."""
    history_events: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    every = sorted((cid for cid, reading in needs.items() if reading is None), key=repr)
    named = {cid: reading for cid, reading in needs.items() if reading is not None}
    if every:
        for event in reader.events(exp.LTE(this=reader.ts("e"), expression=reader.at(now)), every):
            history_events[event["customer_id"]].append(event)
    if named:
        union = sorted(frozenset().union(*named.values()))
        for event in reader.events(reader.events_named(union, None), sorted(named, key=repr)):
            cid = event["customer_id"]
            if event["event"] in named.get(cid, ()):  # (an id the engine matched but returns otherwise spelt: as before, unread)
                history_events[cid].append(event)
    return history_events


def _histories(
    wants: _Needy, events: Mapping[Any, list[dict[str, Any]]], rows: Mapping[Any, dict[str, Any]],
    histories: dict[Any, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]], contexts: dict[Any, dict[str, Any]],
    policy: LifecyclePolicy,
) -> None:
    """The planner's histories and carts of one scenario's needy customers, from their events (of every name
    any of their scenarios reads) and rows."""
    empty: list[dict[str, Any]] = []
    if wants.rows:
        for cid in wants.needy:
            row = rows.get(cid)
            if row is not None:
                histories[cid] = (row, events.get(cid, empty))
    if wants.cart:
        from shopcrm.profile import current_cart

        for cid in wants.needy:
            contexts.setdefault(cid, {})["cart"] = [
                {"product_id": item.product_id, "added_at": item.added_at, **item.details}
                for item in current_cart(events.get(cid, empty), policy)
            ]
    # events of customers not in the customers table: no attributes and, as in SQL, no history a rule can see (a
    # rule reads the customers table first); an audience of everyone reports them as no_recipient
    if wants.rows:
        for cid in wants.needy:
            if cid not in histories:
                histories[cid] = ({"customer_id": cid}, [])


def _carts(reader: EngineReader, ids: exp.Select | Sequence[Any]) -> dict[Any, tuple[Mapping[str, Any], ...]]:
    """The current cart of every customer of ``ids`` that has one (newest item first), from their cart,
    cart-removal and order events read in one query (IN lists of 1,000 ids at most), never one query per
    customer.  Items are hashable mappings, so equal carts share a rendering."""
    from shopcrm.profile import current_cart

    policy = reader.lifecycle_policy
    per_customer: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for event in reader.events(reader.events_named([policy.cart_event, "cart_removed", policy.order_event], None), ids):
        per_customer[event["customer_id"]].append(event)
    out: dict[Any, tuple[Mapping[str, Any], ...]] = {}
    for cid, events in per_customer.items():
        items = current_cart(events, policy)
        if items:
            out[cid] = tuple(_Sample({"product_id": item.product_id, "added_at": item.added_at, **item.details})
                             for item in items)
    return out


# ---- recommendations in messages (issue 14): one batch per campaign and request, never one query per customer ----
def _for_customers(
    shop: ShopView, customer_ids: list[Any], *, strategy: str, k: int, now: datetime,
    exclude: Mapping[Any, Collection[Any]] | None = None,
) -> Mapping[Any, Sequence[Mapping[str, Any]]]:
    """The recommender (a seam tests replace): :func:`shopcrm.recommend.for_customers`, imported when first needed."""
    from shopcrm.recommend._shop import for_customers

    return for_customers(shop, customer_ids, strategy=strategy, k=k, now=now, exclude=exclude)


def recommendations_for(
    shop: ShopView, campaigns: Sequence[Campaign], members: Mapping[str, Iterable[Any]],
    triggers: Mapping[str, Mapping[Any, Sequence[datetime]]],
    trigger_events: Mapping[tuple[Any, str, datetime], Mapping[str, Any]], now: datetime,
) -> dict[tuple[str, Any, Any], Sequence[Mapping[str, Any]]]:
    """The products each campaign's contents ask for (``content.recommend``), keyed (campaign id, request,
    customer id): one recommender call per campaign and distinct request, for all of the campaign's members (a
    broadcast's audience, a scenario's triggered customers).  In a scenario whose request has
    ``exclude_trigger``, each customer's trigger events' ``product_id`` are left out."""
    from shopcrm.errors import CampaignError

    out: dict[tuple[str, Any, Any], Sequence[Mapping[str, Any]]] = {}
    for campaign in campaigns:
        requests = list(dict.fromkeys(v.content.recommend for s in campaign.send_steps() for v in campaign.variants_of(s)
                                      if v.content.recommend is not None))
        if not requests:
            continue
        schedule = campaign.schedule
        ids = list(triggers[campaign.id]) if campaign.id in triggers else list(members.get(campaign.id, ()))
        if not ids:
            continue
        triggered: dict[Any, set[Any]] = {}
        if isinstance(schedule, Triggered):
            wanted = set(ids)
            for (cid, name, _), properties in trigger_events.items():
                if name == schedule.on and cid in wanted and properties.get("product_id") is not None:
                    triggered.setdefault(cid, set()).add(properties["product_id"])
        for request in requests:
            exclude = triggered if request.exclude_trigger and triggered else None
            try:
                found = _for_customers(shop, ids, strategy=request.strategy, k=request.k, now=now, exclude=exclude)
            except (ValueError, KeyError) as error:
                raise CampaignError([(f"{campaign.id}.recommend", f"the recommender refused {request.strategy!r} "
                                      f"(k={request.k}): {error}")]) from None
            for cid, products in found.items():
                out[(campaign.id, request, cid)] = products
    return out


_CUSTOMER_ID = attrgetter("customer_id")


def _merge(recipients: dict[Any, Recipient], found: Sequence[Recipient]) -> None:
    """Add recipients read for one campaign; a customer several campaigns read keeps every template field."""
    if not recipients:  # the first campaign read (a broadcast's million): nobody to merge with
        recipients.update(zip(map(_CUSTOMER_ID, found), found, strict=True))
        return
    for recipient in found:
        known = recipients.get(recipient.customer_id)
        if known is not None and known.attributes.keys() != recipient.attributes.keys():
            recipient = attrs.evolve(recipient, attributes={**known.attributes, **recipient.attributes})
        recipients[recipient.customer_id] = recipient


#: up to how many customers a tick reads opt-outs and capped messages by id rather than whole
_READ_BY_ID = 20_000


def apply_opt_outs(shop: ShopView, recipients: dict[Any, Recipient], now: datetime, among: Collection[Any] | None = None) -> None:
    """The opt-outs providers and 080 services reported (K3) over the customers table's consents, in place
    (``among``: read only these customers' opt-outs)."""
    store = shop.source.campaign_store()
    for cid, outs in (store.opt_outs() if among is None else store.opt_outs_of(among)).items():
        if cid in recipients:
            recipients[cid] = with_opt_outs(recipients[cid], outs, now=now)


class _Undecided:
    """Whether the planner may need a customer's history this tick: a trigger whose entry is not recorded (and
    not made moot by the re-entry rule), or, when templates read the cart, an entered occurrence with a send step
    still to decide (the scenario's constants computed once)."""

    def __init__(self, campaign: Campaign, schedule: Triggered, now: datetime, *, cart: bool, key_cache: KeyCache) -> None:
        self.campaign, self.schedule, self.now, self.cart, self.key_cache = campaign, schedule, now, cart, key_cache
        self.sends = [step.send for step in campaign.send_steps()]
        self.everyone = isinstance(campaign.audience, Everyone)
        self.walked_from = now - scenario_span(schedule.steps) - campaign.max_delay  # older entries are not walked
        # a step can send (and read the cart) only once the waits before it have passed
        self.sending_from = now - _lead(schedule.steps)

    def __call__(self, customer_id: Any, times: Sequence[datetime], keys: set[str],
                 decided: Collection[Any] | None = None) -> bool:
        """``decided``: the customers with any of ``keys`` (None: not known); one not among them has nothing
        recorded, so the first trigger up to now is undecided, and no key is hashed to find that out."""
        campaign, schedule = self.campaign, self.schedule
        if decided is not None and not self.everyone and customer_id not in decided:
            return any(t <= self.now for t in times)
        entered: datetime | None = None
        for at in sorted({t for t in times if t <= self.now}):
            if reentry_blocks(schedule.reentry, entered, at):
                continue
            decision = True if self.everyone else entry_decision(campaign, customer_id, at, keys, self.key_cache)
            if decision is None:
                return True
            if decision:
                entered = at
                if (self.cart and self.walked_from <= at <= self.sending_from
                        and not all(self.key_cache.key(campaign.id, at.isoformat(), s, customer_id) in keys for s in self.sends)):
                    return True
        return False


def _lead(steps: Sequence[Any]) -> timedelta:
    """The shortest time from an entry to the scenario's first step that is not a wait: the leading waits'
    durations (a wait until a time of day may last no time at all)."""
    lead = timedelta(0)
    for step in steps:
        if isinstance(step, Wait):
            lead += step.wait
        elif not isinstance(step, WaitUntil):
            break
    return lead


def _hashed_ids(rows: Iterable[OutboxRow]) -> set[Any] | None:
    """The customers of ``rows``, or None when an id cannot be hashed."""
    try:
        return {r.customer_id for r in rows}
    except TypeError:
        return None


def _recorded(ledger: Iterable[LedgerEntry], rows: Iterable[OutboxRow]) -> frozenset[tuple[str, Any]] | None:
    """``ShopState.recorded``: the (campaign id, customer id) of every key the plan starts from (the ledger's, and
    the scenario rows' that are not in it), or None when an id cannot be hashed (every key is then asked)."""
    try:
        return frozenset([*((e.campaign_id, e.customer_id) for e in ledger), *((r.campaign_id, r.customer_id) for r in rows)])
    except TypeError:
        return None


def _entry(row: OutboxRow) -> LedgerEntry:
    return LedgerEntry(row.key, row.customer_id, row.campaign_id, row.purpose, row.channel, row.send_at or row.due_at)


class _MessageEncoder:
    """The outbox's JSON of a message's chain: each rendered message is encoded once (customers share them
    through the render cache) and only the contact is added per message."""

    def __init__(self) -> None:
        self._encoded: dict[int, tuple[Any, str]] = {}
        #: per chain object (customers who share renderings share the tuple) and friendship: the JSON around the contacts
        self._chains: dict[tuple[int, bool], tuple[Any, tuple[str, ...]]] = {}

    def rendered(self, rendered: Any) -> str:
        found = self._encoded.get(id(rendered))
        if found is None or found[0] is not rendered:
            text = _fields_json(rendered) or _ENCODER.encode(_as_dict(rendered))
            found = (rendered, text[:-1])  # without the closing brace: the contact follows
            self._encoded[id(rendered)] = found
        return found[1]

    def __call__(self, message: PlannedMessage) -> str:
        chain, contacts = message.chain, message.contacts
        found = self._chains.get((id(chain), message.friend))
        if found is None or found[0] is not chain:
            found = self._chains[(id(chain), message.friend)] = (chain, self.pieces(chain, message.friend))
        pieces = found[1]
        if len(contacts) != len(chain):
            raise ValueError(f"a message has {len(chain)} renderings and {len(contacts)} contacts; they go in pairs")
        if len(contacts) == 1:
            return f"{pieces[0]}{_json_text(contacts[0])}{pieces[1]}"
        if len(contacts) == 2:
            first = _json_text(contacts[0])
            second = first if contacts[1] == contacts[0] else _json_text(contacts[1])
            return f"{pieces[0]}{first}{pieces[1]}{second}{pieces[2]}"
        out = [pieces[0]]
        for contact, after in zip(contacts, pieces[1:], strict=True):
            out += (_json_text(contact), after)
        return "".join(out)

    #: how many messages :class:`PiecedTexts` joins at a time (bounds its transient columns and each chunk's size)
    CHUNK = 25_000

    def pieced(self, chains: Sequence[Sequence[Any]], contacts: Sequence[Sequence[str]], friends: Sequence[bool],
               tail: Sequence[str] = ()) -> PiecedTexts:
        """The JSON of many messages (their chains, contacts and friendship, in order), then the ``tail`` texts, as
        :class:`PiecedTexts`, each message's equal to :meth:`__call__`'s: the JSON around the contacts is built once
        per chain object and friendship (:meth:`pieces`), each message takes its chain's pieces by index and its
        contacts as Arrow columns, without a Python string per message; a tail text is a piece of its own."""
        import pyarrow as pa
        import pyarrow.compute as pc

        lengths = list(map(len, chains))
        if lengths != list(map(len, contacts)):
            chain, found = next((c, f) for c, f in zip(chains, contacts, strict=True) if len(c) != len(f))
            raise ValueError(f"a message has {len(chain)} renderings and {len(found)} contacts; they go in pairs")
        # the chain objects numbered in order of first use, in Arrow (the messages hold their chains, so no two live
        # chains share an id); each message's pieces are its chain's number, twice, plus one for a channel friend
        ids = pa.array(list(map(id, chains)), pa.uint64())
        numbered = ids.dictionary_encode()
        distinct = list(map(chains.__getitem__, pc.index_in(numbered.dictionary, value_set=ids).to_pylist()))
        index = pc.add(pc.multiply(numbered.indices, 2), pc.cast(pa.array(list(map(bool, friends)), pa.bool_()), pa.int32()))
        used = set(pc.unique(index).to_pylist())
        width = max(lengths, default=1)
        # per chain and friendship, the text before, between and after its contacts (quotes included); "" past its end
        segments: list[list[str]] = [[] for _ in range(width + 1)]
        for number, chain in enumerate(distinct):
            for friend in (False, True):
                pieces, length = self.pieces(chain, friend) if 2 * number + friend in used else ("",) * (len(chain) + 1), len(chain)
                for j, column in enumerate(segments):
                    column.append("" if j > length else f'{pieces[0]}"' if j == 0 else f'"{pieces[j]}' if j == length
                                  else f'"{pieces[j]}"')
        # each distinct tail text is a piece before empty contacts
        tails = pa.array(list(tail), pa.string()).dictionary_encode()
        segments[0] += tails.dictionary.to_pylist()
        for column in segments[1:]:
            column += [""] * len(tails.dictionary)
        index = pa.concat_arrays([index.cast(pa.int32()), pc.add(tails.indices, 2 * len(distinct)).cast(pa.int32())])
        # every contact in one Arrow column, escaped as _json_text escapes it when one is not plain printable ASCII;
        # the j-th contacts of the messages are taken from it by position ("" for a message with fewer)
        every = list(itertools.chain.from_iterable(contacts))
        found = pa.array(every, pa.string())
        if not pc.all(pc.match_substring_regex(found, r"^[ !#-\[\]-~]*$")).as_py():  # _json_text's plain text
            found = pa.array([_json_text(text)[1:-1] for text in every], pa.string())
        counts = pa.array(lengths, pa.int64())
        starts = pc.subtract(pc.cumulative_sum(counts), counts)
        shortest = min(lengths, default=0)
        columns: list[Any] = []
        for j in range(width):
            if j < shortest:
                column = found.take(pc.add(starts, j))
            else:
                has = pc.greater(counts, j)
                column = pc.if_else(has, found.take(pc.if_else(has, pc.add(starts, j), 0)), "") if len(found) else pa.repeat(
                    pa.scalar("", pa.string()), len(chains))
            columns.append(pa.concat_arrays([column, pa.repeat(pa.scalar("", pa.string()), len(tail))]))
        return PiecedTexts([pa.array(column, pa.string()) for column in segments], index, columns,
                           chunk=self.CHUNK)

    def pieces(self, chain: Sequence[Any], friend: bool) -> tuple[str, ...]:
        """The message's JSON split where each contact goes: one more piece than the chain has renderings."""
        # a Brand Message item says whether its recipient is a channel friend (its targeting and price; i13-cost)
        flag = f', "friend": {"true" if friend else "false"}'
        out = ['{"chain": [']
        for i, rendered in enumerate(chain):
            out[-1] += f"{', ' if i else ''}{self.rendered(rendered)}, \"contact\": "
            out.append(f"{flag if rendered.channel == 'brand_message' else ''}}}")
        out[-1] += "]}"
        return tuple(out)


def _fields_json(rendered: Any) -> str | None:
    """``_ENCODER.encode(attrs.asdict(rendered))`` written field by field when every value is text, None or
    tuples of them (a rendering's usual fields), else None: a triggered tick encodes each of its tens of thousands of
    renderings once (an order confirmation names its order), and the dict, the check of every value and the
    encoder's call cost more than the text."""
    kind = type(rendered)
    found = _PREFIXES.get(kind)
    if found is None:
        names = tuple(field.name for field in attrs.fields(kind))
        getter = attrgetter(*names) if len(names) > 1 else lambda of: tuple(getattr(of, name) for name in names)
        found = _PREFIXES[kind] = (getter, tuple(f"{_quote(name)}: " for name in names))
    out = []
    for prefix, value in zip(found[1], found[0](rendered), strict=True):
        if type(value) is str:
            out.append(prefix + _quote(value))
        elif value is None:
            out.append(prefix + "null")
        elif type(value) is tuple and (text := _tuple_json(value)) is not None:
            out.append(prefix + text)
        else:
            return None
    return "{" + ", ".join(out) + "}"


def _tuple_json(value: tuple[Any, ...]) -> str | None:
    """A tuple of text, None and such tuples as its JSON list (as the encoder writes it), else None."""
    parts = []
    for item in value:
        if type(item) is str:
            parts.append(_quote(item))
        elif item is None:
            parts.append("null")
        elif type(item) is tuple and (text := _tuple_json(item)) is not None:
            parts.append(text)
        else:
            return None
    return "[" + ", ".join(parts) + "]"


#: per attrs class a rendering is: a getter of all its fields, and each field's key as the encoder writes it
_PREFIXES: dict[type, tuple[Any, tuple[str, ...]]] = {}
#: a text as the encoder writes it (``ensure_ascii=False``): the C function json uses, when it has one
_quote: Any = json.encoder.encode_basestring


def _flat(value: Any) -> bool:
    """Whether ``attrs.asdict`` would leave ``value`` as it is but for turning tuples into lists (JSON cannot tell)."""
    return value is None or type(value) in (str, int, float, bool) or (type(value) is tuple and all(map(_flat, value)))


def _as_dict(rendered: Any) -> dict[str, Any]:
    """``attrs.asdict(rendered)`` for JSON, read field by field when every value is text or tuples of text (a
    rendering's usual fields): asdict's recursion costs a broadcast's tens of thousands of renderings a second."""
    names = _FIELDS.get(type(rendered))
    if names is None:
        names = _FIELDS[type(rendered)] = tuple(field.name for field in attrs.fields(type(rendered)))
    values = dict(zip(names, attrgetter(*names)(rendered), strict=True)) if len(names) > 1 else {
        name: getattr(rendered, name) for name in names}
    return values if all(map(_flat, values.values())) else attrs.asdict(rendered)


#: the field names of each attrs class a rendering is (:func:`_as_dict`)
_FIELDS: dict[type, tuple[str, ...]] = {}
#: ``json.dumps(value, ensure_ascii=False, default=_plain)`` without an encoder made per call
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=lambda value: _plain(value))


def _json_text(text: str) -> str:
    """``json.dumps(text)``, without the call for the usual phone numbers and addresses."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:  # printable ASCII
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


#: the fields of a planned message its outbox row takes, each read from every message in one C loop (a getter of all
#: thirteen builds a tuple per message and transposes them: 0.54 s against 0.38 s for a broadcast's 637k messages)
_MESSAGE_FIELDS = tuple(map(attrgetter, ("key", "customer_id", "campaign_id", "step", "occurrence", "variant", "purpose",
                                         "chain", "contacts", "due_at", "send_at", "estimated_cost", "friend")))
#: from how many planned messages a tick assembles their JSON in Arrow (below, per message in Python: no pyarrow)
ARROW_MESSAGES = 20_000


def outbox_rows(result: Plan, campaigns: Iterable[Campaign], now: datetime) -> OutboxBatch:
    """The rows a plan records: every planned message; holdouts and global control members; every failed rendering (``render_failed``, its
    reason in the message's ``detail``); every suppression of a scenario step; the scenario entries an audience
    rule decided.  Column by column: the planned messages' columns are taken from the messages in C loops, and
    a large plan's message JSON is left as pieces around the contacts, for the engine to join (see
    :meth:`_MessageEncoder.pieced`)."""
    scenarios = {c.id for c in campaigns if isinstance(c.schedule, Triggered)}
    purposes = {c.id: c.purpose for c in campaigns}
    encode = _MessageEncoder()
    messages = result.messages
    n = len(messages)
    fields = [list(map(field, messages)) for field in _MESSAGE_FIELDS]
    keys, customers, campaign_ids, steps, occurrences, variants, purposes_of, chains, contacts, due, send, cost, friends = fields
    heads = list(map(itemgetter(0), chains))
    large = n >= ARROW_MESSAGES  # the JSON as pieces for the engine to join (see PiecedTexts), else per message
    texts: list[str] = [] if large else list(map(encode, messages))
    columns: list[Any] = [
        keys, customers, campaign_ids, steps, occurrences, variants, purposes_of,
        list(map(attrgetter("channel"), heads)), list(map(attrgetter("kind"), heads)), ["planned"] * n, due, send,
        cost, [], [now] * n,
    ]
    others = [
        OutboxRow(
            key=e.key, customer_id=e.customer_id, campaign_id=e.campaign_id, step="entered", occurrence=e.at.isoformat(),
            variant="", purpose=purposes.get(e.campaign_id, ""), channel="", kind="", status="entered", due_at=e.at,
            send_at=None, cost=0.0, message="{}", planned_at=now,
        )
        for e in result.entries
    ]
    seen = set(keys)
    seen.update(row.key for row in others)
    details: dict[str, str] = {}  # the JSON of each detail (a holdout's is empty: one for them all)
    for s in result.suppressions:
        if s.key is None or s.reason == "already_planned" or s.key in seen:
            continue
        if s.reason not in ("holdout", "global_control", "render_failed") and s.campaign_id not in scenarios:
            continue  # a broadcast's other reasons are re-derived; a failed rendering is kept with its reason
        others.append(OutboxRow(
            s.key, s.customer_id, s.campaign_id, s.step, s.occurrence, "", purposes.get(s.campaign_id, ""), "", "", s.reason,
            s.due_at or now, s.send_at, 0.0,
            details.get(s.detail) or details.setdefault(s.detail, json.dumps({"detail": s.detail}, ensure_ascii=False)),
            now,
        ))
        seen.add(s.key)
    if others:
        for column, values in zip(columns, zip(*others, strict=True), strict=True):
            column.extend(values)
    if large:
        columns[13] = encode.pieced(chains, contacts, friends, [row.message for row in others])
    else:
        texts.extend(row.message for row in others)
        columns[13] = texts
    return OutboxBatch(columns)


@attrs.frozen(kw_only=True)
class Read:
    """What a tick read of one scenario: the campaign as saved at ``saved_at``; ``examined`` the customers read
    from the scenario's mark on, or None when it was read whole."""

    saved_at: datetime
    examined: tuple[Any, ...] | None


def advances(result: Plan, read: Mapping[str, Read], now: datetime) -> list[TickAdvance]:
    """The marks a recorded tick leaves: each scenario read up to ``now``, its examined customers' wake-ups
    replaced by the plan's."""
    woken: dict[str, dict[Any, datetime]] = defaultdict(dict)
    for (campaign_id, customer_id), at in result.wakeups.items():
        woken[campaign_id][customer_id] = at
    return [TickAdvance(campaign_id=campaign_id, saved_at=r.saved_at, ticked_at=now, whole=r.examined is None,
                        examined=r.examined or (), wakeups=woken.get(campaign_id, {}))
            for campaign_id, r in read.items()]


def _promote_survivors(collecting: bool) -> None:
    """Move the objects alive at the end of a tick (its plan, returned to the caller; a million messages and
    suppressions at 1M customers) to the collector's oldest generation without a collection, before the collector
    is resumed.

    The collector was paused for the tick (:func:`~shopcrm.campaigns._planner.paused_gc`), so its count of young
    objects holds every allocation of the tick, and the first allocation after it would run a collection that
    walks the whole plan (0.7 s at 1M customers) and frees nothing: what the tick builds forms no cycles.  In the
    oldest generation they are walked only by a full collection, which CPython runs once long-lived objects have
    grown by a quarter.  Skipped when the process has frozen objects of its own (``gc.freeze()``: moving ours out
    would move theirs back too) and when the caller had paused the collector (``collecting`` false)."""
    if collecting and gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def tick(shop: ShopView, now: datetime, *, dry_run: bool = False, progress: bool = False, full: bool = False) -> TickResult:
    """Plan every enabled campaign of ``shop`` as of ``now`` and record the plan (unless ``dry_run``);
    ``progress`` draws a bar on stderr: a step per campaign read, then planning and recording.

    Scenarios are read from their watermarks on (see :func:`gather`); ``full`` reads them whole.  The marks are
    advanced after the plan is recorded, in a transaction of their own: a crash between the two leaves the older
    marks, and the next tick reads that stretch again and decides nothing twice."""
    from shopcrm._progress import bar

    when = to_utc_naive(now)
    store = shop.source.campaign_store()
    campaigns = [(stored_campaign(document), saved) for _, document, saved in store.campaigns()]
    policy = shop.messaging_policy
    collecting = gc.isenabled()
    with paused_gc(), bar(progress, total=sum(1 for c, _ in campaigns if c.enabled) + 2, desc="tick") as shown:
        read: dict[str, Read] = {}
        key_cache = KeyCache()  # the keys the reads ask, asked again by the plan (this tick's only)
        state, occurrences = gather(shop, campaigns, when, policy, step=lambda what: shown.step(f"reading {what}"),
                                    full=full, reads=read, key_cache=key_cache)
        shown.note("planning")
        result = plan([c for c, _ in campaigns], state, now=when, policy=policy, key_cache=key_cache)
        rows = outbox_rows(result, [c for c, _ in campaigns], when)
        shown.step(f"planned {len(result.messages):,}")
        del state
        if not dry_run:
            store.record(rows, occurrences, when)
            store.tick_marks().advance(advances(result, read, when))
        shown.step(f"recorded {len(rows):,} rows" if not dry_run else "dry run")
        _promote_survivors(collecting)
    return TickResult(now=when, plan=result, recorded=0 if dry_run else len(rows), occurrences=tuple(occurrences), dry_run=dry_run,
                      rows_by_status=dict(Counter(rows.column("status"))))


def preview_campaign(
    shop: ShopView, campaign: Campaign, now: datetime, *, progress: bool = False, grouped: bool = True,
) -> Preview:
    """:func:`shopcrm.campaigns.preview` of ``campaign`` on the shop's data; ``progress`` draws a bar on
    stderr (reading the audience, the templates' samples, then the funnel and the plan).

    ``grouped``: count the audience per combination of what decides in one aggregate query and decide each
    combination once (:mod:`shopcrm.sources._preview_groups`; the same preview), where it can be exact; else
    (or with False) read every member and preview them one by one."""
    from shopcrm._progress import bar
    from shopcrm.campaigns._preview import preview

    with bar(progress, total=3, desc=f"preview {campaign.id}") as shown:
        if grouped:
            from shopcrm.sources._preview_groups import grouped_preview

            reader = EngineReader(shop.source, now, lifecycle_policy=shop.lifecycle_policy, triggers=_trigger_names([campaign]))
            everyone = isinstance(shop._resolve(campaign.audience), Everyone) and not isinstance(campaign.schedule, Triggered)
            found_groups = grouped_preview(
                reader, campaign, None if everyone else _preview_audience(shop, reader, campaign, now), now=to_utc_naive(now),
                policy=shop.messaging_policy, columns=shop.recipient_columns, ledger=_preview_ledger(shop, now),
                opt_outs=shop.source.campaign_store().opt_outs())
            if found_groups is not None:
                shown.step(f"audience {found_groups.audience:,} in groups")
                shown.step("samples: none needed")
                shown.step(f"{found_groups.planned:,} planned")
                return found_groups
        state = preview_state(shop, campaign, now, step=shown.step)
        shown.note("funnel and plan")
        found = preview(campaign, state, now=now, policy=shop.messaging_policy)
        shown.step(f"{found.planned:,} planned")
    return found


def _preview_audience(shop: ShopView, reader: EngineReader, campaign: Campaign, now: datetime) -> exp.Select:
    """The ids a preview of ``campaign`` at ``now`` reaches: its audience, and for a scenario only the members
    whose trigger event a tick at ``now`` still walks."""
    audience = reader.members(shop._resolve(campaign.audience))
    schedule = campaign.schedule
    if isinstance(schedule, Triggered):
        since = now - scenario_span(schedule.steps) - campaign.max_delay
        member = exp.column("customer_id", table="m", quoted=True)
        audience = exp.select(member).from_(audience.subquery("m")).where(
            member.isin(query=reader.triggered_ids(schedule.on, since)))
    return audience


def _preview_ledger(shop: ShopView, now: datetime) -> list[LedgerEntry]:
    """The messages planned within the policy's longest frequency cap before ``now`` (what a preview's caps count)."""
    longest_cap = max((cap.per for cap in shop.messaging_policy.caps), default=timedelta(0))
    return shop.source.campaign_store().ledger_since(now - longest_cap)


def preview_state(shop: ShopView, campaign: Campaign, now: datetime, *, step: Callable[[str], None] | None = None) -> ShopState:
    """The audience of ``campaign`` at ``now`` with contact points, the planned messages caps count, and
    what its templates read (each member's cart, a scenario's trigger event); ``step`` is told each read."""
    done = step or (lambda _: None)
    reader = EngineReader(shop.source, now, lifecycle_policy=shop.lifecycle_policy, triggers=_trigger_names([campaign]))
    columns: RecipientColumns = shop.recipient_columns
    customer_columns = list(reader.schema.customers.columns)
    names = template_names(campaign, Renderer())
    wanted = [c for c in customer_columns if c in names]
    contact = [c for c in customer_columns if c in columns.names()]
    audience = _preview_audience(shop, reader, campaign, now)
    schedule = campaign.schedule
    data = reader.customer_columns(list(dict.fromkeys(["customer_id", *contact, *wanted])), audience)
    with paused_gc():
        recipients = {r.customer_id: r for r in columns.recipients(data, now=now, attributes=wanted)}
    apply_opt_outs(shop, recipients, now)
    ledger = _preview_ledger(shop, now)
    done(f"audience {len(recipients):,}")
    samples: dict[Any, dict[str, Any]] = {cid: {} for cid in recipients} if "cart" in names or "event" in names else {}
    if "cart" in names:  # each member's current cart, as a tick reads it (an empty cart for those with none)
        carts = _carts(reader, audience)
        for cid in recipients:
            samples[cid]["cart"] = carts.get(cid, ())
    if "event" in names and isinstance(schedule, Triggered):
        # previewed as a broadcast, a scenario's template still reads its trigger event: the customer's latest
        for cid, props in _latest_events(reader, schedule.on, audience, list(recipients)).items():
            samples[cid]["event"] = _Sample(props or {})
    done("samples")
    return ShopState(recipients=recipients, audiences={campaign.id: list(recipients)}, ledger=ledger, contexts=samples,
                     recommendations=recommendations_for(shop, [campaign], {campaign.id: list(recipients)}, {}, {}, now))


class _Sample(Mapping[str, Any]):
    """A read-only event (or cart item) a preview's templates read: hashable when its values are, so the
    renderer's cache shares one rendering among customers whose names and samples are equal instead of
    rendering every customer (a plain dict or list is unhashable and bypasses the cache)."""

    __slots__ = ("_hash", "_items")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._items = dict(values)
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._items.items()))  # TypeError for nested JSON: the renderer then renders
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and self._items == dict(other)

    def __repr__(self) -> str:
        return repr(self._items)


def _latest_events(
    reader: EngineReader, name: str, ids: exp.Select | Sequence[Any], customers: Iterable[Any],
) -> dict[Any, dict[str, Any] | None]:
    """For each of ``customers``, the properties of their latest ``name`` event, read for all of ``ids`` in one
    query keyed by customer (a window over their events; IN lists of 1,000 ids at most), never one query per
    customer; a customer without one gets the shop's latest ``name`` event (``None`` if there is none), so a
    template that reads it renders as it would for a customer who has one."""
    names = list(reader.schema.events.columns)
    latest: dict[Any, dict[str, Any]] = {}
    ranked = exp.Window(
        this=exp.RowNumber(),
        partition_by=[reader.col("customer_id", "e")],
        order=exp.Order(expressions=[exp.Ordered(this=reader.col("ts", "e"), desc=True)]),
    )
    for condition in reader._in("e", ids):
        inner = exp.select(*[reader.col(c, "e") for c in names], exp.alias_(ranked, "shopcrm_rank")).from_(
            reader.events_table("e")).where(exp.and_(reader.events_named([name], None), condition))
        query = exp.select(*[exp.column(c, table="r", quoted=True) for c in names]).from_(inner.subquery("r")).where(
            exp.EQ(this=exp.column("shopcrm_rank", table="r"), expression=exp.Literal.number(1)))
        for row in reader.source.fetch(query):
            event = dict(zip(names, row, strict=True))
            latest[event["customer_id"]] = _properties(event)
    wanted = list(customers)
    fallback = _latest_event(reader, name) if any(cid not in latest for cid in wanted) else None
    return {cid: latest.get(cid, fallback) for cid in wanted}


def _latest_event(reader: EngineReader, name: str) -> dict[str, Any] | None:
    """The properties of the shop's latest ``name`` event (one query), or ``None``."""
    query = exp.select(*[reader.col(c, "e") for c in reader.schema.events.columns]).from_(reader.events_table("e")).where(
        reader.events_named([name], None)).order_by(exp.Ordered(this=reader.col("ts", "e"), desc=True)).limit(1)
    rows = reader.source.fetch(query)
    return _properties(dict(zip(reader.schema.events.columns, rows[0], strict=True))) if rows else None


def sample_recipients(
    shop: ShopView, campaign: Campaign, now: datetime, limit: int = 20,
) -> tuple[list[Recipient], dict[str, Any] | None, dict[Any, dict[str, Any]]]:
    """Customers to render a campaign's templates for when it is saved: up to ``limit`` audience members
    and, for every customer field the templates read, the customer with its longest value; plus the
    latest trigger event as the sample ``event`` of a scenario, and the latest cart item as every
    sample's ``cart`` when a template reads it.  An empty shop gives no samples."""
    try:
        reader = EngineReader(shop.source, now, lifecycle_policy=shop.lifecycle_policy, triggers=_trigger_names([campaign]))
    except ValueError:
        return [], None, {}
    columns = list(reader.schema.customers.columns)
    names = template_names(campaign, Renderer())
    picked: dict[Any, dict[str, Any]] = {}
    members = reader.members(shop._resolve(campaign.audience)).order_by(exp.column("customer_id")).limit(limit)
    for row in reader.customers(columns, members):
        picked[row["customer_id"]] = row
    for name in (c for c in columns if c in names):
        longest = exp.select(reader.col("customer_id", "l")).from_(reader.customers_table("l")).order_by(
            exp.Ordered(this=exp.Length(this=exp.cast(reader.col(name, "l"), exp.DataType.build("TEXT"))), desc=True),
        ).limit(1)
        for row in reader.customers(columns, longest):
            picked[row["customer_id"]] = row
    recipients = [shop.recipient_columns.recipient(row, now=now) for row in picked.values()]
    schedule = campaign.schedule
    event = _latest_event(reader, schedule.on) if isinstance(schedule, Triggered) else None
    ids = [r.customer_id for r in recipients]
    contexts: dict[Any, dict[str, Any]] = {}
    if "cart" in names and ids:
        contexts = {cid: {"cart": [] if props is None else [{"product_id": None, "added_at": None, **props}]}
                    for cid, props in _latest_events(reader, shop.lifecycle_policy.cart_event, ids, ids).items()}
    return recipients, event, contexts
