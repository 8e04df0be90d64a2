"""The dispatcher: delivers the outbox's planned messages through channels, each key at most once.

One round:

1. **queue** every planned message whose send time has come (one ``INSERT ... SELECT`` into the send ledger);
2. **recover** messages a dead dispatcher left in flight (their lease ran out): ask the channel what became
   of them (:meth:`Channel.reconcile`); resend only where the channel says they were not taken, or where
   the provider drops repeated keys (``deduplicates``); otherwise they end as ``unknown``, with that reason,
   and are never sent twice;
3. **claim** the due messages (an atomic ``UPDATE`` marks them ``inflight`` under this dispatcher's claim,
   with a lease) and commit *before* any provider is called;
4. re-check each one just before it leaves: the customer's consent now (it may have been withdrawn since the
   plan) and the clock (advertising is deferred out of quiet hours, never sent in them);
5. **send** per channel in batches, with bounded concurrency and each channel's rate limit;
6. **settle**: accepted -> ``sent`` (with the provider's id and cost); transient -> ``retry`` after an
   exponential backoff with jitter (or the provider's ``Retry-After``), until ``max_attempts``; rejected ->
   the next channel of the chain (``message_fallback``) or ``failed``.  Every outcome is also an event
   (``message_sent``, ``message_failed``, ``message_fallback``, ``message_unknown``) in the shop's events,
   where segments and profiles read it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from shopcrm.campaigns import MessagingPolicy
from shopcrm.campaigns._planner import allowed_from, consent_block
from shopcrm.campaigns._policy import CONSENT_GROUP
from shopcrm.channels import Accepted, Channel, DeliveryReport, Message, Rejected, SendResult, Transient
from shopcrm.sources._campaign_store import OutboxRow, SendRow

if TYPE_CHECKING:
    from shopcrm.shop import Shop

__all__ = ["DispatchReport", "Dispatcher", "RetryPolicy"]


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt ``n`` waits a random time up to ``base * factor**(n-1)``
    (at most ``cap``); a provider's ``Retry-After`` wins when it is longer.  After ``max_attempts`` transient
    failures a channel counts as failed for the message (its chain moves on)."""

    max_attempts: int = 5
    base: timedelta = timedelta(seconds=2)
    factor: float = 2.0
    cap: timedelta = timedelta(minutes=15)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> timedelta:
        ceiling = min(self.cap, self.base * (self.factor ** max(0, attempt - 1)))
        wait = ceiling * rng.random()
        if retry_after is not None:
            wait = max(wait, timedelta(seconds=retry_after))
        return wait


@attrs.frozen(kw_only=True)
class DispatchReport:
    """What a dispatch run did: outcomes counted by state and by event, and the rounds it took."""

    rounds: int
    outcomes: dict[str, int]
    events: dict[str, int]
    remaining: int

    def __str__(self) -> str:
        outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(self.outcomes.items())) or "nothing"
        return f"dispatch: {outcomes} in {self.rounds} rounds; {self.remaining:,} still waiting"


class _RateLimit:
    """A token bucket per channel: at most ``rate`` messages per second, bursts up to one second's worth."""

    def __init__(self, rate: float | None, clock: Callable[[], float], sleep: Callable[[float], Any]) -> None:
        self.rate = rate
        self.tokens = rate or 0.0
        self.at = clock()
        self.clock = clock
        self.sleep = sleep

    async def take(self, count: int) -> None:
        if not self.rate:
            return
        while True:
            now = self.clock()
            self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= min(count, self.rate):
                self.tokens -= count
                return
            await self.sleep((min(count, self.rate) - self.tokens) / self.rate)


