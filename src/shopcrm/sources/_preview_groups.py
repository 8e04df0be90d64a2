"""The grouped preview's reads: a campaign's audience counted per combination of what decides, in two aggregate
queries, so a preview at a million customers reads a few thousand rows instead of a million (see
:mod:`shopcrm.campaigns._preview_sql` for the pure part).

Phase 0 groups the audience by what the recipient columns say: the raw values of the consent, opt-out, friendship,
zone and night-consent columns (few distinct values in practice) and whether each contact column is missing (NULL,
or only white space as Python strips it); each distinct pattern gets a number (``ROW_NUMBER`` over the patterns in
their order, the same in every query on the same data).  The patterns become representative recipients through the
shop's own :meth:`~shopcrm.recipients.RecipientColumns.recipients`, so a value means what it means to a tick, and
the planner's functions decide which patterns reach the rendering and how (first channel, deferral, price).

The main pass computes each member's hashes once (global control, holdout, variant:
:func:`~shopcrm.campaigns._preview_sql.hash_columns`), joins its pattern number, and groups the members who do not
reach the rendering by pattern and hashes, and those who do by render class, variant and the values of the columns
the first step's templates read.  Customers with planned messages in the ledger or a recorded opt-out are read
with their full rows, taken out of their groups and previewed one by one.  Engines: DuckDB, SQLite (with the
library's hash functions registered on its connection) and PostgreSQL; on any other, or when a shop's own table
repeats a customer id, ``None``: the caller previews customer by customer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
from sqlglot import exp

from shopcrm.campaigns import Campaign, LedgerEntry, MessagingPolicy, Preview, ShopState
from shopcrm.campaigns._preview import _preview
from shopcrm.campaigns._preview_sql import (
    PreviewGroup,
    blank_text,
    exact_costs,
    grouping_blockers,
    hash_columns,
    plan_groups,
    preview_of_groups,
)
from shopcrm.campaigns._templates import Renderer
from shopcrm.recipients import RecipientColumns, with_opt_outs
from shopcrm.sources._reads import EngineReader

__all__ = ["GROUPED_DIALECTS", "MAX_PATTERNS", "grouped_preview"]

#: beyond this many distinct patterns of the recipient columns the customers share too little to group
MAX_PATTERNS = 10_000
#: the engines the grouped preview runs on (their hashes, text order and white space are the reference's)
GROUPED_DIALECTS = ("duckdb", "sqlite", "postgres")


def grouped_preview(
    reader: EngineReader, campaign: Campaign, audience: exp.Select | None, *, now: datetime, policy: MessagingPolicy,
    columns: RecipientColumns, ledger: Sequence[LedgerEntry], opt_outs: Mapping[Any, Mapping[str, datetime]],
    blockers: list[str] | None = None,
) -> Preview | None:
    """:func:`shopcrm.campaigns.preview` of ``campaign`` at ``now`` for the customers of ``audience`` (a query of
    ``customer_id``; None: every customer with an id, read without a semi-join), from aggregate queries; ``None`` when it cannot be exact here (``blockers``, when given,
    receives why), and the caller previews customer by customer."""
    from shopcrm.compiler._dialects import dialect_for
    from shopcrm.sources._event_values import register_sqlite_functions, sha_hex16
    from shopcrm.sources.duckdb_store import DuckDBSource

    why = blockers if blockers is not None else []
    source = reader.source
    types = dict(reader.schema.customers.columns)
    renderer = Renderer()
    why += grouping_blockers(campaign, policy, types, renderer=renderer)
    if source.dialect not in GROUPED_DIALECTS:
        why.append(f"the {source.dialect} engine (grouped previews run on {', '.join(GROUPED_DIALECTS)})")
    elif source.dialect == "sqlite" and not register_sqlite_functions(source):
        why.append("a SQLite source without a connection to register SHA-256 on")
    if why:
        return None
    quirks = dialect_for(source.dialect)
    step = campaign.send_steps()[0]
    names = {n for v in campaign.variants_of(step) for n in renderer.names(v.content)}
    wanted = [c for c in types if c in names]
    roles = columns.names()
    contacts = {c for c in (columns.phone, columns.email, columns.push_token) if c}
    present = [c for c in types if c in roles]
    reduced = [c for c in present if c in contacts and c not in wanted and c not in _others(columns)]
    raw = [c for c in present if c not in reduced]
    values_of = [c for c in wanted if c not in present]  # the template's own columns: phase 2

    def col(name: str) -> exp.Column:
        return exp.column(name, table="c", quoted=True)

    keys: list[tuple[str, exp.Expression]] = [(c, col(c)) for c in raw]
    for c in reduced:  # NULL: none; '': only white space (None to the recipient); 'x': a contact point
        text = quirks.to_text(col(c))
        first = exp.Substring(this=text.copy(), start=exp.Literal.number(1), length=exp.Literal.number(1))
        printable = exp.and_(  # a printable ASCII first character: a contact point without stripping anything
            exp.GTE(this=quirks.string_order(first), expression=quirks.string_order(exp.Literal.string("!"))),
            exp.LTE(this=quirks.string_order(first.copy()), expression=quirks.string_order(exp.Literal.string("~"))))
        keys.append((c, exp.Case().when(exp.Is(this=col(c), expression=exp.null()), exp.null())
                     .when(printable, exp.Literal.string("x"))
                     .when(blank_text(text), exp.Literal.string("")).else_(exp.Literal.string("x"))))

    hashes = hash_columns(campaign, policy, col("customer_id"), to_text=quirks.to_text, concat=quirks.concat,
                          md5_bucket=quirks.md5_bucket, sha_hex16=lambda t: sha_hex16(source.dialect, t),
                          string_order=quirks.string_order)
    patterns_k = [e for _, e in keys]
    k_names = [f"k{i}" for i in range(len(patterns_k))]
    h_names = list(hashes)
    if audience is not None and isinstance(source, DuckDBSource):  # a rule read once, not in every query below
        try:
            kept = source.scratch_table("shopcrm_preview_audience", audience, {"customer_id": types["customer_id"]})
        except Exception:  # pragma: no cover - a connection that cannot hold a temporary table: the rule, each time
            pass
        else:
            audience = exp.select(exp.column("customer_id", table="a", quoted=True)).from_(kept.relation("a"))
    member = exp.Not(this=exp.Is(this=col("customer_id"), expression=exp.null())) if audience is None else col(
        "customer_id").isin(query=audience)
    v_names = [(c, f"v{i}") for i, c in enumerate(values_of)]

    def keyed(extra: Sequence[tuple[str, str]] = (), *, with_hashes: bool = True,
              condition: exp.Expr | None = None) -> exp.Select:
        """Each audience member's pattern keys, hashes (when asked) and ``extra`` columns (name, alias)."""
        where = member.copy() if condition is None else exp.and_(member.copy(), condition)
        return exp.select(*[exp.alias_(e.copy(), a, quoted=True) for e, a in zip(patterns_k, k_names, strict=True)],
                          *[exp.alias_(e.copy(), a, quoted=True) for a, e in hashes.items() if with_hashes],
                          *[exp.alias_(col(c), a, quoted=True) for c, a in extra]).from_(
            reader.customers_table("c")).where(where)

    def at(table: str, name: str) -> exp.Column:
        return exp.column(name, table=table, quoted=True)

    def numbered() -> exp.Select:
        """The distinct patterns, numbered in their order (the same numbers in every query: the same data)."""
        order = exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=at("d", k)) for k in k_names])) \
            if k_names else exp.Window(this=exp.RowNumber())
        return exp.select(*[at("d", k) for k in k_names], exp.alias_(order, "pid", quoted=True),
                          exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True)).from_(
            keyed(with_hashes=False).subquery("d")).group_by(*[at("d", k) for k in k_names])

    if not isinstance(source, DuckDBSource):  # the embedded store keeps one row per id; a shop's own table may not
        rows_and_ids = exp.select(exp.Count(this=exp.Star()), exp.Count(this=exp.Distinct(expressions=[col("customer_id")]))).from_(
            reader.customers_table("c")).where(member.copy())
        total_rows, distinct_ids = source.fetch(rows_and_ids)[0]
        if total_rows != distinct_ids:  # a tick reads one row per id (the last): groups would count every row
            why.append(f"{total_rows - distinct_ids:,} repeated customer ids in the customers table")
            return None
    # phase 0: the patterns of what the recipient columns say, with their sizes (no hash computed)
    first = source.fetch_arrow(numbered(), [*k_names, "pid", "n"])
    pattern_values = [first.column(k).to_pylist() for k in k_names]
    pids: list[int] = [int(p) for p in first.column("pid").to_pylist()]
    if len(pids) > MAX_PATTERNS:  # consent timestamps, say: as many patterns as customers, nothing shared
        why.append(f"{len(pids):,} distinct patterns of the recipient columns (at most {MAX_PATTERNS:,} are grouped)")
        return None
    sizes = dict(zip(pids, [int(n) for n in first.column("n").to_pylist()], strict=True))
    shown = {c: list(pattern_values[i]) for i, (c, _) in enumerate(keys)}
    shown["customer_id"] = list(pids)
    standing = {r.customer_id: attrs.evolve(r, customer_id=None)
                for r in columns.recipients(shown, now=now, attributes=[c for c in wanted if c in present])}
    # which patterns reach the rendering when their members are neither in the global control nor held out, and how
    ahead = plan_groups(campaign, [PreviewGroup(recipient=r, count=1) for r in standing.values()], now=now, policy=policy)
    reach = {pid: c for pid, c in zip(standing, ahead.class_of, strict=True) if c is not None}
    classes = ahead.classes

    def joined(extra: Sequence[tuple[str, str]], condition: exp.Expr | None = None) -> exp.Select:
        """Each member's keys, hashes, ``extra`` columns and pattern number."""
        on = [exp.NullSafeEQ(this=at("q", k), expression=at("p", k)) for k in k_names]
        picked = exp.select(*[at("q", a) for a in [*h_names, *[a for _, a in extra]]], at("p", "pid")).from_(
            keyed(extra, condition=condition).subquery("q"))
        if on:
            return picked.join(numbered().subquery("p"), on=exp.and_(*on), join_type="inner")
        return picked.join(numbered().subquery("p"), join_type="cross")

    def reaching(table: str) -> exp.Expr:
        """Whether a member reaches the rendering: its pattern does, and no hash keeps it out."""
        parts: list[exp.Expression] = [exp.In(this=at(table, "pid"), expressions=[exp.Literal.number(p) for p in reach])
                                       if reach else exp.false()]
        parts += [exp.Not(this=at(table, h)) for h in ("controlled", "held_out") if h in hashes]
        return exp.and_(*[exp.Paren(this=p) for p in parts])

    def when(condition: exp.Expression, value: exp.Expression) -> exp.Expression:
        return exp.Case(ifs=[exp.If(this=condition.copy(), true=value)])

    grouped = exp.Paren(this=reaching("j"))  # parenthesised: sqlglot writes NOT (a AND b) as NOT a AND b
    render = exp.Case(ifs=[exp.If(this=exp.In(this=at("j", "pid"), expressions=[exp.Literal.number(p) for p in found]),
                                  true=exp.Literal.number(c))
                           for c, found in _by_class(reach).items()]) if reach else exp.null()
    # the main pass: members who do not reach the rendering by pattern and hashes, and those who do by render
    # class, variant and template values (the hashes computed once per member)
    outs: list[tuple[str, exp.Expression]] = [
        ("g", exp.Case(ifs=[exp.If(this=grouped.copy(), true=exp.null())], default=at("j", "pid"))),
        ("r", when(grouped, render)),
        *[(h, when(exp.Not(this=grouped.copy()), at("j", h))) for h in h_names if h != "variant"],
        *[(h, when(grouped, at("j", h))) for h in h_names if h == "variant"],
        *[(a, when(grouped, at("j", a))) for _, a in v_names],
    ]
    inner = exp.select(*[exp.alias_(e, a, quoted=True) for a, e in outs]).from_(joined(v_names).subquery("j"))
    main = exp.select(*[at("s", a) for a, _ in outs], exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True)).from_(
        inner.subquery("s")).group_by(*[at("s", a) for a, _ in outs])
    table = source.fetch_arrow(main, [*[a for a, _ in outs], "n"])
    got = {a: table.column(a).to_pylist() for a, _ in outs}
    counts: list[int] = table.column("n").to_pylist()
    outside: dict[tuple[int, bool, bool], int] = {}
    rendered: list[list[Any]] = []  # [render class, variant, template values, count]
    no = [None] * len(counts)
    controlled_of, held_of, variant_of = got.get("controlled", no), got.get("held_out", no), got.get("variant", no)
    for i, n in enumerate(counts):
        if got["g"][i] is not None:
            spot = (int(got["g"][i]), bool(controlled_of[i]), bool(held_of[i]))
            outside[spot] = outside.get(spot, 0) + n
        else:
            rendered.append([int(got["r"][i]), int(variant_of[i] or 0), {c: got[a][i] for c, a in v_names}, n])
    # the customers previewed one by one: their full rows, hashes and patterns, out of the counts
    singles = list(dict.fromkeys([e.customer_id for e in ledger] + list(opt_outs)))
    full = list(dict.fromkeys(["customer_id", *present, *wanted]))
    data: dict[str, list[Any]] = {c: [] for c in full}
    if singles:
        place = {(r, v, _key(list(named.values()))): entry for entry in rendered for r, v, named, _ in [entry]}
        named_full = [(c, f"f{i}") for i, c in enumerate(full)]
        for condition in reader._in("c", singles):
            picked = source.fetch_arrow(joined(named_full, condition), [*h_names, *[a for _, a in named_full], "pid"])
            rows = {a: picked.column(a).to_pylist() for a in [*h_names, *[a for _, a in named_full], "pid"]}
            for c, a in named_full:
                data[c] += rows[a]
            for i, pid in enumerate(rows["pid"]):
                pid = int(pid)
                controlled = bool(rows["controlled"][i]) if "controlled" in rows else False
                held = bool(rows["held_out"][i]) if "held_out" in rows else False
                sizes[pid] -= 1
                if pid in reach and not controlled and not held:
                    variant = int(rows["variant"][i]) if "variant" in rows else 0
                    entry = place.get((reach[pid], variant, _key([rows[f"f{full.index(c)}"][i] for c in values_of])))
                else:
                    entry = None
                    outside[(pid, controlled, held)] -= 1
                if pid in reach and not controlled and not held:
                    if entry is None:  # pragma: no cover - the same expressions on the same rows
                        why.append("a customer read alone did not match its group")
                        return None
                    entry[3] -= 1
    total = sum(sizes.values()) + len(data["customer_id"])  # the singles were taken out of their patterns
    if not exact_costs(policy, total):
        why.append("prices whose sum over the audience is not exact in floating point")
        return None
    groups = [PreviewGroup(recipient=standing[pid], count=n, controlled=c, held_out=h) for (pid, c, h), n in outside.items()]
    for pid in reach:  # the members of a reaching pattern who reach the rendering: the rest of the pattern
        left = sizes[pid] - sum(n for (p, _, _), n in outside.items() if p == pid)
        groups.append(PreviewGroup(recipient=standing[pid], count=left))
    plan = plan_groups(campaign, groups, now=now, policy=policy)
    rest = None
    if data["customer_id"]:
        alone = {r.customer_id: r for r in columns.recipients(data, now=now, attributes=wanted)}
        for cid, outs_of in opt_outs.items():
            if cid in alone:
                alone[cid] = with_opt_outs(alone[cid], outs_of, now=now)
        state = ShopState(recipients=alone, audiences={campaign.id: list(alone)}, ledger=ledger)
        rest = _preview(campaign, state, now, policy)
    return preview_of_groups(campaign, plan, [(classes[r], v, named, n) for r, v, named, n in rendered],
                             now=now, policy=policy, ledger=len(ledger), rest=rest)


def _by_class(reach: Mapping[int, int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for pid, c in reach.items():
        out.setdefault(c, []).append(pid)
    return out


def _others(columns: RecipientColumns) -> set[str]:
    """The recipient columns other than the contact points."""
    single = (columns.kakao_friend, columns.timezone, columns.night_consent, columns.opted_out_all)
    return {n for n in single if n} | set(columns.consents.values()) | set(columns.consent_times.values()) | set(
        columns.opted_out.values())


def _key(row: Sequence[Any]) -> tuple[str, ...]:
    """A group's values compared by their text (a NaN equals itself)."""
    return tuple(repr(v) for v in row)
