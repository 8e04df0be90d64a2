"""The dispatcher: delivers the outbox's planned messages through channels, each key at most once.

One round:

1. **queue** every planned message whose send time has come (one ``INSERT ... SELECT`` into the send ledger; a
   second dispatcher queueing the same rows at once is "already queued", not an error);
2. **recover** rows whose lease ran out: a row ``claimed`` but never handed to a channel goes straight back to
   the queue; a row ``inflight`` (handed over: the provider may have it) is settled by asking the channel
   (:meth:`Channel.reconcile`): taken -> ``sent``, refused -> the chain moves on, confirmed not taken -> sent
   again, the provider unreachable -> asked again later; only where the provider cannot tell at all does it end
   ``unknown`` (never resent), unless the provider drops repeated keys (``deduplicates``);
3. read the due rows, group them per channel into the channel's batches, and for each batch, at most
   ``concurrency`` at a time: wait for the channel's rate limit, **claim** exactly that batch (an atomic
   ``UPDATE``; a row another dispatcher took first is simply not ours), re-check each message just before it
   leaves (still within the campaign's ``max_delay``; for advertising, the customer's consent now and the clock:
   quiet hours defer, never send), let the channel **begin** the batch and record its reference (Solapi's group
   id) in the ledger while **renewing the lease** (``hand_over``: only rows still held go on), then **send**;
4. **settle** each batch in ONE transaction with its outcome events: accepted -> ``sent`` (the provider's id and
   the price of the channel and kind that carried it: the provider's reported charge, else the policy's table,
   recorded as ``priced_as`` and ``price_source``; see docs/channels.md "Cost"); not taken (:class:`Transient`) -> ``retry`` after an exponential backoff with jitter (or the provider's
   ``Retry-After``), until ``max_attempts``; may have been taken (:class:`Ambiguous`) -> asked at once with
   ``reconcile`` (never resent on a channel that does not deduplicate); rejected -> the next channel of the chain
   (``message_fallback``) or ``failed``.  Only rows this dispatcher still holds are written.  The events
   (``message_sent``, ``message_failed``, ``message_fallback``, ``message_expired``, ``message_unknown``) go to
   the shop's events (the embedded store) or ``shopcrm_message_events``, where segments and profiles read them.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from shopcrm.campaigns import Campaign, MessagingPolicy
from shopcrm.campaigns._friendtalk import brand_message_for
from shopcrm.campaigns._models import stored_campaign
from shopcrm.campaigns._planner import allowed_from, consent_block, needs_recheck
from shopcrm.campaigns._policy import CONSENT_GROUP
from shopcrm.channels import (
    Accepted,
    Ambiguous,
    Channel,
    DeliveryReport,
    Message,
    Rejected,
    SendResult,
    Transient,
)
from shopcrm.sources._campaign_store import OutboxRow, SendRow
from shopcrm.sources._transactions import is_contention

if TYPE_CHECKING:
    from shopcrm._view import ShopView

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


def _channels_by_name(channels: Mapping[str, Channel]) -> dict[str, Channel]:
    """The dispatcher's channels by the chain name they carry; ``friendtalk`` is ``brand_message`` (FriendTalk ended)."""
    named: dict[str, Channel] = {}
    for name, channel in channels.items():
        carried = brand_message_for(name, "the dispatcher's channels", stacklevel=4)
        if carried in named:
            raise ValueError(f"the dispatcher's channels name {carried!r} twice ('friendtalk' is read as 'brand_message', "
                             "FriendTalk's replacement); give one channel for 'brand_message'")
        named[carried] = channel
    return named


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


#: the states a dispatcher may still act on (it waits for them when draining)
_WAITING = ("queued", "retry", "claimed", "inflight")


@attrs.define
class _Settlement:
    """What one batch's outcomes write, in one transaction."""

    rows: list[SendRow] = attrs.field(factory=list)
    events: list[dict[str, Any]] = attrs.field(factory=list)
    opt_outs: list[tuple[Any, str, datetime, str]] = attrs.field(factory=list)