_EPOCH = datetime(1970, 1, 1)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Dispatcher:
    """Delivers a shop's planned messages.  ``channels`` maps each chain channel (``sms``, ``alimtalk``,
    ``brand_message``, ``email``, ``push``, ``webhook``) to the :class:`Channel` that carries it (one
    provider may carry several).  ``clock`` returns naive UTC now (tests pass a fake one)."""

    def __init__(
        self,
        shop: Shop,
        channels: Mapping[str, Channel],
        *,
        policy: MessagingPolicy | None = None,
        retry: RetryPolicy | None = None,
        lease: timedelta = timedelta(minutes=5),
        batch: int = 1000,
        concurrency: int = 4,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Any] = asyncio.sleep,
        seed: int | None = None,
        progress: Callable[[Mapping[str, int]], None] | None = None,
    ) -> None:
        self.shop = shop
        self.channels = dict(channels)
        self.policy = policy or shop.messaging_policy
        self.retry = retry or RetryPolicy()
        self.lease = lease
        self.batch = batch
        self.concurrency = concurrency
        self.clock = clock
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.claim_id = uuid.uuid4().hex
        self.store = shop.source.campaign_store()
        seconds = lambda: (self.clock() - _EPOCH).total_seconds()  # noqa: E731 - the dispatcher's own clock
        self._limits = {id(c): _RateLimit(c.rate_per_second, seconds, sleep) for c in self.channels.values()}
        self.outcomes: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        #: called with the outcomes so far after every settled batch (a progress bar)
        self.progress = progress

    # ----------------------------------------------------------------- running
    async def run(self, *, drain: bool = True, max_rounds: int = 10_000) -> DispatchReport:
        """Rounds until nothing is due; with ``drain``, also waits for retries and deferrals to come due
        (until none is left in the ledger)."""
        rounds = 0
        while rounds < max_rounds:
            rounds += 1
            worked = await self.round()
            if worked:
                continue
            waiting = self.store.sends(states=("queued", "retry", "inflight"))
            if not drain or not waiting:
                break
            now = self.clock()
            soonest = min((r.lease_until or now) if r.state == "inflight" else r.next_at for r in waiting)
            await self.sleep(max(0.01, (soonest - now).total_seconds()))
        remaining = len(self.store.sends(states=("queued", "retry", "inflight")))
        return DispatchReport(rounds=rounds, outcomes=dict(self.outcomes), events=dict(self.events), remaining=remaining)

    async def round(self) -> bool:
        """One round; whether it found anything to do."""
        now = self.clock()
        self.store.enqueue_due(now)
        recovered = await self.recover(now)
        due = self.store.due_sends(now, self.batch)
        if not due:
            return recovered
        claimed = self.store.claim([r.key for r in due], self.claim_id, now + self.lease, now)
        if claimed:
            await self.deliver(claimed, now)
        return True

    # ---------------------------------------------------------------- recovery
    async def recover(self, now: datetime) -> bool:
        expired = self.store.expired_inflight(now)
        if not expired:
            return False
        rows = self.store.claim([r.key for r in expired], self.claim_id, now + self.lease, now, expired=True)
        outbox = self.store.outbox_by_keys([r.key for r in rows])
        settled: list[SendRow] = []
        events: list[dict[str, Any]] = []
        by_channel: dict[int, list[tuple[SendRow, Message, Channel]]] = defaultdict(list)
        for row in rows:
            message, channel, problem = self.message(row, outbox.get(row.key))
            if message is None or channel is None:
                settled.append(self.reject(row, outbox.get(row.key), problem, now, events))
                continue
            by_channel[id(channel)].append((row, message, channel))
        for group in by_channel.values():
            channel = group[0][2]
            try:
                answers = await channel.reconcile([m for _, m, _ in group])
            except Exception as error:
                answers = [None] * len(group)
                problem = f"{type(error).__name__}: {error}"
            else:
                problem = ""
            for (row, message, chan), answer in zip(group, answers, strict=True):
                if answer is None and chan.deduplicates:
                    answer = Transient("outcome unknown after a crash; the provider drops repeated keys", code="resend")
                if answer is None:
                    reason = "outcome unknown: the dispatcher stopped while sending and the provider cannot tell; not resent"
                    settled.append(self.final(row, "unknown", now, reason=f"{reason}{'; ' + problem if problem else ''}"))
                    events.append(self.event("message_unknown", row, outbox.get(row.key), message, now, reason=reason))
                    continue
                settled.append(self.apply(row, outbox.get(row.key), message, answer, now, events, recovering=True))
        self.store.settle(settled)
        self.emit(events)
        return True

    # ---------------------------------------------------------------- delivery
    def message(self, row: SendRow, outbox: OutboxRow | None) -> tuple[Message | None, Channel | None, str]:
        if outbox is None:
            return None, None, "the planned message is not in the outbox"
        chain = outbox.chain
        if row.chain_index >= len(chain):
            return None, None, "no channel left in the chain"
        item = chain[row.chain_index]
        channel = self.channels.get(item["channel"])
        message = Message.from_rendered(
            item, key=row.key, attempt=max(1, row.attempts), customer_id=row.customer_id,
            campaign_id=row.campaign_id, purpose=outbox.purpose,
        )
        if channel is None:
            return message, None, f"no channel is configured for {item['channel']!r} (configured: {sorted(self.channels)})"
        return message, channel, ""

    async def deliver(self, rows: Sequence[SendRow], now: datetime) -> None:
        outbox = self.store.outbox_by_keys([r.key for r in rows])
        checks = self.recheck(rows, outbox, now)
        settled: list[SendRow] = []
        events: list[dict[str, Any]] = []
        groups: dict[int, list[tuple[SendRow, Message]]] = defaultdict(list)
        for row in rows:
            planned = outbox.get(row.key)
            message, channel, problem = self.message(row, planned)
            if message is None or channel is None:
                settled.append(self.reject(row, planned, problem, now, events, message=message))
                continue
            blocked, later = checks.get(row.key, (None, None))
            if later is not None:  # quiet hours now: wait, without counting an attempt
                settled.append(row._replace(state="retry", attempts=row.attempts - 1, next_at=later, lease_until=None,
                                            claim="", reason="deferred: quiet hours", updated_at=now))
                self.outcomes["deferred"] += 1
                continue
            problems = [blocked] if blocked else channel.validate(message)
            if problems:
                settled.append(self.apply(row, planned, message, Rejected("; ".join(problems), code="shopcrm"), now, events))
                continue
            groups[id(channel)].append((row, message))
        self.store.settle(settled)
        self.emit(events)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def send(channel: Channel, part: list[tuple[SendRow, Message]]) -> None:
            async with semaphore:
                await self._limits[id(channel)].take(len(part))
                try:
                    results: list[SendResult] = await channel.send([m for _, m in part])
                    if len(results) != len(part):
                        raise RuntimeError(f"{type(channel).__name__}.send returned {len(results)} results for {len(part)} messages")
                except Exception as error:
                    results = [Transient(f"{type(error).__name__}: {error}", code="exception")] * len(part)
                done: list[SendRow] = []
                happened: list[dict[str, Any]] = []
                when = self.clock()
                for (row, message), result in zip(part, results, strict=True):
                    done.append(self.apply(row, outbox.get(row.key), message, result, when, happened))
                self.store.settle(done)
                self.emit(happened)
                if self.progress is not None:
                    self.progress(self.outcomes)

        tasks = []
        for key, part in groups.items():
            channel = next(c for c in self.channels.values() if id(c) == key)
            size = max(1, channel.batch_size)
            tasks += [send(channel, part[i:i + size]) for i in range(0, len(part), size)]
        await asyncio.gather(*tasks)

    def recheck(self, rows: Sequence[SendRow], outbox: Mapping[str, OutboxRow], now: datetime) -> dict[str, tuple[str | None, datetime | None]]:
        """Consent and clock, just before sending advertising: (why blocked, or when allowed if not now)."""
        ads = [r for r in rows if (o := outbox.get(r.key)) is not None and o.purpose == "advertising"]
        if not ads:
            return {}
        from shopcrm.ticking import _Reader, apply_opt_outs

        reader = _Reader(self.shop, now)
        columns = [c for c in reader.schema.customers.columns if c in self.shop.recipient_columns.names()]
        data = reader.customer_columns(list(dict.fromkeys(["customer_id", *columns])), sorted({r.customer_id for r in ads}, key=repr))
        people = {p.customer_id: p for p in self.shop.recipient_columns.recipients(data, now=now)}
        apply_opt_outs(self.shop, people, now)
        out: dict[str, tuple[str | None, datetime | None]] = {}
        for row in ads:
            planned = outbox[row.key]
            chain = planned.chain
            if row.chain_index >= len(chain):
                continue
            channel = chain[row.chain_index]["channel"]
            person = people.get(row.customer_id)
            if person is None:
                out[row.key] = ("the customer is no longer in the customers table", None)
                continue
            reason = consent_block(channel, person, advertising=True, policy=self.policy, now=now)
            if reason is not None:
                out[row.key] = (f"{reason} at send time", None)
                continue
            later = allowed_from(now, (channel,), person, person.timezone or self.policy.timezone, True, self.policy)
            if later > now:
                out[row.key] = (None, later)
        return out

    # ------------------------------------------------------- delivery reports
    def record_deliveries(self, reports: Sequence[DeliveryReport]) -> dict[str, int]:
        """Apply providers' delivery reports to messages they took: ``delivered``, or, when the phone was not
        reached, the next channel of the chain (``message_fallback``) or ``failed``.  A report for a message
        whose outcome a crash left ``unknown`` settles it.  Repeated reports (providers resend webhooks) and
        reports of messages shopcrm did not send change nothing.  AlimTalk failures do not fall back here: the
        provider's own SMS substitution already answers them (``substitute_sms``), and a second SMS would be
        one too many.  Returns what changed, counted."""
        now = self.clock()
        latest = {r.key: r for r in reports}
        rows = {r.key: r for r in self.store.sends(keys=sorted(latest)) if r.state in ("sent", "unknown")}
        outbox = self.store.outbox_by_keys(sorted(rows))
        settled: list[SendRow] = []
        events: list[dict[str, Any]] = []
        changed: Counter[str] = Counter()
        for key, row in rows.items():
            report = latest[key]
            planned = outbox.get(key)
            chain = planned.chain if planned is not None else []
            item = chain[row.chain_index] if row.chain_index < len(chain) else {}
            message = Message.from_rendered(item, key=key, customer_id=row.customer_id, campaign_id=row.campaign_id,
                                            purpose=planned.purpose if planned else "") if item else None
            when = report.at or now
            if report.delivered:
                cost = row.cost if row.state == "sent" else self.policy.price(str(item.get("kind", "")))
                settled.append(row._replace(state="delivered", provider_id=report.provider_id or row.provider_id,
                                            cost=cost, reason="", code=report.code, updated_at=now))
                events.append(self.event("message_delivered", row, planned, message, when, provider_id=report.provider_id,
                                         code=report.code))
                changed["delivered"] += 1
                continue
            reason = f"not delivered: {report.code} {report.reason}".strip()
            if item.get("kind") == "alimtalk":
                settled.append(self.final(row, "failed", now, code=report.code, reason=f"{reason} (the provider's SMS substitution answers it)"))
                events.append(self.event("message_failed", row, planned, message, when, reason=reason, code=report.code))
            else:
                settled.append(self.reject(row, planned, reason, now, events, message=message, code=report.code))
            changed[settled[-1].state if settled[-1].state != "queued" else "fallback"] += 1
        self.store.settle(settled)
        self.emit(events)
        return dict(changed)

    # ------------------------------------------------------------- outcomes
    def apply(
        self, row: SendRow, planned: OutboxRow | None, message: Message, result: SendResult, now: datetime,
        events: list[dict[str, Any]], *, recovering: bool = False,
    ) -> SendRow:
        if isinstance(result, Accepted):
            cost = result.cost if result.cost is not None else self.policy.price(message.kind)
            events.append(self.event("message_sent", row, planned, message, now, cost=cost, provider_id=result.provider_id))
            self.outcomes["sent"] += 1
            return self.final(row, "sent", now, provider_id=result.provider_id, cost=cost, code="", reason="")
        if isinstance(result, Transient) and (recovering or row.attempts < self.retry.max_attempts):
            wait = self.retry.delay(row.attempts, result.retry_after, self.rng)
            self.outcomes["retry"] += 1
            attempts = row.attempts - 1 if recovering and result.code == "resend" else row.attempts
            return row._replace(state="retry", attempts=max(0, attempts), next_at=now + wait, lease_until=None, claim="",
                                code=result.code, reason=result.reason, updated_at=now)
        if isinstance(result, Transient):
            result = Rejected(f"gave up after {row.attempts} attempts: {result.reason}", code=result.code)
        assert isinstance(result, Rejected)
        group = CONSENT_GROUP.get(message.channel)
        if result.opted_out and group is not None:  # K3: no more advertising on this channel's consent, at once
            self.store.add_opt_outs([(row.customer_id, group, now, f"{message.channel}: {result.reason}")])
        return self.reject(row, planned, f"{result.reason}", now, events, message=message, code=result.code)

    def reject(
        self, row: SendRow, planned: OutboxRow | None, reason: str, now: datetime, events: list[dict[str, Any]],
        *, message: Message | None = None, code: str = "",
    ) -> SendRow:
        chain = planned.chain if planned is not None else []
        if row.chain_index + 1 < len(chain):
            events.append(self.event("message_fallback", row, planned, message, now, reason=reason, code=code,
                                     next_channel=chain[row.chain_index + 1]["channel"]))
            self.outcomes["fallback"] += 1
            return row._replace(state="queued", chain_index=row.chain_index + 1, attempts=0, next_at=now, lease_until=None,
                                claim="", code=code, reason=reason, updated_at=now)
        events.append(self.event("message_failed", row, planned, message, now, reason=reason, code=code))
        return self.final(row, "failed", now, code=code, reason=reason)

    def final(self, row: SendRow, state: str, now: datetime, **changes: Any) -> SendRow:
        if state != "sent":
            self.outcomes[state] += 1
        return row._replace(state=state, lease_until=None, claim="", updated_at=now, **changes)

    def event(
        self, name: str, row: SendRow, planned: OutboxRow | None, message: Message | None, now: datetime, **fields: Any,
    ) -> dict[str, Any]:
        self.events[name] += 1
        return {
            "customer_id": row.customer_id, "event": name, "ts": now, "message_key": row.key,
            "campaign_id": row.campaign_id, "channel": message.channel if message else "",
            "kind": message.kind if message else "", "attempt": row.attempts,
            "purpose": planned.purpose if planned else "", "cost": float(fields.pop("cost", 0.0) or 0.0),
            "provider_id": str(fields.pop("provider_id", "") or ""), "reason": str(fields.pop("reason", "") or ""),
            "code": str(fields.pop("code", "") or ""), "next_channel": str(fields.pop("next_channel", "") or ""),
        }

    def emit(self, events: Sequence[dict[str, Any]]) -> None:
        """Outcome events into the shop's events table (the embedded store), or ``shopcrm_message_events`` beside a
        shop's own tables."""
        if not events:
            return
        from shopcrm.sources.duckdb_store import DuckDBSource

        if isinstance(self.shop.source, DuckDBSource):
            self.shop.load_events(list(events))
        else:  # the shop's own events table is not ours to write: a table of ours beside it
            self.store.add_message_events(events)
