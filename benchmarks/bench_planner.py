"""Planner benchmark: a one-off advertising broadcast to the synthetic shop's customers.

    python benchmarks/bench_planner.py            # 1M customers
    python benchmarks/bench_planner.py --quick

Consents, quiet hours (the tick is at 22:00 Seoul, so most messages are deferred), a
ledger that caps some customers, a 10% holdout and two variants.  Prints times,
throughput and peak memory; never fails on timing.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta

import pyarrow.parquet as pq
from bench_segments import dataset, peak_rss_mib

from shopcrm.campaigns import LedgerEntry, MessagingPolicy, Recipient, ShopState, parse_campaign, plan

NOW = datetime(2026, 11, 24, 13)  # 22:00 in Seoul
CONSENT = datetime(2026, 1, 1)


def recipients(path: object) -> dict[object, Recipient]:
    table = pq.read_table(path, columns=["customer_id", "name", "phone", "email", "sms_consent", "email_consent",
                                         "kakao_consent", "night_consent"])
    out = {}
    for row in table.to_pylist():
        consents = {g: CONSENT for g, flag in (("sms", row["sms_consent"]), ("email", row["email_consent"]),
                                               ("kakao", row["kakao_consent"])) if flag}
        out[row["customer_id"]] = Recipient(
            customer_id=row["customer_id"], phone=row["phone"], email=row["email"], consents=consents,
            night_consent=bool(row["night_consent"]), kakao_friend=bool(row["kakao_consent"]),
            attributes={"name": row["name"]},
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 20_000 if args.quick else args.scale
    customers, _ = dataset(scale)
    started = time.perf_counter()
    people = recipients(customers)
    build_s = time.perf_counter() - started
    ids = list(people)
    ledger = [LedgerEntry(f"old{i}", cid, "earlier", "advertising", "sms", NOW - timedelta(hours=5)) for i, cid in enumerate(ids[::20])]
    campaign = parse_campaign({
        "id": "winter-sale", "purpose": "advertising", "channels": ["brand_message", "sms"], "holdout_percent": 10,
        "variants": [
            {"name": "a", "content": {"text": "{{ name|은는 }} 겨울 세일 대상이에요. 20% 할인 쿠폰을 드려요."}},
            {"name": "b", "content": {"text": "{{ name }}님, 오늘만 20% 할인!"}},
        ],
        "schedule": {"kind": "one_off", "at": "2026-11-24T21:30:00"},
    })
    policy = MessagingPolicy(sender_name="마음상점", sender_contact="1588-0000", opt_out_number="080-123-4567")
    state = ShopState(recipients=people, audiences={"winter-sale": ids}, ledger=ledger)
    started = time.perf_counter()
    result = plan([campaign], state, now=NOW, policy=policy)
    plan_s = time.perf_counter() - started
    deferred = sum(m.deferred for m in result.messages)
    print(f"\nshopcrm planner benchmark: one-off advertising broadcast to {scale:,} customers")
    print(f"{'build recipients from Parquet (Python objects)':<52} {build_s * 1000:>9.0f}ms")
    print(f"{'plan (consent, quiet hours, caps, holdout, render)':<52} {plan_s * 1000:>9.0f}ms  "
          f"{scale / plan_s:,.0f} customers/s (target: 1M in < 10 s)")
    print(f"{'planned':<52} {len(result.messages):>9,}  ({deferred:,} deferred to 08:00)")
    print(f"{'suppressed':<52} {len(result.suppressions):>9,}  {dict(result.reasons().most_common())}")
    print(f"{'peak memory (RSS, whole process)':<52} {peak_rss_mib():>9.0f}MiB")


if __name__ == "__main__":
    main()
