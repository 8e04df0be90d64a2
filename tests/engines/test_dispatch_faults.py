"""Exactly once under the faults of the real world, on every ledger (DuckDB, SQLite, PostgreSQL, MariaDB).

The provider here is a non-deduplicating two-phase provider (like Solapi's group API): ``begin`` opens a batch,
``send`` adds and sends it, ``reconcile`` reads what it took.  It fails the way providers fail: refused before
processing, accepted and then the connection dropped (at begin, at send, for part of a batch), exceptions after the
request went out, unreachable when asked.  The dispatcher process "dies" (a BaseException, which the database
treats like a killed process: the open transaction is rolled back) at random points: before and after the
provider calls, after a claim or a hand-over was committed, and inside the settle transaction between the ledger
write and its events.  After each death a new dispatcher takes over once the leases ran out.

Whatever the seed: the provider takes each key at most once (exactly once for the ones it accepts), every planned
message ends ``sent`` or ``failed`` with a reason (the provider can always tell, so none ends ``unknown``), and
every ``sent`` row has exactly one ``message_sent`` event.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from fake_clock import FakeClock
from races import at_once
from shopcrm.campaigns import MessagingPolicy
from shopcrm.channels import Accepted, Ambiguous, Channel, Message, Rejected, SendResult, Transient
from shopcrm.dispatching import Dispatcher, RetryPolicy

T0 = datetime(2026, 11, 25, 1)
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
LEASE = timedelta(minutes=1)
N = 23
REFUSED = {"010-4000-0004", "010-4000-0017"}  # numbers the provider refuses (a permanent rejection)


class Kill(BaseException):
    """The dispatcher process dies here (like SIGKILL: no ``except Exception`` sees it)."""


@attrs.define
class World:
    """The provider's side: batches (groups) and what it actually sent."""

    rng: random.Random
    faults: bool = True
    groups: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    delivered: list[str] = attrs.field(factory=list)  # every key the provider sent, a resend twice

    def roll(self, chance: float) -> bool:
        return self.faults and self.rng.random() < chance


class TwoPhaseProvider(Channel):
    """A two-phase provider that does not deduplicate, with faults."""

    name = "twophase"
    kinds = frozenset({"sms", "lms"})
    batch_size = 4

    def __init__(self, world: World) -> None:
        self.world = world

    async def begin(self, batch: Sequence[Message]) -> str:
        w = self.world
        if w.roll(0.05):
            raise Kill("died before opening the batch")
        if w.roll(0.08):
            raise ConnectionRefusedError("refused before processing")
        ref = f"G{len(w.groups):05d}"
        w.groups[ref] = {"keys": {}, "status": "PENDING"}
        if w.roll(0.08):
            raise ConnectionResetError("opened the batch, then the connection dropped")
        if w.roll(0.05):
            raise Kill("died after the provider opened the batch")
        return ref

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        w = self.world
        if w.roll(0.05):
            raise Kill("died before sending")
        if w.roll(0.08):
            return [Transient("503 before processing", code="503")] * len(batch)
        group = w.groups[batch[0].batch_ref]
        if group["status"] != "PENDING":  # a batch reconciled as not taken can never be sent
            return [Transient(f"batch is {group['status']}", code="closed")] * len(batch)
        results: list[SendResult] = []
        for message in batch:
            if message.to in REFUSED:
                group["keys"][message.key] = "refused"
                results.append(Rejected("invalid number", code="1011"))
            else:
                group["keys"][message.key] = "taken"
                results.append(Accepted(provider_id=f"{message.batch_ref}:{message.key}"))
        group["status"] = "SENT"
        w.delivered += [k for k, v in group["keys"].items() if v == "taken"]
        if w.roll(0.1):
            raise Kill("died after the provider sent the batch")
        if w.roll(0.1):
            return [Ambiguous("read timeout after the request was written", code="timeout")] * len(batch)
        if w.roll(0.05):
            raise ConnectionResetError("connection reset after the request was written")
        if w.roll(0.1):  # part of the answer lost
            return [r if i % 2 else Ambiguous("answer lost", code="partial") for i, r in enumerate(results)]
        return results

    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        w = self.world
        if w.roll(0.2):
            raise ConnectionRefusedError("provider unreachable")
        answers: list[SendResult | None] = []
        for message in messages:
            group = w.groups.get(message.batch_ref)
            if group is None:
                answers.append(Transient("no batch was opened for it", code="not_taken"))
                continue
            if group["status"] == "PENDING":
                group["status"] = "DELETED"  # make sure it can never go
            state = group["keys"].get(message.key)
            if state == "taken":
                answers.append(Accepted(provider_id=f"{message.batch_ref}:{message.key}"))
            elif state == "refused":
                answers.append(Rejected("invalid number", code="1011"))
            else:
                answers.append(Transient("not in the sent batch", code="not_taken"))
        return answers


