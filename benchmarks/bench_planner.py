"""Planner benchmarks on the synthetic shop (1M customers, ~11M events by default).

    python benchmarks/bench_planner.py            # 1M customers
    python benchmarks/bench_planner.py --quick    # 20k customers

1. A one-off advertising broadcast to every customer: consents, quiet hours (the tick is at
   22:00 Seoul, so most messages are deferred to 08:00), a ledger that caps some customers, a
   10% holdout, two variants, a Brand Message -> SMS chain.  Measured twice, side by side:
   the pure planner handed ready Recipient objects, and ``shop.tick`` end to end (audience
   query, recipients from the customers table, plan, one transaction into the outbox); the tick
   alternates with the same tick hashing its members in Python instead of DuckDB.
2. A tick of triggered scenarios over the last days of events: the cart reminder (a day's wait),
   order confirmation, first-purchase cross-sell and VIP-upgrade playbooks (lifecycle audiences,
   so the triggering customers' histories are read), saved two days before the tick.

Prints times, throughput, ratios and peak memory; never fails on timing.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
from bench_segments import dataset, peak_rss_mib, yardstick

import shopcrm
from shopcrm.campaigns import LedgerEntry, MessagingPolicy, Recipient, ShopState, parse_campaign, plan
from shopcrm.campaigns._planner import _Planner, paused_gc
from shopcrm.sources._campaign_store import OutboxRow, SQLCampaignStore

NOW = datetime(2026, 11, 24, 13)  # 22:00 in Seoul, the synthetic shop's last day
SCENARIO_NOW = datetime(2026, 11, 24, 1)  # 10:00 in Seoul, an hour after the last event
POLICY = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
BROADCAST = {
    "id": "winter-sale", "purpose": "advertising", "channels": ["brand_message", "sms"], "holdout_percent": 10,
    "variants": [
        {"name": "a", "content": {"text": "{{ name|은는 }} 겨울 세일 대상이에요. 20% 할인 쿠폰을 드려요."}},
        {"name": "b", "content": {"text": "{{ name }}님, 오늘만 20% 할인!"}},
    ],
    "schedule": {"kind": "one_off", "at": "2026-11-24T21:30:00"},
}


def recipients(path: Any) -> dict[Any, Recipient]:
    """Recipient objects straight from Parquet, as a caller of the pure planner would build them."""
    table = pq.read_table(path, columns=["customer_id", "name", "phone", "sms_consent", "kakao_consent", "night_consent",
                                         "kakao_friend"])
    out = {}
    with paused_gc():
        for row in table.to_pylist():
            consents = {g: NOW for g, flag in (("sms", row["sms_consent"]), ("kakao", row["kakao_consent"])) if flag}
            out[row["customer_id"]] = Recipient(
                customer_id=row["customer_id"], phone=row["phone"], consents=consents,
                night_consent=bool(row["night_consent"]), kakao_friend=bool(row["kakao_friend"]),
                attributes={"name": row["name"]},
            )
    return out


def earlier_messages(ids: list[Any]) -> list[LedgerEntry]:
    """Every 20th customer got an advertising SMS five hours ago (the daily cap binds for them)."""
    return [LedgerEntry(f"old{i}", cid, "earlier", "advertising", "sms", NOW - timedelta(hours=5)) for i, cid in enumerate(ids[::20])]


def row(entry: LedgerEntry) -> OutboxRow:
    return OutboxRow(key=entry.key, customer_id=entry.customer_id, campaign_id=entry.campaign_id, step="main",
                     occurrence="once", variant="a", purpose=entry.purpose, channel=entry.channel, kind="sms",
                     status="planned", due_at=entry.send_at, send_at=entry.send_at, cost=12.0, message="{}",
                     planned_at=entry.send_at)


@contextmanager
def _timed(phases: dict[str, float], cpu: dict[str, float] | None = None) -> Iterator[None]:
    """Times the tick's phases (reading the audience and recipients, planning, outbox rows, recording) by
    wrapping the functions ``shop.tick`` calls, for this benchmark only."""
    from shopcrm import ticking

    originals = {"gather": ticking.gather, "plan": ticking.plan, "outbox_rows": ticking.outbox_rows}

    def wrap(name: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started, used = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
                if cpu is not None:
                    cpu[name] = cpu.get(name, 0.0) + time.process_time() - used
        return timed

    record = SQLCampaignStore.record
    try:
        for name, function in originals.items():
            setattr(ticking, name, wrap(name, function))
        SQLCampaignStore.record = wrap("record", record)  # type: ignore[method-assign]
        yield
    finally:
        for name, function in originals.items():
            setattr(ticking, name, function)
        SQLCampaignStore.record = record  # type: ignore[method-assign]


@contextmanager
def _engine_hashes(on: bool) -> Iterator[None]:
    """A tick with the members' hashes by the engine (``on``), or hashed by the planner in Python (the tick before
    issue 15's eleventh round)."""
    from shopcrm import ticking

    asked = getattr(ticking, "hash_expressions")  # noqa: B009 - put back below
    if not on:
        setattr(ticking, "hash_expressions", lambda *args: {})  # noqa: B010
    try:
        yield
    finally:
        setattr(ticking, "hash_expressions", asked)  # noqa: B010