class Dispatcher:
    """Delivers a shop's planned messages.  ``channels`` maps each chain channel (``sms``, ``alimtalk``,
    ``brand_message``, ``email``, ``push``, ``webhook``) to the :class:`Channel` that carries it (one
    provider may carry several).  ``batch`` due rows are read per round; each channel batch is claimed only
    when it is about to be sent, so a crash strands at most ``concurrency`` batches.  ``lease`` must be longer
    than one batch's send (the channel's timeout).  ``clock`` returns naive UTC now (tests pass a fake one).
    ``max_checks`` bounds how often the provider is asked about one ambiguous message before it ends ``unknown``.
    ``look_every`` is how often a busy dispatcher searches the outbox for newly due messages and the ledger for
    expired leases (an idle one searches every round)."""

    def __init__(
        self,
        shop: ShopView,
        channels: Mapping[str, Channel],
        *,
        policy: MessagingPolicy | None = None,
        retry: RetryPolicy | None = None,
        lease: timedelta = timedelta(minutes=5),
        batch: int = 1000,
        concurrency: int = 4,
        max_checks: int = 12,
        look_every: timedelta = timedelta(seconds=10),
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Any] = asyncio.sleep,
        seed: int | None = None,
        progress: Callable[[Mapping[str, int]], None] | bool | None = None,
    ) -> None:
        self.shop = shop
        self.channels = _channels_by_name(channels)
        self.policy = policy or shop.messaging_policy
        self.retry = retry or RetryPolicy()
        self.lease = lease
        self.batch = batch
        self.concurrency = concurrency
        self.max_checks = max_checks
        self.look_every = look_every
        self._looked_at: datetime | None = None
        self.clock = clock
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.claim_id = uuid.uuid4().hex
        self.store = shop.source.campaign_store()
        seconds = lambda: (self.clock() - _EPOCH).total_seconds()  # noqa: E731 - the dispatcher's own clock
        self._limits = {id(c): _RateLimit(c.rate_per_second, seconds, sleep) for c in self.channels.values()}
        self._max_delays: dict[str, timedelta] = {}
        self._chains: dict[str, list[dict[str, Any]]] = {}  # this round's parsed chains, by key
        self.outcomes: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        #: called with the outcomes so far after every settled batch (a progress bar); ``True`` draws a tqdm bar
        #: of the settled messages on stderr
        self.progress: Callable[[Mapping[str, int]], None] | None = None
        if progress is True:
            from shopcrm._progress import outcomes_bar

            self.progress = outcomes_bar()
        elif callable(progress):
            self.progress = progress

    # ----------------------------------------------------------------- running
    async def run(self, *, drain: bool = True, max_rounds: int = 10_000) -> DispatchReport:
        """Rounds until nothing is due; with ``drain``, also waits for retries, deferrals and messages whose
        outcome is being asked of the provider (until none is left in the ledger)."""
        rounds = 0
        while rounds < max_rounds:
            rounds += 1
            worked = await self.round()
            if worked:
                continue
            waiting = self.store.sends(states=_WAITING)
            if not drain or not waiting:
                break
            now = self.clock()
            soonest = min((r.lease_until or now) if r.state in ("claimed", "inflight") else r.next_at for r in waiting)
            await self.sleep(max(0.01, (soonest - now).total_seconds()))
        remaining = len(self.store.sends(states=_WAITING))
        close = getattr(self.progress, "close", None)
        if close is not None:
            close()  # a bar ends with the run (a plain callback has nothing to close)
        return DispatchReport(rounds=rounds, outcomes=dict(self.outcomes), events=dict(self.events), remaining=remaining)

    async def round(self) -> bool:
        """One round; whether it found anything to do.  The outbox is searched for newly due messages, and
        expired leases for rows to recover, every ``look_every`` while there is work, and whenever the queue
        runs dry (both scan whole tables)."""
        now = self.clock()
        looked = self._looked_at is not None and now - self._looked_at < self.look_every
        recovered = False if looked else await self._look(now)
        due = self.store.due_sends(now, self.batch)
        if not due and looked:
            recovered = await self._look(now)
            due = self.store.due_sends(now, self.batch)
        if not due:
            return recovered
        outbox = self.store.outbox_by_keys([r.key for r in due])
        self._chains = {key: planned.chain for key, planned in outbox.items()}
        groups: dict[int, list[SendRow]] = defaultdict(list)
        channels: dict[int, Channel | None] = {}
        for row in due:
            chain = self._chains.get(row.key) or []
            channel = self.channels.get(chain[row.chain_index]["channel"]) if row.chain_index < len(chain) else None
            groups[id(channel)].append(row)
            channels[id(channel)] = channel
        semaphore = asyncio.Semaphore(max(1, self.concurrency))
        tasks = []
        for key, rows in groups.items():
            channel = channels[key]
            size = max(1, channel.batch_size) if channel is not None else len(rows)
            tasks += [self._batch(channel, rows[i:i + size], outbox, semaphore) for i in range(0, len(rows), size)]
        await asyncio.gather(*tasks)
        return True

    async def _look(self, now: datetime) -> bool:
        self._looked_at = now
        self.store.enqueue_due(now)
        return await self.recover(now)

    # ---------------------------------------------------------------- delivery
    def message(
        self, row: SendRow, outbox: OutboxRow | None, chain: list[dict[str, Any]] | None = None,
    ) -> tuple[Message | None, Channel | None, str]:
        """The message of ``row``'s current channel and the channel that carries it, or why there is none
        (``chain``: the outbox row's chain, when the caller parsed it already)."""
        if outbox is None:
            return None, None, "the planned message is not in the outbox"
        chain = outbox.chain if chain is None else chain
        if row.chain_index >= len(chain):
            return None, None, "no channel left in the chain"
        item = chain[row.chain_index]
        channel = self.channels.get(item["channel"])
        message = Message.from_rendered(
            item, key=row.key, attempt=max(1, row.attempts), customer_id=row.customer_id,
            campaign_id=row.campaign_id, purpose=outbox.purpose, batch_ref=row.batch_ref,
        )
        if channel is None:
            return message, None, f"no channel is configured for {item['channel']!r} (configured: {sorted(self.channels)})"
        return message, channel, ""

    async def _batch(
        self, channel: Channel | None, rows: Sequence[SendRow], outbox: Mapping[str, OutboxRow], semaphore: asyncio.Semaphore,
    ) -> None:
        """Claim, check, begin, hand over, send and settle one channel batch.  A channel that prepares batches at
        the provider (``begin``) prepares first (nothing is sent by it), so that the claim records the reference and
        hands the rows over in one commit."""
        async with semaphore:
            if channel is not None:
                await self._limits[id(channel)].take(len(rows))
            begun: str | None = None
            failure: Exception | None = None
            if channel is not None and type(channel).begin is not Channel.begin:
                try:
                    begun = await self._begin(channel, [m for r in rows if (m := self.message(
                        r, outbox.get(r.key), self._chains.get(r.key))[0]) is not None])
                except Exception as error:  # nothing was sent: the batch is claimed below and waits
                    failure = error
            now = self.clock()
            held = self.store.claim([r.key for r in rows], self.claim_id, now + self.lease, now, batch_ref=begun)
            if not held:
                return
            if failure is not None:
                self._not_begun(held, outbox, failure)
                return
            settlement = _Settlement()
            checks = self.recheck(held, outbox, now)
            ready: list[tuple[SendRow, Message]] = []
            for row in held:
                planned = outbox.get(row.key)
                message, chosen, problem = self.message(row, planned, self._chains.get(row.key))
                if message is None or chosen is None:
                    settlement.rows.append(self.reject(row, planned, problem, now, settlement.events, message=message))
                    continue
                blocked, later, expired = checks.get(row.key, (None, None, None))
                if expired is not None:
                    settlement.rows.append(self.final(row, "expired", now, reason=expired, code="max_delay"))
                    settlement.events.append(self.event("message_expired", row, planned, message, now, reason=expired))
                    continue
                if later is not None:  # outside its sending hours now: wait, without counting an attempt
                    settlement.rows.append(row._replace(
                        state="retry", attempts=row.attempts - 1, next_at=later, lease_until=None, claim="",
                        reason="deferred: outside its sending hours", updated_at=now))
                    self.outcomes["deferred"] += 1
                    continue
                problems = [blocked] if blocked else chosen.validate(message)
                if problems:
                    self.apply(row, planned, message, Rejected("; ".join(problems), code="shopcrm"), now, settlement)
                    continue
                ready.append((row, message))
            if settlement.rows:
                self.commit(settlement)
            if not ready or channel is None:
                return
            await self._send(channel, ready, outbox, begun)

    async def _begin(self, channel: Channel, messages: Sequence[Message]) -> str:
        ref = await channel.begin(messages)
        if not isinstance(ref, str):
            raise TypeError(f"{type(channel).__name__}.begin returned {type(ref).__name__}, not a str")
        return ref

    def _not_begun(self, rows: Sequence[SendRow], outbox: Mapping[str, OutboxRow], error: Exception) -> None:
        """The provider could not prepare the batch: nothing was sent, the rows wait and go again."""
        now = self.clock()
        settlement = _Settlement()
        for row in rows:
            message, _, _ = self.message(row, outbox.get(row.key), self._chains.get(row.key))
            if message is not None:
                self.apply(row, outbox.get(row.key), message, Transient(f"{type(error).__name__}: {error}", code="begin"),
                           now, settlement)
        self.commit(settlement)

    async def _send(
        self, channel: Channel, ready: list[tuple[SendRow, Message]], outbox: Mapping[str, OutboxRow], begun: str | None,
    ) -> None:
        if begun is not None:  # prepared and handed over with the claim
            part = ready
        else:
            try:
                ref = await self._begin(channel, [m for _, m in ready])
            except Exception as error:  # nothing was sent: the whole batch waits and goes again
                self._not_begun([r for r, _ in ready], outbox, error)
                return
            now = self.clock()
            held = set(self.store.hand_over([r.key for r, _ in ready], self.claim_id, ref, now + self.lease, now))
            part = [(row._replace(state="inflight", batch_ref=ref, lease_until=now + self.lease),
                     attrs.evolve(message, batch_ref=ref)) for row, message in ready if row.key in held]
        if not part:
            return
        results: list[SendResult | None]
        try:
            results = list(await channel.send([m for _, m in part]))
            if len(results) != len(part):
                raise RuntimeError(f"{type(channel).__name__}.send returned {len(results)} results for {len(part)} messages")
        except Exception as error:  # the request may have gone out: the provider may have the messages
            results = [Ambiguous(f"{type(error).__name__}: {error}", code="exception")] * len(part)
        unsure = [i for i, r in enumerate(results) if isinstance(r, Ambiguous) and not channel.deduplicates]
        if unsure:
            answers = await self._reconcile(channel, [part[i][1] for i in unsure])
            for i, answer in zip(unsure, answers, strict=True):
                results[i] = answer
        when = self.clock()
        settlement = _Settlement()
        for (row, message), result in zip(part, results, strict=True):
            self.apply(row, outbox.get(row.key), message, result, when, settlement)
        self.commit(settlement)
        if self.progress is not None:
            self.progress(self.outcomes)

    async def _reconcile(self, channel: Channel, messages: Sequence[Message]) -> list[SendResult | None]:
        try:
            answers = list(await channel.reconcile(messages))
            if len(answers) != len(messages):
                raise RuntimeError(f"{type(channel).__name__}.reconcile returned {len(answers)} answers for {len(messages)}")
        except Exception as error:
            return [Ambiguous(f"could not ask the provider: {type(error).__name__}: {error}", code="reconcile")] * len(messages)
        return answers

    def commit(self, settlement: _Settlement) -> None:
        """Write a batch's outcomes, with their events and opt-outs, in one transaction; only rows this
        dispatcher still holds are written (a row whose lease ran out belongs to whoever took it over)."""
        self._settle(settlement, held_by=self.claim_id)

    def _settle(self, settlement: _Settlement, **where: Any) -> set[str]:
        """:meth:`CampaignStore.settle`, written again when the database refused it because another transaction
        wrote the same table at once (DuckDB refuses an insert into a table whose columns an open transaction
        changed, a deadlock, a lock wait that ran out): it was rolled back, and a settle only writes the rows still
        held, so writing it again is safe.  It waits 0.05 s, then twice as long each time (the other transaction
        ends meanwhile); the sixth refusal, after 1.55 s, is raised (the leases bring the rows back)."""
        for attempt in range(6):
            try:
                return self.store.settle(settlement.rows, settlement.events, settlement.opt_outs, **where)
            except Exception as error:
                if attempt == 5 or not is_contention(error):
                    raise
                time.sleep(0.05 * 2 ** attempt)  # wall-clock time (not the injected clock): the other transaction ends in it
        raise AssertionError("unreachable")  # pragma: no cover

    def _max_delay(self, campaign_id: str) -> timedelta:
        if campaign_id not in self._max_delays:  # read the campaigns once per campaign this dispatcher meets
            for found, document, _ in self.store.campaigns():
                self._max_delays[found] = stored_campaign(document).max_delay
            # a deleted campaign's messages keep the default allowance (remembered: not read again per batch)
            self._max_delays.setdefault(campaign_id, Campaign.model_fields["max_delay"].default)
        return self._max_delays[campaign_id]

    def recheck(
        self, rows: Sequence[SendRow], outbox: Mapping[str, OutboxRow], now: datetime,
    ) -> dict[str, tuple[str | None, datetime | None, str | None]]:
        """Just before sending: (why blocked, when allowed if not now, why expired) per key that is not clear to
        go.  Every message must still be within its campaign's ``max_delay`` of its due time (or of the later instant
        its plan deferred it to); advertising (and
        every Brand Message, which reaches channel friends only) must still have the customer's consent and be
        within its sending hours."""
        out: dict[str, tuple[str | None, datetime | None, str | None]] = {}
        for row in rows:
            planned = outbox.get(row.key)
            if planned is None:
                continue
            allowance = self._max_delay(planned.campaign_id)
            # counted from when the plan let it go: a message the night rule (K4) or Kakao's hours deferred to 08:00
            # is sent then, not dropped for the deferral (defer, never drop)
            ready = max(planned.due_at, planned.send_at) if planned.send_at is not None else planned.due_at
            if now > ready + allowance:
                since = "came due" if ready == planned.due_at else f"came due at {planned.due_at:%Y-%m-%d %H:%M} UTC, planned"
                out[row.key] = (None, None, f"{since} at {ready:%Y-%m-%d %H:%M} UTC; the campaign's max_delay "
                                            f"({allowance}) passed before it could be sent")
        checked = []
        for row in rows:
            planned = outbox.get(row.key)
            chain = self._chains.get(row.key) or (planned.chain if planned is not None else [])
            if row.key in out or planned is None or row.chain_index >= len(chain):
                continue
            channel = chain[row.chain_index]["channel"]
            if needs_recheck(channel, planned.purpose):
                checked.append((row, planned, channel))
        if not checked:
            return out
        from shopcrm.sources._reads import EngineReader
        from shopcrm.ticking import apply_opt_outs

        reader = EngineReader(self.shop.source, now, lifecycle_policy=self.shop.lifecycle_policy)
        columns = [c for c in reader.schema.customers.columns if c in self.shop.recipient_columns.names()]
        wanted = sorted({r.customer_id for r, _, _ in checked}, key=repr)
        data = reader.customer_columns(list(dict.fromkeys(["customer_id", *columns])), wanted)
        people = {p.customer_id: p for p in self.shop.recipient_columns.recipients(data, now=now)}
        apply_opt_outs(self.shop, people, now)
        for row, planned, channel in checked:
            person = people.get(row.customer_id)
            if person is None:
                out[row.key] = ("the customer is no longer in the customers table", None, None)
                continue
            advertising = planned.purpose != "informational"
            reason = consent_block(channel, person, advertising=advertising, policy=self.policy, now=now)
            if reason is not None:
                out[row.key] = (f"{reason} at send time", None, None)
                continue
            later = allowed_from(now, (channel,), person, person.timezone or self.policy.timezone, advertising, self.policy)
            if later > now:
                out[row.key] = (None, later, None)
        return out

    # ---------------------------------------------------------------- recovery
    async def recover(self, now: datetime) -> bool:
        """Settle rows whose lease ran out: back to the queue when they never reached a channel, else asked of
        the channel."""
        expired = self.store.expired_leases(now)
        if not expired:
            return False
        rows = self.store.claim([r.key for r in expired], self.claim_id, now + self.lease, now, expired=True)
        settlement = _Settlement()
        outbox = self.store.outbox_by_keys([r.key for r in rows])
        by_channel: dict[int, list[tuple[SendRow, Message, Channel]]] = defaultdict(list)
        for row in rows:
            if row.state == "claimed":  # never handed to a channel: nothing went out
                settlement.rows.append(row._replace(state="retry", attempts=max(0, row.attempts - 1), next_at=now,
                                                    lease_until=None, claim="", updated_at=now,
                                                    reason="claimed by a dispatcher that stopped before sending"))
                continue
            message, channel, problem = self.message(row, outbox.get(row.key))
            if message is None or channel is None:
                reason = f"outcome unknown and cannot be asked: {problem}; not resent"
                settlement.rows.append(self.final(row, "unknown", now, reason=reason))
                settlement.events.append(self.event("message_unknown", row, outbox.get(row.key), message, now, reason=reason))
                continue
            by_channel[id(channel)].append((row, message, channel))
        for group in by_channel.values():
            channel = group[0][2]
            answers = await self._reconcile(channel, [m for _, m, _ in group])
            when = self.clock()
            for (row, message, _), answer in zip(group, answers, strict=True):
                self.apply(row, outbox.get(row.key), message, answer, when, settlement, recovering=True)
        self.commit(settlement)
        return True

    # ------------------------------------------------------- delivery reports
    def record_deliveries(self, reports: Sequence[DeliveryReport]) -> dict[str, int]:
        """Apply providers' delivery reports to messages they took: ``delivered``, or, when the phone was not
        reached, the next channel of the chain (``message_fallback``) or ``failed``.

        A report counts only when it names the provider's message id recorded when the provider took the
        message (a made-up or stale id is ignored, counted as ``unmatched``).  A message whose outcome a crash
        left ``unknown`` has no id to match: a report that it was *delivered* settles it, a failure report
        changes nothing (it cannot be verified, and a fallback would be a second text).  Repeated reports
        (providers resend webhooks) and reports of messages shopcrm did not send change nothing.  AlimTalk
        failures do not fall back here: the provider's own SMS substitution already answers them
        (``substitute_sms``).  A report that the recipient opted out or blocks the sender (``opted_out``: a carrier's
        spam block) records the opt-out with the outcome, as a refused send does.  Returns what changed, counted."""
        now = self.clock()
        latest = {r.key: r for r in reports}
        rows = {r.key: r for r in self.store.sends(keys=sorted(latest)) if r.state in ("sent", "unknown")}
        outbox = self.store.outbox_by_keys(sorted(rows))
        settlement = _Settlement()
        changed: Counter[str] = Counter()
        for key, row in rows.items():
            report = latest[key]
            if row.state == "sent" and not (row.provider_id and report.provider_id == row.provider_id):
                changed["unmatched"] += 1
                continue
            if row.state == "unknown" and not report.delivered:
                changed["unmatched"] += 1
                continue
            planned = outbox.get(key)
            chain = planned.chain if planned is not None else []
            item = chain[row.chain_index] if row.chain_index < len(chain) else {}
            message = Message.from_rendered(item, key=key, customer_id=row.customer_id, campaign_id=row.campaign_id,
                                            purpose=planned.purpose if planned else "") if item else None
            when = report.at or now
            if report.delivered:
                cost, priced_as, source = row.cost, row.priced_as, row.price_source
                channel, kind = row.channel, row.kind
                if row.state != "sent" and message is not None:  # an unknown outcome now known taken: price it
                    price, priced_as, source = self.price(message, None)
                    cost, channel, kind = row.cost + price, message.channel, message.kind
                settlement.rows.append(row._replace(state="delivered", provider_id=report.provider_id or row.provider_id,
                                                    cost=cost, reason="", code=report.code, updated_at=now, channel=channel,
                                                    kind=kind, priced_as=priced_as, price_source=source))
                settlement.events.append(self.event("message_delivered", row, planned, message, when,
                                                    provider_id=report.provider_id, code=report.code, cost=cost,
                                                    priced_as=priced_as, price_source=source))
                changed["delivered"] += 1
                continue
            reason = f"not delivered: {report.code} {report.reason}".strip()
            group = CONSENT_GROUP.get(message.channel) if message is not None else None
            if report.opted_out and message is not None and group is not None:  # K3, as a refused send: with the outcome
                settlement.opt_outs.append((row.customer_id, group, when, f"{message.channel}: {reason}"))
            if item.get("kind") == "alimtalk":
                settlement.rows.append(self.final(row, "failed", now, code=report.code,
                                                  reason=f"{reason} (the provider's SMS substitution answers it)"))
                settlement.events.append(self.event("message_failed", row, planned, message, when, reason=reason, code=report.code))
            else:
                settlement.rows.append(self.reject(row, planned, reason, now, settlement.events, message=message, code=report.code))
            changed[settlement.rows[-1].state if settlement.rows[-1].state != "queued" else "fallback"] += 1
        written = self._settle(settlement, states=("sent", "unknown"))
        lost = len(settlement.rows) - len(written)
        if lost:  # changed by someone else meanwhile: not ours to count
            changed = Counter({k: v for k, v in changed.items() if k == "unmatched"})
            changed["concurrent"] += lost
        return {k: v for k, v in changed.items() if v}

    # ------------------------------------------------------------- outcomes
    def apply(
        self, row: SendRow, planned: OutboxRow | None, message: Message, result: SendResult | None, now: datetime,
        settlement: _Settlement, *, recovering: bool = False,
    ) -> None:
        """Add one message's outcome to ``settlement``."""
        channel = self.channels.get(message.channel)
        if isinstance(result, Ambiguous) and channel is not None and channel.deduplicates:
            result = Transient(f"{result.reason}; the provider drops repeated keys, so it is sent again", code="resend")
        if result is None and channel is not None and channel.deduplicates:
            result = Transient("outcome unknown after a crash; the provider drops repeated keys", code="resend")
        if result is None:
            reason = "outcome unknown: the provider cannot tell whether it took the message; not resent"
            settlement.rows.append(self.final(row, "unknown", now, reason=reason))
            settlement.events.append(self.event("message_unknown", row, planned, message, now, reason=reason))
            return
        if isinstance(result, Ambiguous):
            if row.checks + 1 >= self.max_checks:
                reason = (f"outcome unknown: the provider could not be asked after {row.checks + 1} tries "
                          f"({result.reason}); not resent")
                settlement.rows.append(self.final(row, "unknown", now, reason=reason, checks=row.checks + 1))
                settlement.events.append(self.event("message_unknown", row, planned, message, now, reason=reason))
                return
            # keep it in flight, unclaimed, until the lease below runs out: then recovery asks the provider again
            wait = self.retry.delay(row.checks + 1, None, self.rng) + timedelta(seconds=1)
            self.outcomes["reconciling"] += 1
            settlement.rows.append(row._replace(state="inflight", claim="", lease_until=now + wait, checks=row.checks + 1,
                                                code=result.code or "ambiguous", reason=f"outcome unknown, asking the provider: {result.reason}",
                                                updated_at=now))
            return
        if isinstance(result, Accepted):
            price, priced_as, source = self.price(message, result.cost)
            cost = row.cost + price  # what failed attempts the provider charged for, plus the step that carried it
            settlement.events.append(self.event("message_sent", row, planned, message, now, cost=cost, provider_id=result.provider_id,
                                                priced_as=priced_as, price_source=source))
            self.outcomes["sent"] += 1
            settlement.rows.append(self.final(row, "sent", now, provider_id=result.provider_id, cost=cost, code="", reason="",
                                              channel=message.channel, kind=message.kind, priced_as=priced_as,
                                              price_source=source, sent_at=now))
            return
        if isinstance(result, Transient) and (recovering or row.attempts < self.retry.max_attempts):
            wait = self.retry.delay(row.attempts, result.retry_after, self.rng)
            self.outcomes["retry"] += 1
            attempts = row.attempts - 1 if recovering and result.code == "resend" else row.attempts
            settlement.rows.append(row._replace(state="retry", attempts=max(0, attempts), next_at=now + wait, lease_until=None,
                                                claim="", code=result.code, reason=result.reason, updated_at=now))
            return
        if isinstance(result, Transient):
            result = Rejected(f"gave up after {row.attempts} attempts: {result.reason}", code=result.code)
        group = CONSENT_GROUP.get(message.channel)
        if result.opted_out and group is not None:  # K3: no more advertising on this channel's consent, at once
            settlement.opt_outs.append((row.customer_id, group, now, f"{message.channel}: {result.reason}"))
        if isinstance(result, Rejected) and result.charge:  # a failed attempt the provider charged for (Kakao)
            _, priced_as, _ = self.price(message, result.charge)
            row = row._replace(cost=row.cost + float(result.charge), channel=message.channel, kind=message.kind,
                               priced_as=priced_as, price_source="reported")
        settlement.rows.append(self.reject(row, planned, result.reason, now, settlement.events, message=message, code=result.code))

    def price(self, message: Message, reported: float | None) -> tuple[float, str, str]:
        """The price of ``message`` on the channel and kind carrying it: (price, priced as, source).  The
        provider's ``reported`` charge wins (``reported``); else the messaging policy's table (``table``), a Brand
        Message to a non-friend at the non-friend price (``brand_message:non_friend``)."""
        price, priced_as = self.policy.priced(message.channel, message.kind, friend=message.friend is not False)
        if reported is not None:
            return float(reported), priced_as, "reported"
        return price, priced_as, "table"

    def reject(
        self, row: SendRow, planned: OutboxRow | None, reason: str, now: datetime, events: list[dict[str, Any]],
        *, message: Message | None = None, code: str = "",
    ) -> SendRow:
        chain = (self._chains.get(row.key) or planned.chain) if planned is not None else []
        if row.chain_index + 1 < len(chain):
            events.append(self.event("message_fallback", row, planned, message, now, reason=reason, code=code,
                                     next_channel=chain[row.chain_index + 1]["channel"]))
            self.outcomes["fallback"] += 1
            return row._replace(state="queued", chain_index=row.chain_index + 1, attempts=0, next_at=now, lease_until=None,
                                claim="", code=code, reason=reason, updated_at=now, batch_ref="", checks=0)
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
            "priced_as": str(fields.pop("priced_as", "") or ""), "price_source": str(fields.pop("price_source", "") or ""),
        }