def _plan(shop: shopcrm.Shop) -> None:
    shop.messaging_policy = POLICY
    shop.save_campaign({"id": "notice", "purpose": "informational", "channels": ["sms"],
                        "variants": [{"name": "a", "content": {"text": "{{ name }}님, 배송이 시작되었습니다."}}],
                        "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"}}, now=T0 - timedelta(days=1))
    assert len(shop.tick(now=T0).messages) == N


def _people() -> list[tuple[str, str, str]]:
    return [(f"c{i}", "김민서", f"010-4000-{i:04d}") for i in range(N)]


def _kill_inside_writes(shop: shopcrm.Shop, world: World) -> Callable[[], None]:
    """Make the ledger die between its writes: after a committed claim or hand-over, and inside a settle
    transaction after the ledger rows were written but before their events were."""
    store: Any = shop.source.campaign_store()
    claim, hand_over, write_events = store.claim, store.hand_over, store._write_events

    def dying_claim(*args: Any, **kwargs: Any) -> Any:
        taken = claim(*args, **kwargs)
        if world.roll(0.03):
            raise Kill("died right after a claim was committed")
        return taken

    def dying_hand_over(*args: Any, **kwargs: Any) -> Any:
        held = hand_over(*args, **kwargs)
        if world.roll(0.05):
            raise Kill("died right after the hand-over was committed")
        return held

    def dying_events(events: Any) -> None:
        if world.roll(0.05):
            raise Kill("died between the ledger write and its events")
        write_events(events)

    store.claim, store.hand_over, store._write_events = dying_claim, dying_hand_over, dying_events

    def heal() -> None:
        store.claim, store.hand_over, store._write_events = claim, hand_over, write_events

    return heal


def _dispatch_through_deaths(shop: shopcrm.Shop, seed: int) -> World:
    world = World(random.Random(seed))
    channel = TwoPhaseProvider(world)
    clock = FakeClock(T0)
    heal = _kill_inside_writes(shop, world)
    deaths = 0
    for life in range(40):
        if life == 30:  # the weather clears: the rest must finish the job
            world.faults = False
            heal()
        dispatcher = Dispatcher(shop, {"sms": channel}, clock=clock, sleep=clock.sleep, seed=seed + life, lease=LEASE,
                                batch=9, concurrency=2, max_checks=1000, retry=RetryPolicy(max_attempts=100))
        try:
            report = asyncio.run(dispatcher.run(drain=True))
        except Kill:
            deaths += 1
            clock.now += LEASE + timedelta(seconds=1)  # the dead dispatcher's leases run out
            continue
        if report.remaining == 0:
            break
    return world


def _check(shop: shopcrm.Shop, world: World, events: list[dict[str, Any]]) -> None:
    store = shop.source.campaign_store()
    final = store.sends()
    assert len(final) == N
    taken = Counter(world.delivered)
    assert max(taken.values(), default=0) <= 1, f"sent twice: {[k for k, v in taken.items() if v > 1]}"
    states = Counter(r.state for r in final)
    assert set(states) <= {"sent", "failed"}, states
    assert states["failed"] == len(REFUSED)
    assert {r.key for r in final if r.state == "sent"} == set(taken)
    assert all(r.reason for r in final if r.state == "failed")
    by_key = Counter((e["message_key"], e["event"]) for e in events)
    for row in final:
        wanted = "message_sent" if row.state == "sent" else "message_failed"
        assert by_key[(row.key, wanted)] == 1, f"{row.key} is {row.state} with {by_key[(row.key, wanted)]} {wanted} events"
    assert sum(1 for e in events if e["event"] == "message_sent") == states["sent"]
    _sent_at_is_the_message_sent_time(final, events)


def _events_of_duckdb(shop: shopcrm.Shop) -> list[dict[str, Any]]:
    rows = shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT message_key, event, ts FROM events WHERE event LIKE 'message_%'").fetchall()
    return [{"message_key": k, "event": e, "ts": t} for k, e, t in rows]