def line(label: str, seconds: float, extra: str = "") -> None:
    print(f"  {label:<58} {seconds * 1000:>9,.0f} ms  {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=2, help="best of how many runs of each pure planner and of the broadcast tick")
    parser.add_argument("--only", choices=["broadcast", "scenarios"], help="run one of the two parts")
    args = parser.parse_args()
    scale = 20_000 if args.quick else args.scale
    customers, events = dataset(scale)
    campaign = parse_campaign(BROADCAST)

    print(f"\nshopcrm planner benchmarks: {scale:,} customers")
    print(f"  {yardstick()}")
    if args.only != "scenarios":
        broadcast(scale, customers, events, campaign, args.repeat)
    if args.only != "broadcast":
        scenarios(customers, events)
    print(f"\n  peak memory (RSS, whole process): {peak_rss_mib():,.0f} MiB")


def broadcast(scale: int, customers: Any, events: Any, campaign: Any, repeat: int) -> None:
    print("\n1. one-off advertising broadcast to every customer (22:00 Seoul: quiet hours defer)")
    started = time.perf_counter()
    people = recipients(customers)
    build_s = time.perf_counter() - started
    ids = list(people)
    ledger = earlier_messages(ids)
    state = ShopState(recipients=people, audiences={"winter-sale": ids}, ledger=ledger)
    # side by side, alternating, best of N: the member-by-member walk (the planner before issue 15) and the one pass
    best = {False: float("inf"), True: float("inf")}
    cpu = {False: float("inf"), True: float("inf")}  # CPU seconds: steadier than the wall clock on a shared machine
    pure = walked = None
    for _ in range(repeat):
        for batch in (False, True):
            with paused_gc():
                started, used = time.perf_counter(), time.process_time()
                found = plan([campaign], state, now=NOW, policy=POLICY) if batch else _Planner(
                    [campaign], state, NOW, POLICY, batch=False).run()
                best[batch] = min(best[batch], time.perf_counter() - started)
                cpu[batch] = min(cpu[batch], time.process_time() - used)
            pure, walked = (found, walked) if batch else (pure, found)
            del found
    assert pure is not None
    assert walked is not None
    same_plan = pure == walked
    # what the report needs of the pure plan, kept as figures: the tick is measured without the pure plans' million
    # objects still alive beside it
    pure_keys = sorted(m.key for m in pure.messages)
    deferred = sum(m.deferred for m in pure.messages)
    planned, left_out, reasons = len(pure.messages), len(pure.suppressions), dict(pure.reasons().most_common())
    del walked, people, state, pure
    gc.collect()
    plan_s = best[True]

    # the tick, best of `repeat`, each on a fresh shop (a recorded occurrence is not planned twice); every run printed;
    # alternating with a tick that hashes its members in Python (the engine's hashes turned off), side by side
    runs: list[tuple[float, float, dict[str, float], dict[str, float]]] = []
    python_runs: list[tuple[float, float, dict[str, float]]] = []
    for attempt in range(repeat):
        for engine_hashes in (False, True):
            shop = shopcrm.Shop.open(":memory:")
            shop.load_customers(customers)
            shop.load_events(events)
            shop.messaging_policy = POLICY
            shop.source.campaign_store().record([row(e) for e in ledger], [], NOW - timedelta(hours=5))
            shop.save_campaign(campaign, now=NOW - timedelta(days=1))
            phases: dict[str, float] = {}
            phases_cpu: dict[str, float] = {}
            started, used = time.perf_counter(), time.process_time()
            with _timed(phases, phases_cpu), _engine_hashes(engine_hashes):
                ticked = shop.tick(now=NOW)
            if engine_hashes:
                runs.append((time.perf_counter() - started, time.process_time() - used, phases, phases_cpu))
            else:
                python_runs.append((time.perf_counter() - started, time.process_time() - used, phases))
            if attempt < repeat - 1 or not engine_hashes:
                del ticked
                shop.close()
    tick_s, tick_cpu, phases, phases_cpu = min(runs, key=lambda run: run[0])
    python_s, python_cpu, python_phases = min(python_runs, key=lambda run: run[0])
    same = sorted(m.key for m in ticked.messages) == pure_keys
    same_rows = outbox_as_written_message_by_message(shop, ticked.plan, campaign)
    line("build Recipient objects from Parquet (caller's side)", build_s)
    line("pure planner, member by member (before issue 15)", best[False],
         f"{scale / best[False]:,.0f} customers/s, {cpu[False]:.1f} s CPU")
    line("pure planner: plan(campaigns, state), one pass", plan_s,
         f"{scale / plan_s:,.0f} customers/s, {cpu[True]:.1f} s CPU  = {best[False] / plan_s:.2f}x faster  (target: 1M in < 5 s; "
         f"issue 15 measured 10.1 s, then 9.2 s; 6.9 s CPU loaded before its third round, 5.4 s quiet before its fourth)")
    line("shop.tick end to end (query, recipients, plan, outbox)", tick_s,
         f"{scale / tick_s:,.0f} customers/s  = {tick_s / plan_s:.2f}x the pure plan, {tick_cpu:.1f} s CPU, best of "
         f"{', '.join(f'{run[0]:.2f}' for run in runs)} s  (target: 1M in < 10 s; issue 15 measured 23.5 s, then 23.2 s; "
         "21.8 s CPU loaded before its third round)")
    line("the same tick hashing its members in Python (no engine hashes)", python_s,
         f"{python_cpu:.1f} s CPU, runs {', '.join(f'{run[0]:.2f}' for run in python_runs)} s  = the engine's hashes "
         f"{python_s / tick_s:.2f}x faster ({python_cpu / tick_cpu:.2f}x in CPU); its phases: "
         + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in python_phases.items()))
    print("  tick phases (its best run): " + ", ".join(f"{name} {seconds:.2f} s ({phases_cpu[name]:.2f} s CPU)"
                                        for name, seconds in phases.items())
          + "  (before issue 15's third round, CPU, loaded: gather 5.5 s, plan 7.5 s, outbox rows 4.1 s, record 3.7 s)")
    print(f"  planned {planned:,} ({deferred:,} deferred to 08:00); left out {left_out:,} "
          f"{reasons}; the two pure plans are equal: {same_plan}; tick plans the same keys: {same}; "
          f"its outbox rows equal the message-by-message ones: {same_rows}")
    del ticked
    shop.close()


