"""Dispatch benchmark: 100,000 planned SMS through the Solapi channel (group API) to a loopback Solapi server.

    python benchmarks/bench_dispatch.py               # 100k messages
    python benchmarks/bench_dispatch.py --quick       # 5k messages

Three processes, so that each figure is the one it names: this one plans the messages (the tick) and starts
PostgreSQL; the Solapi stand-in serves in a process of its own (it checks every request's HMAC signature and
every message, so the figures include Solapi's request shape and authentication); and the **dispatcher runs in a
process of its own**, whose peak memory (RSS) is reported.  The same messages are dispatched three times, side by side:
with the send ledger (and outbox) in the embedded DuckDB file, in the same file with DuckDB's automatic checkpoints
at 64 MB of write-ahead log instead of 16 MB (more memory, fewer table rewrites), and in PostgreSQL.  Prints messages per second, the
ratio between the two ledgers, the dispatcher's peak RSS, and what the server received (each key once); never
fails on timing.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE)]

from shopcrm import Shop  # noqa: E402
from shopcrm.campaigns import MessagingPolicy  # noqa: E402
from shopcrm.sources.duckdb_store import DuckDBSource  # noqa: E402

NOW = datetime(2026, 11, 25, 1)
CAMPAIGN = {
    "id": "shipping", "purpose": "informational", "channels": ["sms"],
    "variants": [{"name": "a", "content": {"text": "{{ name }}님, 주문하신 상품의 배송이 시작되었습니다."}}],
    "schedule": {"kind": "one_off", "at": "2026-11-25T10:00:00"},
}


def customers(n: int) -> list[dict[str, Any]]:
    return [{"customer_id": f"C{i:07d}", "name": "김민서", "phone": f"010-{i // 10000:04d}-{i % 10000:04d}"} for i in range(n)]


def plan(shop: Shop) -> None:
    shop.messaging_policy = MessagingPolicy()
    shop.save_campaign(CAMPAIGN, now=NOW - timedelta(days=1), check=False)
    shop.tick(now=NOW)


# ------------------------------------------------------------------ the processes
def serve() -> None:
    """The Solapi stand-in: prints its URL, serves until stdin closes, then prints what it received."""
    from solapi_server import solapi_server

    with solapi_server() as server:
        print(server.url, flush=True)
        sys.stdin.read()
        keys = server.keys()
        print(json.dumps({"received": len(keys), "distinct": len(set(keys))}), flush=True)


def work(ledger: str, where: str, url: str) -> None:
    """The dispatcher: opens the shop, dispatches everything due, prints its figures as JSON."""
    from shopcrm.channels import SolapiChannel
    from solapi_server import KEY, PF_ID, SECRET

    if ledger == "duckdb":
        shop = Shop.open(where)
    elif ledger == "duckdb-wal":  # the same file, with fewer checkpoints: more memory for speed
        import duckdb

        shop = Shop.from_source(DuckDBSource(where, connection=duckdb.connect(where, config={"checkpoint_threshold": "64MB"})))
    else:
        import psycopg

        shop = Shop.from_dbapi(psycopg.connect(where), dialect="postgres")
    shop.messaging_policy = MessagingPolicy()
    solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=url)
    started = time.perf_counter()
    report = shop.dispatch({"sms": solapi}, batch=5000, clock=lambda: NOW)
    seconds = time.perf_counter() - started
    shop.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "outcomes": report.outcomes, "peak_rss_mib": peak_rss_mib(),
                      "cpu_seconds": usage.ru_utime + usage.ru_stime}), flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory.  ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``exec`` and
    would report the parent's peak (the process that planned 100,000 messages) instead of the dispatcher's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dispatched(ledger: str, where: str) -> dict[str, Any]:
    """Start a Solapi stand-in and a dispatcher, each in a process of its own; the dispatcher's figures and
    what the server sent."""
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdin is not None
    url = server.stdout.readline().strip()
    try:
        done = subprocess.run([sys.executable, __file__, "--work", ledger, where, url], capture_output=True, text=True,
                              check=False)
    finally:
        server.stdin.close()
        received = json.loads(server.stdout.readline() or "{}")
        server.wait()
    if done.returncode != 0:
        raise SystemExit(f"the {ledger} dispatcher failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "received": received.get("received", 0), "distinct": received.get("distinct", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", nargs=3, metavar=("LEDGER", "WHERE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve()
    if args.work:
        return work(*args.work)
    n = 5_000 if args.quick else args.messages
    people = customers(n)
    print(f"\nshopcrm dispatch benchmark: {n:,} SMS through the Solapi channel (group API) to a loopback Solapi server")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "shop.duckdb")
        with Shop.open(path) as shop:
            shop.load_customers(people)
            plan(shop)
        copy = str(Path(folder) / "copy.duckdb")
        shutil.copy(path, copy)
        results["DuckDB file (embedded)"] = dispatched("duckdb", path)
        results["DuckDB, checkpoints at 64MB"] = dispatched("duckdb-wal", copy)
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
                    plan(Shop.from_dbapi(connection, dialect="postgres"))
                    conninfo = connection.info.dsn
                results["PostgreSQL 15 (DB-API)"] = dispatched("postgres", conninfo)
    base = next(iter(results.values()))["seconds"]
    for name, figures in results.items():
        seconds = figures["seconds"]
        print(f"  {name:<26} {seconds:>7.2f} s  {n / seconds:>9,.0f} messages/s  {seconds / base:.2f}x  "
              f"dispatcher peak RSS {figures['peak_rss_mib']:,.0f} MiB  ({figures['outcomes'].get('sent', 0):,} sent; "
              f"Solapi sent {figures['received']:,}, {figures['distinct']:,} distinct keys)")
    return None

if __name__ == "__main__":
    main()