def _sent_at_is_the_message_sent_time(final: list[Any], events: list[dict[str, Any]]) -> None:
    """Through every fault and death, the ledger's send time (which reports read) is the instant of the message's one
    ``message_sent`` event, and only sent messages have one."""
    sent = {e["message_key"]: e["ts"] for e in events if e["event"] == "message_sent"}
    for row in final:
        if row.state in ("sent", "delivered"):
            assert row.sent_at == sent[row.key], (row.key, row.sent_at, sent.get(row.key))
        else:
            assert row.sent_at is None, (row.key, row.state, row.sent_at)


FAULTS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAULTS
@given(seed=st.integers(0, 2**32 - 1))
def test_duckdb_ledger_through_faults_and_deaths(seed: int) -> None:
    shop = shopcrm.Shop.open()
    shop.load_customers([{"customer_id": c, "name": n, "phone": p} for c, n, p in _people()])
    _plan(shop)
    world = _dispatch_through_deaths(shop, seed)
    _check(shop, world, _events_of_duckdb(shop))


def _own_tables(connection: Any, placeholder: str, people: Sequence[tuple[str, str, str]] | None = None) -> None:
    cursor = connection.cursor()
    for table in ("shopcrm_outbox", "shopcrm_occurrences", "shopcrm_campaigns", "shopcrm_tick_marks", "shopcrm_wakeups", "shopcrm_memberships", "shopcrm_membership_changes", "shopcrm_tracked", "shopcrm_tracked_values", "shopcrm_sends", "shopcrm_opt_outs",
                  "shopcrm_message_events", "f_customers", "f_events"):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute("CREATE TABLE f_customers (customer_id VARCHAR(20), name VARCHAR(40), phone VARCHAR(20))")
    cursor.execute("CREATE TABLE f_events (customer_id VARCHAR(20), event VARCHAR(40), ts TIMESTAMP)")
    cursor.executemany(f"INSERT INTO f_customers VALUES ({', '.join([placeholder] * 3)})", people or _people())
    cursor.close()
    connection.commit()


def _dbapi_case(connection: Any, dialect: str, placeholder: str, seed: int) -> None:
    _own_tables(connection, placeholder)
    shop = shopcrm.Shop.from_dbapi(connection, dialect=dialect, customers="f_customers", events="f_events")
    _plan(shop)
    world = _dispatch_through_deaths(shop, seed)
    _check(shop, world, shop.source.campaign_store().message_events())


@FAULTS
@given(seed=st.integers(0, 2**32 - 1))
def test_sqlite_ledger_through_faults_and_deaths(tmp_path: Path, seed: int) -> None:
    _on_sqlite(tmp_path / f"faults-{seed}.db", _dbapi_case, seed)


def _on_sqlite(path: Path, case: Callable[[Any, str, str, int], None], seed: int) -> None:
    connection = sqlite3.connect(path)
    try:
        case(connection, "sqlite", "?", seed)
    finally:
        connection.close()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_postgres_ledger_through_faults_and_deaths(postgres_loader: Any, seed: int) -> None:
    _dbapi_case(postgres_loader.con, "postgres", "%s", seed)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mysql_ledger_through_faults_and_deaths(mysql_loader: Any, seed: int) -> None:
    _dbapi_case(mysql_loader.con, "mysql", "%s", seed)


class SlowProvider(TwoPhaseProvider):
    """Takes longer than the lease to answer the first batches: another dispatcher takes them over meanwhile."""

    def __init__(self, world: World, clock: FakeClock, slow: int) -> None:
        super().__init__(world)
        self.clock = clock
        self.slow = slow

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        if self.slow > 0:
            self.slow -= 1
            await self.clock.sleep(3 * LEASE.total_seconds())
        return await super().send(batch)


@pytest.mark.parametrize("slow", [1, 3])
def test_a_second_dispatcher_taking_over_expired_leases_never_sends_twice(slow: int) -> None:
    shop = shopcrm.Shop.open()
    shop.load_customers([{"customer_id": c, "name": n, "phone": p} for c, n, p in _people()])
    _plan(shop)
    world = World(random.Random(0), faults=False)
    clock = FakeClock(T0)
    first = Dispatcher(shop, {"sms": SlowProvider(world, clock, slow)}, clock=clock, sleep=clock.sleep, lease=LEASE, batch=8)
    second = Dispatcher(shop, {"sms": TwoPhaseProvider(world)}, clock=clock, sleep=clock.sleep, lease=LEASE, batch=8)

    async def both() -> None:
        await asyncio.gather(first.run(drain=True), second.run(drain=True))

    asyncio.run(both())
    _check(shop, world, _events_of_duckdb(shop))
    assert first.outcomes["sent"] + second.outcomes["sent"] == N - len(REFUSED)