def outbox_as_written_message_by_message(shop: Any, result: Any, campaign: Any) -> bool:
    """Whether the outbox rows the tick recorded (the message JSON joined by DuckDB from its pieces) are, byte for
    byte, the rows of the same plan with each message's JSON written in Python (the small-plan path)."""
    import pyarrow as pa

    from shopcrm import ticking
    from shopcrm.sources._campaign_store import OUTBOX_COLUMNS, _stamp

    limit, ticking.ARROW_MESSAGES = ticking.ARROW_MESSAGES, 10**12
    try:
        stored = ticking.outbox_rows(result, [campaign], NOW).stored()
    finally:
        ticking.ARROW_MESSAGES = limit
    con = shop.source.con
    names = ["key_" if c == "key" else c for c in OUTBOX_COLUMNS]
    con.register("__expected", pa.table(dict(zip(names, stored, strict=True))))
    try:
        recorded = f"SELECT {', '.join(names)} FROM shopcrm_outbox WHERE planned_at = ?"
        expected = f"SELECT {', '.join(names)} FROM __expected"
        stamp = [_stamp(NOW)]
        count = con.execute(f"SELECT COUNT(*) FROM ({recorded})", stamp).fetchall()[0][0]
        missing = con.execute(f"SELECT COUNT(*) FROM ({expected} EXCEPT ALL {recorded})", stamp).fetchall()[0][0]
        extra = con.execute(f"SELECT COUNT(*) FROM ({recorded} EXCEPT ALL {expected})", stamp).fetchall()[0][0]
    finally:
        con.unregister("__expected")
    return bool(count == len(stored[0]) and missing == 0 and extra == 0)


def scenarios(customers: Any, events: Any) -> None:
    print("\n2. a tick of triggered scenarios over the last days of events")
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers(customers)
    shop.load_events(events)
    shop.messaging_policy = POLICY
    for name in ("cart_reminder", "order_completed", "first_purchase_cross_sell", "vip_upgrade"):
        shop.enable_playbook(name, now=SCENARIO_NOW - timedelta(days=2))
    started = time.perf_counter()
    first = shop.tick(now=SCENARIO_NOW)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    again = shop.tick(now=SCENARIO_NOW + timedelta(minutes=5))
    again_s = time.perf_counter() - started
    counts = {cid: dict(c) for cid, c in sorted(first.by_campaign().items())}
    line("first tick (two days of triggers)", first_s, f"{len(first.messages):,} planned, {len(first.suppressions):,} left out")
    line("the next tick, 5 minutes later (nothing new)", again_s, f"{len(again.messages):,} planned")
    print(f"  per campaign: {counts}")


if __name__ == "__main__":
    main()
