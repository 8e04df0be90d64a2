"""Dispatch benchmark: 100,000 planned SMS through the Solapi channel to a loopback Solapi server.

    python benchmarks/bench_dispatch.py               # 100k messages
    python benchmarks/bench_dispatch.py --quick       # 5k messages

The same messages are dispatched twice, side by side: with the send ledger (and outbox) in the
embedded DuckDB store, and in PostgreSQL (a private server the test suite's helper starts from the
Debian package).  The server stand-in checks every request's HMAC signature and every message, so
the numbers include Solapi's request shape and authentication.  Prints messages per second, the
ratio between the two ledgers, and peak memory; never fails on timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE)]

from bench_segments import peak_rss_mib  # noqa: E402

from shopcrm import Shop  # noqa: E402
from shopcrm.campaigns import MessagingPolicy  # noqa: E402
from shopcrm.channels import SolapiChannel  # noqa: E402
from solapi_server import KEY, PF_ID, SECRET, solapi_server  # noqa: E402

NOW = datetime(2026, 11, 25, 1)
CAMPAIGN = {
    "id": "shipping", "purpose": "informational", "channels": ["sms"],
    "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문하신 상품의 배송이 시작되었습니다."}}],
    "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
}


def customers(n: int) -> list[dict[str, Any]]:
    return [{"customer_id": f"C{i:07d}", "name": "김민서", "phone": f"010-{i // 10000:04d}-{i % 10000:04d}"} for i in range(n)]


def run(shop: Shop, url: str) -> tuple[float, Any]:
    shop.messaging_policy = MessagingPolicy()
    shop.save_campaign(CAMPAIGN, now=NOW - timedelta(days=1), check=False)
    shop.tick(now=NOW)
    solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=url)
    started = time.perf_counter()
    report = shop.dispatch({"sms": solapi}, batch=5000, concurrency=4, clock=lambda: NOW)
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5_000 if args.quick else args.messages
    people = customers(n)
    print(f"\nshopcrm dispatch benchmark: {n:,} SMS through the Solapi channel to a loopback Solapi server")
    results = {}
    with solapi_server() as server:
        shop = Shop.open()
        shop.load_customers(people)
        seconds, report = run(shop, server.url)
        results["DuckDB (embedded)"] = (seconds, report, len(server.keys()))
        shop.close()
        try:
            import psycopg

            from engines.servers import postgres_server
        except ImportError as error:  # pragma: no cover - the bench extra installs psycopg
            print(f"  PostgreSQL skipped: {error}")
        else:
            with postgres_server() as params:
                if params is None:
                    print("  PostgreSQL skipped: no postgresql binaries (apt-get install postgresql)")
                else:
                    with psycopg.connect(**params) as connection:
                        connection.execute("CREATE TABLE customers (customer_id TEXT, name TEXT, phone TEXT)")
                        connection.execute("CREATE TABLE events (customer_id TEXT, event TEXT, ts TIMESTAMP)")
                        with connection.cursor().copy("COPY customers FROM STDIN") as copy:
                            for person in people:
                                copy.write_row((person["customer_id"], person["name"], person["phone"]))
                        connection.commit()
                        before = len(server.keys())
                        seconds, report = run(Shop.from_dbapi(connection, dialect="postgres"), server.url)
                        results["PostgreSQL 15 (DB-API)"] = (seconds, report, len(server.keys()) - before)
    base = next(iter(results.values()))[0]
    for name, (seconds, report, received) in results.items():
        print(f"  {name:<28} {seconds:>7.2f} s  {n / seconds:>9,.0f} messages/s  {seconds / base:.2f}x  "
              f"({report.outcomes.get('sent', 0):,} sent, {received:,} received by the server)")
    print(f"  peak memory (RSS, whole process): {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