@pytest.mark.parametrize("round_", range(3))
def test_two_dispatchers_in_threads_over_one_duckdb_file_both_finish_and_send_each_message_once(
    tmp_path: Path, round_: int,
) -> None:
    """Two shops over one DuckDB file in one process (two worker threads), each running a dispatcher at the same
    moment. The first outcome events add their columns to the events table: two transactions adding the same column
    conflict in DuckDB's catalogue, and the second dispatcher's settle used to fail with TransactionException
    ("Catalog write-write conflict"). Both now finish, and each message goes once."""
    path = tmp_path / f"shop-{round_}.duckdb"
    shop = shopcrm.Shop.open(path)
    shop.load_customers([{"customer_id": c, "name": n, "phone": p} for c, n, p in _people()])
    _plan(shop)
    other = shopcrm.Shop.open(path)
    world = World(random.Random(round_), faults=False)

    def dispatch(i: int, on: shopcrm.Shop) -> Any:
        clock = FakeClock(T0)
        return asyncio.run(Dispatcher(on, {"sms": TwoPhaseProvider(world)}, clock=clock, sleep=clock.sleep, seed=i,
                                      lease=LEASE, batch=4, concurrency=2).run(drain=True))

    reports = at_once(lambda: dispatch(0, shop), lambda: dispatch(1, other))  # either failing fails the test
    assert all(report.remaining == 0 for report in reports), reports
    _check(shop, world, _events_of_duckdb(shop))
    other.close()
    shop.close()


def test_a_settle_refused_while_another_transaction_alters_the_events_table_is_written_when_it_ends(tmp_path: Path) -> None:
    """Another connection to the same DuckDB file has added a column to the events table and not yet committed (a
    load of events with a new property, a refresh writing its first attribute change): DuckDB refuses every other
    transaction's insert into that table until it ends. The dispatcher's settle is refused, waits, and is written
    once the other commits, instead of failing the dispatcher."""
    import threading

    path = tmp_path / "shop.duckdb"
    shop = shopcrm.Shop.open(path)
    shop.load_customers([{"customer_id": c, "name": n, "phone": p} for c, n, p in _people()])
    _plan(shop)
    other = shopcrm.Shop.open(path)
    con = other.source.con  # type: ignore[attr-defined]
    world = World(random.Random(0), faults=False)
    clock = FakeClock(T0)
    store = shop.source.campaign_store()
    settle = store.settle
    refused = threading.Event()

    def settle_noting_refusals(*args: Any, **kwargs: Any) -> Any:
        try:
            return settle(*args, **kwargs)
        except Exception:
            refused.set()
            raise

    store.settle = settle_noting_refusals  # type: ignore[method-assign]
    # the outcome events' columns are made first (as a first settle would), then the other transaction holds the table
    store.prepare_events([{"customer_id": "c0", "event": "message_sent", "ts": T0, "message_key": "", "campaign_id": "",
                           "channel": "", "kind": "", "attempt": 0, "purpose": "", "cost": 0.0, "provider_id": "",
                           "reason": "", "code": "", "next_channel": "", "priced_as": "", "price_source": ""}])
    con.begin()
    con.execute("ALTER TABLE events ADD COLUMN coupon VARCHAR")

    def commit_after_the_first_refusal() -> None:
        refused.wait(timeout=30)
        con.commit()

    holder = threading.Thread(target=commit_after_the_first_refusal)
    holder.start()
    dispatcher = Dispatcher(shop, {"sms": TwoPhaseProvider(world)}, clock=clock, sleep=clock.sleep, lease=LEASE, batch=8)
    report = asyncio.run(dispatcher.run(drain=True))
    holder.join(timeout=30)
    assert refused.is_set(), "the other transaction never made the settle wait: the test proved nothing"
    assert report.remaining == 0
    _check(shop, world, _events_of_duckdb(shop))
    other.close()
    shop.close()


