"""The ``shopcrm`` command: ``demo``, ``count``, ``sql``, ``plugins``, ``tick``, ``send``, ``doctor``, ``ddl``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from shopcrm.errors import ShopCRMError

__all__ = ["main"]


def _rule(text: str) -> Any:
    path = Path(text)
    if not text.lstrip().startswith("{") and path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return text


def _now(text: str) -> datetime:
    from shopcrm.timeline import to_utc_naive

    try:
        return to_utc_naive(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 datetime, e.g. 2026-03-01T09:00:00") from None


def _progress() -> bool:
    """Progress bars (issue 12, scale): drawn on stderr when it is a terminal, unless SHOPCRM_PROGRESS=0."""
    import os

    return sys.stderr.isatty() and os.environ.get("SHOPCRM_PROGRESS", "1") != "0"


def _demo(args: argparse.Namespace) -> int:
    from shopcrm.demo import run

    run(args.path, scale=args.scale, seed=args.seed, now=args.now, out=print, progress=_progress())
    return 0


def _shop(args: argparse.Namespace, **settings: Any) -> Any:
    """The shop ``--db`` names (a DuckDB path or a URL), its library tables where ``--library-schema`` /
    ``--library-prefix`` say; ``settings`` given here are used, not saved."""
    from shopcrm._connect import connect

    options: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}
    if getattr(args, "library_schema", None):
        options["library_schema"] = args.library_schema
    if getattr(args, "library_prefix", None):
        options["library_prefix"] = args.library_prefix
    if getattr(args, "read_only", False):
        options["read_only"] = True
    return connect(args.db, **options)


def _db_options(command: argparse.ArgumentParser, *, read_only: bool = False) -> None:
    command.add_argument("--db", required=True,
                         help="the shop: a DuckDB file, or a URL (postgresql://user:pw@host:5432/db, mysql://..., "
                              "sqlite:///shop.db)")
    command.add_argument("--library-schema", help="the schema (PostgreSQL) or database (MySQL) of the shopcrm_* tables")
    command.add_argument("--library-prefix", help="the name prefix of the library's tables (default shopcrm_)")
    if read_only:
        command.add_argument("--read-only", action="store_true",
                             help="open a DuckDB file read-only (beside a process that writes it)")


def _ddl(args: argparse.Namespace) -> int:
    from shopcrm.sources._library import LibraryTables

    tables = LibraryTables(args.library_schema, args.library_prefix or "shopcrm_")
    for statement in tables.ddl(args.dialect):
        print(statement + ";")
    return 0


def _count(args: argparse.Namespace) -> int:
    with _shop(args) as shop:
        print(shop.count(_rule(args.rule), now=args.now))
    return 0


def _sql(args: argparse.Namespace) -> int:
    from shopcrm.compiler import to_sql

    print(to_sql(_rule(args.rule), args.dialect, now=args.now, pretty=True))
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from shopcrm.plugins import registry

    infos = registry.available()
    if not infos:
        print("no plugins installed")
    for info in infos:
        print(f"{info.group:<18} {info.name:<12} {info.status:<4}  {info.target}  [{info.distribution}]")
    return 0 if all(i.status == "ok" for i in infos) else 1


def _policy(path: str | None) -> Any:
    """The policy in a JSON file, or None: the one saved with the shop (shop.messaging_policy = ...)."""
    from shopcrm.campaigns import MessagingPolicy

    if path is None:
        return None
    settings = json.loads(Path(path).read_text(encoding="utf-8"))
    if settings.pop("jurisdiction", "KR") == "US":
        return MessagingPolicy.united_states(**settings)
    return MessagingPolicy(**settings)


def _tick(args: argparse.Namespace) -> int:
    with _shop(args, messaging_policy=_policy(args.policy)) as shop:
        print(shop.tick(now=args.now or _utcnow(), dry_run=args.dry_run, progress=_progress(), full=args.full))
    return 0


def _utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC).replace(tzinfo=None)


def _send(args: argparse.Namespace) -> int:
    channels = json.loads(Path(args.channels).read_text(encoding="utf-8"))
    with _shop(args, messaging_policy=_policy(args.policy)) as shop:
        store = shop.source.campaign_store()
        now = _utcnow()
        store.enqueue_due(now)
        progress = None
        if _progress():
            from shopcrm._progress import outcomes_bar

            progress = outcomes_bar(len(store.sends(states=("queued", "retry", "inflight"))))
        report = shop.dispatch(channels, drain=args.drain, progress=progress)
        print(report)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopcrm", description="The CRM-marketing brain of an online shop.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="build the synthetic demo shop, print its audiences, run its campaigns and "
                                             "report their measured lift against the planted effects")
    demo.add_argument("--scale", type=int, default=100_000, help="number of customers (default 100000)")
    demo.add_argument("--path", default="shopcrm-demo.duckdb", help="DuckDB file to write")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--now", type=_now, default=None, help="evaluate as of this instant (default 2026-11-24)")
    demo.set_defaults(run=_demo)

    count = commands.add_parser("count", help="count a rule's audience in a shop (a DuckDB file or a database URL)")
    count.add_argument("rule", help="the rule as JSON, or a file holding it")
    _db_options(count, read_only=True)
    count.add_argument("--now", type=_now, required=True)
    count.set_defaults(run=_count)

    sql = commands.add_parser("sql", help="print a rule's SQL for a dialect")
    sql.add_argument("rule", help="the rule as JSON, or a file holding it")
    sql.add_argument("--dialect", default="duckdb")
    sql.add_argument("--now", type=_now, required=True)
    sql.set_defaults(run=_sql)

    plugins = commands.add_parser("plugins", help="list installed plugins and their status")
    plugins.set_defaults(run=_plugins)

    tick = commands.add_parser("tick", help="plan every enabled campaign of a shop into its outbox")
    _db_options(tick)
    tick.add_argument("--now", type=_now, default=None, help="plan as of this instant (default: now)")
    tick.add_argument("--policy", help="a JSON file of MessagingPolicy settings (sender_name, opt_out_number, ...) "
                                       "for this run (default: the policy saved with the shop)")
    tick.add_argument("--dry-run", action="store_true", help="plan and print, record nothing")
    tick.add_argument("--full", action="store_true", help="read every scenario whole, not from its last tick on (after "
                      "events older than the policy's late_events_within were written)")
    tick.set_defaults(run=_tick)

    send = commands.add_parser("send", help="deliver the due planned messages of a shop")
    _db_options(send)
    send.add_argument("--channels", required=True,
                      help='a JSON file mapping chain channels to plugins, e.g. {"sms": {"plugin": "solapi", "sender": "..."}}')
    send.add_argument("--policy", help="a JSON file of MessagingPolicy settings for this run (default: the saved one)")
    send.add_argument("--drain", action="store_true", help="also wait for retries and deferrals to come due")
    send.set_defaults(run=_send)

    # issue 12: checks
    doctor = commands.add_parser("doctor", help="check a shop for segments and campaigns that would silently do nothing")
    _db_options(doctor, read_only=True)
    doctor.add_argument("--now", type=_now, default=None, help="check as of this instant (default: now)")
    doctor.add_argument("--policy", help="a JSON file of MessagingPolicy settings (default: the one saved with the shop)")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(run=_doctor)
    # issue 13: the campaign report
    report = commands.add_parser("report", help="print a campaign report: funnel, clicks, conversions, cost, ROAS, lift")
    _db_options(report, read_only=True)
    report.add_argument("--campaign", action="append", help="a campaign id (repeat for several; default: every campaign)")
    report.add_argument("--since", type=_now, default=None, help="messages sent at or after this instant")
    report.add_argument("--until", type=_now, default=None, help="messages sent before this instant")
    report.add_argument("--now", type=_now, default=None, help="report as of this instant (default: now)")
    report.add_argument("--by", action="append", default=[], choices=("variant", "step", "channel", "kind", "segment"),
                        help="break each campaign down by this (repeat for several)")
    report.add_argument("--segment", action="append", default=None, metavar="NAME",
                        help="with --by segment: a saved segment, in order (repeat; default: every saved segment)")
    report.add_argument("--segments-at", type=_now, default=None,
                        help="with --by segment: read membership at this instant (default: --since)")
    report.add_argument("--sequential", action="store_true",
                        help="A/B tests with always-valid intervals, safe to look at every day")
    report.add_argument("--html", default=None, metavar="PATH",
                        help="also write the report as one self-contained HTML page with charts (needs shopcrm[report])")

    def _report(args: argparse.Namespace) -> int:
        with _shop(args) as shop:
            found = shop.report(args.campaign, since=args.since, until=args.until, now=args.now or _utcnow(),
                                by=tuple(args.by), segments=args.segment, segments_at=args.segments_at,
                                sequential=args.sequential)
            print(found)
            if args.html:
                found.to_html(args.html)
                print(f"\nthe report page: {args.html}")
        return 0

    report.set_defaults(run=_report)
    # issue 13: the global control group against everyone else (the whole programme's lift)
    program = commands.add_parser("program-lift",
                                  help="compare the global control group with every other customer over a period")
    _db_options(program, read_only=True)
    program.add_argument("--since", type=_now, required=True, help="conversions at or after this instant")
    program.add_argument("--until", type=_now, required=True, help="conversions before this instant")
    program.add_argument("--now", type=_now, default=None, help="as of this instant (default: now)")
    program.add_argument("--json", action="store_true", help="print the figures as JSON")

    def _program_lift(args: argparse.Namespace) -> int:
        with _shop(args) as shop:
            found = shop.program_lift(since=args.since, until=args.until, now=args.now or _utcnow())
        print(json.dumps(found.to_dict(), ensure_ascii=False, indent=2) if args.json else found)
        return 0

    program.set_defaults(run=_program_lift)
    # issue 14: product recommendations (shopcrm.recommend)
    recommend = commands.add_parser("recommend", help="print product recommendations for customers (one query)")
    _db_options(recommend, read_only=True)
    recommend.add_argument("customer", nargs="+", help="customer ids")
    recommend.add_argument("--strategy", default="personal",
                           help="personal, also_bought, also_viewed, viewed_not_bought, trending, popular, or JSON "
                                "(a dict with options or a list: the whole fallback chain)")
    recommend.add_argument("--k", type=int, default=10, help="products per customer (default 10)")
    recommend.add_argument("--now", type=_now, default=None, help="read events before this instant (default: now)")
    recommend.add_argument("--json", action="store_true", help="print {customer_id: [items]} as JSON")

    def _recommend(args: argparse.Namespace) -> int:
        from shopcrm.recommend import for_customers

        strategy = json.loads(args.strategy) if args.strategy.lstrip()[:1] in ("{", "[") else args.strategy
        with _shop(args) as shop:
            found = for_customers(shop, args.customer, strategy=strategy, k=args.k, now=args.now or _utcnow())
        if args.json:
            print(json.dumps(found, ensure_ascii=False, indent=2))
            return 0
        for customer, items in found.items():
            print(f"{customer}:" + ("" if items else " (nothing to recommend)"))
            for rank, item in enumerate(items, 1):
                price = "" if item["price"] is None else f"  {item['price']:,.0f}"
                print(f"  {rank:>2}. {item['product_id']}  {item['name'] or ''}{price}  [{item['strategy']}]")
        return 0

    recommend.set_defaults(run=_recommend)
    ddl = commands.add_parser("ddl", help="print the DDL of the library's own tables, for review before a first run")
    ddl.add_argument("--dialect", default="duckdb", help="duckdb, sqlite, postgres or mysql (default duckdb)")
    ddl.add_argument("--library-schema", help="the schema (PostgreSQL, DuckDB) or database (MySQL) of the tables")
    ddl.add_argument("--library-prefix", help="the name prefix of the tables (default shopcrm_)")
    ddl.set_defaults(run=_ddl)
    return parser


def _doctor(args: argparse.Namespace) -> int:
    """Print shop.check(); exit 1 when it found errors (warnings alone exit 0)."""
    if "://" not in args.db and args.db != ":memory:" and not Path(args.db).exists():
        raise OSError(f"no shop file {args.db!r}; give the path of an existing DuckDB shop")
    with _shop(args, messaging_policy=_policy(args.policy)) as shop:
        report = shop.check(now=args.now)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) if args.json else report)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ShopCRMError, ValueError, KeyError, OSError, ImportError) as error:
        print(f"shopcrm {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
