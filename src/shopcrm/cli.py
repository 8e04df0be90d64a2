"""The ``shopcrm`` command: ``demo``, ``count``, ``sql``, ``plugins``, ``tick``, ``send``."""

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


def _count(args: argparse.Namespace) -> int:
    from shopcrm.shop import Shop

    with Shop.open(args.db) as shop:
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
    from shopcrm.campaigns import MessagingPolicy

    if path is None:
        return MessagingPolicy()
    settings = json.loads(Path(path).read_text(encoding="utf-8"))
    if settings.pop("jurisdiction", "KR") == "US":
        return MessagingPolicy.united_states(**settings)
    return MessagingPolicy(**settings)


def _tick(args: argparse.Namespace) -> int:
    from shopcrm.shop import Shop

    with Shop.open(args.db) as shop:
        shop.messaging_policy = _policy(args.policy)
        print(shop.tick(now=args.now or _utcnow(), dry_run=args.dry_run, progress=_progress()))
    return 0


def _utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC).replace(tzinfo=None)


def _send(args: argparse.Namespace) -> int:
    from shopcrm.shop import Shop

    channels = json.loads(Path(args.channels).read_text(encoding="utf-8"))
    with Shop.open(args.db) as shop:
        shop.messaging_policy = _policy(args.policy)
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

    demo = commands.add_parser("demo", help="build the synthetic demo shop and print its audiences")
    demo.add_argument("--scale", type=int, default=100_000, help="number of customers (default 100000)")
    demo.add_argument("--path", default="shopcrm-demo.duckdb", help="DuckDB file to write")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--now", type=_now, default=None, help="evaluate as of this instant (default 2026-11-24)")
    demo.set_defaults(run=_demo)

    count = commands.add_parser("count", help="count a rule's audience in a DuckDB shop file")
    count.add_argument("rule", help="the rule as JSON, or a file holding it")
    count.add_argument("--db", required=True, help="the shop's DuckDB file")
    count.add_argument("--now", type=_now, required=True)
    count.set_defaults(run=_count)

    sql = commands.add_parser("sql", help="print a rule's SQL for a dialect")
    sql.add_argument("rule", help="the rule as JSON, or a file holding it")
    sql.add_argument("--dialect", default="duckdb")
    sql.add_argument("--now", type=_now, required=True)
    sql.set_defaults(run=_sql)

    plugins = commands.add_parser("plugins", help="list installed plugins and their status")
    plugins.set_defaults(run=_plugins)

    tick = commands.add_parser("tick", help="plan every enabled campaign of a DuckDB shop into its outbox")
    tick.add_argument("--db", required=True, help="the shop's DuckDB file")
    tick.add_argument("--now", type=_now, default=None, help="plan as of this instant (default: now)")
    tick.add_argument("--policy", help="a JSON file of MessagingPolicy settings (sender_name, opt_out_number, ...)")
    tick.add_argument("--dry-run", action="store_true", help="plan and print, record nothing")
    tick.set_defaults(run=_tick)

    send = commands.add_parser("send", help="deliver the due planned messages of a DuckDB shop")
    send.add_argument("--db", required=True, help="the shop's DuckDB file")
    send.add_argument("--channels", required=True,
                      help='a JSON file mapping chain channels to plugins, e.g. {"sms": {"plugin": "solapi", "sender": "..."}}')
    send.add_argument("--policy", help="a JSON file of MessagingPolicy settings")
    send.add_argument("--drain", action="store_true", help="also wait for retries and deferrals to come due")
    send.set_defaults(run=_send)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ShopCRMError, ValueError, KeyError, OSError) as error:
        print(f"shopcrm {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