def test_two_dispatchers_queueing_and_claiming_the_same_rows_take_each_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    first = sqlite3.connect(path, timeout=10)
    _own_tables(first, "?")
    shop_a = shopcrm.Shop.from_dbapi(first, dialect="sqlite", customers="f_customers", events="f_events")
    _plan(shop_a)
    shop_b = shopcrm.Shop.from_dbapi(sqlite3.connect(path, timeout=10), dialect="sqlite", customers="f_customers",
                                     events="f_events")
    a, b = shop_a.source.campaign_store(), shop_b.source.campaign_store()
    assert a.enqueue_due(T0) == N
    assert b.enqueue_due(T0) == 0  # already queued: nothing new, no error
    keys = [r.key for r in a.sends()]
    got_a = a.claim(keys[:15], "A", T0 + LEASE, T0)
    got_b = b.claim(keys[5:], "B", T0 + LEASE, T0)
    assert {r.key for r in got_a} == set(keys[:15])
    assert {r.key for r in got_b} == set(keys[15:])  # what A holds is simply not B's
    # B may not settle what A holds
    assert b.settle([r._replace(state="sent") for r in got_a], held_by="B") == set()
    assert Counter(r.state for r in a.sends()) == {"claimed": N}


# --------------------------------------------------------------------------- Solapi, end to end
class DyingNetwork(httpx.AsyncBaseTransport):
    """The network to the loopback Solapi server, except that the dispatcher process dies at random requests:
    before the request leaves, or after Solapi processed it and before its answer is read."""

    def __init__(self, world: World) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.world = world

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.world.roll(0.02):
            raise Kill(f"died before {request.method} {request.url.path}")
        response = await self.inner.handle_async_request(request)
        if self.world.roll(0.02):
            await response.aread()
            raise Kill(f"died after Solapi answered {request.method} {request.url.path}")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _solapi_through_deaths(shop: shopcrm.Shop, seed: int) -> tuple[Any, World]:
    from shopcrm.channels import SolapiChannel
    from solapi_server import KEY, PF_ID, SECRET, FaultPlan, SolapiBehaviour, solapi_server

    world = World(random.Random(seed))
    clock = FakeClock(T0)
    heal = _kill_inside_writes(shop, world)
    # answers lost after Solapi acted, for sure at the add and send steps; refused before or lost after at random at
    # every other step (create, and the reads reconciliation makes)
    order = random.Random(seed).sample(["drop_after", "500_after", "503_after", "drop_before", "503", None, None], 7)
    faults = FaultPlan(plan={"send": ["drop_after", *order], "add": [None, "500_after", *order]}, seed=seed, rate=0.12)
    with solapi_server(SolapiBehaviour(faults=faults)) as server:
        for life in range(40):
            if life == 30:
                world.faults = False
                faults.rate = 0.0
                heal()
            solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=server.url,
                                   transport=DyingNetwork(world))
            solapi.batch_size = 4  # type: ignore[misc]
            dispatcher = Dispatcher(shop, {"sms": solapi}, clock=clock, sleep=clock.sleep, seed=seed + life, lease=LEASE,
                                    batch=9, concurrency=2, max_checks=1000, retry=RetryPolicy(max_attempts=100))
            try:
                report = asyncio.run(dispatcher.run(drain=True))
            except Kill:
                clock.now += LEASE + timedelta(seconds=1)
                continue
            if report.remaining == 0:
                break
    assert faults.injected, "the server injected no fault: the example proved nothing"
    return server, world


def _check_solapi(shop: shopcrm.Shop, server: Any, events: list[dict[str, Any]]) -> None:
    final = shop.source.campaign_store().sends()
    assert len(final) == N
    keys = Counter(server.keys())
    assert max(keys.values()) == 1, f"sent twice: {[k for k, v in keys.items() if v > 1]}"
    states = Counter(r.state for r in final)
    assert states == {"sent": N - 2, "failed": 2}, states  # none unknown: Solapi can always be asked
    failed = [r for r in final if r.state == "failed"]
    assert {r.code for r in failed} == {"1011"}
    assert {r.key for r in final if r.state == "sent"} == set(keys)
    ids = server.sent_ids()
    assert all(r.provider_id == ids[r.key] for r in final if r.state == "sent")  # Solapi's own message ids
    by_key = Counter((e["message_key"], e["event"]) for e in events)
    for row in final:
        assert by_key[(row.key, "message_sent" if row.state == "sent" else "message_failed")] == 1
    _sent_at_is_the_message_sent_time(final, events)


def _solapi_people() -> list[tuple[str, str, str]]:
    # two landlines: Solapi refuses them (1011) and the message fails with that code
    return [(c, n, "02-123-4567" if i in (4, 17) else p) for i, (c, n, p) in enumerate(_people())]


#: a process killed while connecting leaves httpx's half-made connection behind, as a real death would
QUIET_DEATHS = pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
SOLAPI_FAULTS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@QUIET_DEATHS
@SOLAPI_FAULTS
@given(seed=st.integers(0, 2**32 - 1))
def test_solapi_on_the_duckdb_ledger_through_faults_and_deaths(seed: int) -> None:
    shop = shopcrm.Shop.open()
    shop.load_customers([{"customer_id": c, "name": n, "phone": p} for c, n, p in _solapi_people()])
    _plan(shop)
    server, _ = _solapi_through_deaths(shop, seed)
    _check_solapi(shop, server, _events_of_duckdb(shop))


def _solapi_dbapi_case(connection: Any, dialect: str, placeholder: str, seed: int) -> None:
    _own_tables(connection, placeholder, _solapi_people())
    shop = shopcrm.Shop.from_dbapi(connection, dialect=dialect, customers="f_customers", events="f_events")
    _plan(shop)
    server, _ = _solapi_through_deaths(shop, seed)
    _check_solapi(shop, server, shop.source.campaign_store().message_events())


@QUIET_DEATHS
@SOLAPI_FAULTS
@given(seed=st.integers(0, 2**32 - 1))
def test_solapi_on_the_sqlite_ledger_through_faults_and_deaths(tmp_path: Path, seed: int) -> None:
    _on_sqlite(tmp_path / f"solapi-{seed}.db", _solapi_dbapi_case, seed)


@QUIET_DEATHS
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_solapi_on_the_postgres_ledger_through_faults_and_deaths(postgres_loader: Any, seed: int) -> None:
    _solapi_dbapi_case(postgres_loader.con, "postgres", "%s", seed)


@QUIET_DEATHS
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_solapi_on_the_mysql_ledger_through_faults_and_deaths(mysql_loader: Any, seed: int) -> None:
    _solapi_dbapi_case(mysql_loader.con, "mysql", "%s", seed)


def _second_connection(loader: Any, dialect: str) -> Any:
    if dialect == "postgres":
        import psycopg

        return psycopg.connect(loader.con.info.dsn)
    import pymysql

    con = loader.con
    return pymysql.connect(host=con.host, port=con.port, user=con.user, password=con.password or "",
                           database=con.db.decode() if isinstance(con.db, bytes) else con.db, charset="utf8mb4",
                           autocommit=False)


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_a_real_race_to_queue_the_same_row_is_already_queued_not_an_error(request: pytest.FixtureRequest, dialect: str) -> None:
    """Another dispatcher's uncommitted INSERT holds one of the keys: this one's INSERT ... SELECT waits for it, then
    meets a duplicate key; it must answer "nothing new" and leave the connection usable, not crash."""
    import threading

    loader = request.getfixturevalue(f"{dialect}_loader")
    _own_tables(loader.con, "%s")
    shop = shopcrm.Shop.from_dbapi(loader.con, dialect=dialect, customers="f_customers", events="f_events")
    _plan(shop)
    store: Any = shop.source.campaign_store()
    first_key = shop.outbox()[0].key
    other = _second_connection(loader, dialect)
    try:
        cursor = other.cursor()
        cursor.execute(
            "INSERT INTO shopcrm_sends (key_, customer_id, campaign_id, chain_index, state, attempts, next_at, claim, "
            "provider_id, code, reason, cost, updated_at, batch_ref, checks) "
            "VALUES (%s, '\"c0\"', 'notice', 0, 'queued', 0, '2026-11-25 01:00:00', '', '', '', '', 0, "
            "'2026-11-25 01:00:00', '', 0)", (first_key,))
        outcome: dict[str, Any] = {}

        def queue() -> None:
            try:
                outcome["queued"] = store.enqueue_due(T0)
            except Exception as error:  # pragma: no cover - the failure this test exists to catch
                outcome["error"] = error

        racer = threading.Thread(target=queue)
        racer.start()
        racer.join(timeout=1.0)
        assert racer.is_alive(), "the INSERT should wait for the other dispatcher's uncommitted row"
        other.commit()
        racer.join(timeout=30)
        assert "error" not in outcome, outcome.get("error")
        # PostgreSQL meets the duplicate and queues nothing this time; MariaDB's locking read skips the row
        assert outcome["queued"] in (0, N - 1)
    finally:
        other.close()
    assert store.enqueue_due(T0) == N - 1 - outcome["queued"]  # the connection is usable; the rest is queued now
    assert sorted(r.key for r in store.sends()) == sorted(r.key for r in shop.outbox())
