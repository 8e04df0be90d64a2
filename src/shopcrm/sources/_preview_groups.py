"""The grouped preview's reads: one aggregate query counts a campaign's audience per combination of what decides
(see :mod:`shopcrm.campaigns._preview_sql`); the customers it cannot group are read row by row.

The query, per audience member: the raw values of the consent, opt-out, friendship, zone and night-consent columns
and of the columns the first step's templates read (few distinct values in practice), whether each contact column
is missing (NULL, or only white space as Python strips it), and the hashes the planner draws (global control,
holdout, variant; :func:`~shopcrm.campaigns._preview_sql.hash_columns`), then ``GROUP BY`` all of them with a count.
The groups' raw values become representative recipients through the shop's own
:meth:`~shopcrm.recipients.RecipientColumns.recipients`, so a value means what it means to a tick.

Customers with planned messages in the ledger or with a recorded opt-out are read with their full rows (the same
key columns with them), taken out of their groups, and previewed one by one.  Engines: DuckDB, SQLite (with the
library's hash functions registered on its connection) and PostgreSQL; any other returns ``None`` and the caller
takes the per-customer path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

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

__all__ = ["GROUPED_DIALECTS", "grouped_preview"]

#: the engines the grouped preview runs on (their hashes, text order and white space are the reference's)
GROUPED_DIALECTS = ("duckdb", "sqlite", "postgres")


def grouped_preview(
    reader: EngineReader, campaign: Campaign, audience: exp.Select, *, now: datetime, policy: MessagingPolicy,
    columns: RecipientColumns, ledger: Sequence[LedgerEntry], opt_outs: Mapping[Any, Mapping[str, datetime]],
    blockers: list[str] | None = None,
) -> Preview | None:
    """:func:`shopcrm.campaigns.preview` of ``campaign`` at ``now`` for the customers of ``audience`` (a query of
    ``customer_id``), from one aggregate query; ``None`` when it cannot be exact here (``blockers``, when given,
    receives why), and the caller previews customer by customer."""
    from shopcrm.compiler._dialects import dialect_for
    from shopcrm.program_lift import _sha_hex16
    from shopcrm.sources._event_values import register_sqlite_functions

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
        printable = exp.Between(this=quirks.string_order(first), low=quirks.string_order(exp.Literal.string("!")),
                                high=quirks.string_order(exp.Literal.string("~")))
        keys.append((c, exp.Case().when(exp.Is(this=col(c), expression=exp.null()), exp.null())
                     .when(printable, exp.Literal.string("x"))
                     .when(blank_text(text), exp.Literal.string("")).else_(exp.Literal.string("x"))))

    def md5_bucket(text: exp.Expression) -> exp.Expression:
        hex8 = exp.Substring(this=quirks.md5_hex(text), start=exp.Literal.number(1), length=exp.Literal.number(8))
        return exp.Mod(this=exp.Paren(this=quirks.hex_to_int(hex8)), expression=exp.Literal.number(10000))

    hashes = hash_columns(campaign, policy, col("customer_id"), to_text=quirks.to_text, concat=quirks.concat,
                          md5_bucket=md5_bucket, sha_hex16=lambda t: _sha_hex16(source.dialect, t),
                          string_order=quirks.string_order)
    selected = [*[e for _, e in keys], *hashes.values()]
    aliases = [f"k{i}" for i in range(len(selected))]
    member = col("customer_id").isin(query=audience)

    def keyed(extra: Sequence[tuple[str, str]], condition: exp.Expression | None = None) -> exp.Select:
        """Each audience member's keys (computed once) and ``extra`` columns (name, alias), as ``q``."""
        where = member.copy() if condition is None else exp.and_(member.copy(), condition)
        return exp.select(*[exp.alias_(e.copy(), a, quoted=True) for e, a in zip(selected, aliases, strict=True)],
                          *[exp.alias_(col(c), a, quoted=True) for c, a in extra]).from_(
            reader.customers_table("c")).where(where)

    def q(name: str) -> exp.Column:
        return exp.column(name, table="q", quoted=True)

    # one text per combination (length-prefixed parts, '~' for NULL): phase 2 finds each member's group by it
    parts = [exp.Case().when(exp.Is(this=q(a), expression=exp.null()), exp.Literal.string("~")).else_(quirks.concat(
        quirks.to_text(exp.Length(this=quirks.to_text(q(a)))), exp.Literal.string(":"), quirks.to_text(q(a))))
        for a in aliases]
    pattern = quirks.concat(*parts) if len(parts) > 1 else parts[0] if parts else exp.Literal.string("")
    query = exp.select(*[q(a) for a in aliases], exp.alias_(pattern.copy(), "p", quoted=True),
                       exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True)).from_(
        keyed(()).subquery("q")).group_by(*[q(a) for a in aliases])
    table = source.fetch_arrow(query, [*aliases, "p", "n"])
    values = [table.column(a).to_pylist() for a in aliases]
    patterns: list[str] = table.column("p").to_pylist()
    counts: list[int] = table.column("n").to_pylist()
    rows = list(zip(*values, strict=True)) if values else [()] * len(counts)
    index = {p: i for i, p in enumerate(patterns)}
    # the customers previewed one by one: their full rows, and their patterns to take them out of their groups
    singles = list(dict.fromkeys([e.customer_id for e in ledger] + list(opt_outs)))
    full = list(dict.fromkeys(["customer_id", *present, *wanted]))
    data: dict[str, list[Any]] = {c: [] for c in full}
    single_patterns: list[str] = []
    if singles:
        named = [(c, f"f{i}") for i, c in enumerate(full)]
        for condition in reader._in("c", singles):
            picked = exp.select(*[q(a) for _, a in named], exp.alias_(pattern.copy(), "p", quoted=True)).from_(
                keyed(named, condition).subquery("q"))
            got = source.fetch_arrow(picked, [*[a for _, a in named], "p"])
            for c, a in named:
                data[c] += got.column(a).to_pylist()
            single_patterns += got.column("p").to_pylist()
        for p in single_patterns:
            at = index.get(p)
            if at is None or counts[at] <= 0:  # pragma: no cover - the same expressions on the same rows
                why.append("a customer read alone did not match its group")
                return None
            counts[at] -= 1
    total = sum(counts) + len(data["customer_id"])
    if not exact_costs(policy, total):
        why.append("prices whose sum over the audience is not exact in floating point")
        return None
    shown = {c: [row[i] for row in rows] for i, (c, _) in enumerate(keys)}
    shown["customer_id"] = list(range(len(rows)))
    standing = columns.recipients(shown, now=now, attributes=[c for c in wanted if c in present])
    flags = list(hashes)
    groups = [PreviewGroup(recipient=r, count=n, **{f: (bool(v) if f != "variant" else int(v))
                                                    for f, v in zip(flags, row[len(keys):], strict=True)})
              for r, n, row in zip(standing, counts, rows, strict=True)]
    plan = plan_groups(campaign, groups, now=now, policy=policy)
    rendered: list[tuple[int, dict[str, Any], int]] = []
    reaching = [(p, c) for p, c in zip(patterns, plan.class_of, strict=True) if c is not None]
    if reaching:
        by_class: dict[int, list[str]] = {}
        for p, c in reaching:
            by_class.setdefault(c, []).append(p)
        # each member's class, from its combination's text (computed once per member in a subquery)
        shown_values = [(c, f"v{i}") for i, c in enumerate(values_of)]
        texts = exp.select(exp.alias_(pattern, "p", quoted=True), *[q(a) for _, a in shown_values]).from_(
            keyed(shown_values).subquery("q"))

        def r(name: str) -> exp.Column:
            return exp.column(name, table="r", quoted=True)

        which = exp.Case(ifs=[exp.If(this=exp.In(this=r("p"), expressions=[exp.Literal.string(p) for p in found]),
                                     true=exp.Literal.number(c)) for c, found in by_class.items()])
        second = exp.select(exp.alias_(which, "cls", quoted=True), *[r(a) for _, a in shown_values],
                            exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True)).from_(
            texts.subquery("r")).group_by(which.copy(), *[r(a) for _, a in shown_values])
        got = source.fetch_arrow(second, ["cls", *[f"v{i}" for i in range(len(values_of))], "n"])
        classes = got.column("cls").to_pylist()
        shared = [got.column(f"v{i}").to_pylist() for i in range(len(values_of))]
        amounts: list[int] = got.column("n").to_pylist()
        for i, (c, n) in enumerate(zip(classes, amounts, strict=True)):
            if c is not None:
                rendered.append((int(c), {name: shared[j][i] for j, name in enumerate(values_of)}, n))
        if data["customer_id"]:  # the singles' members of these classes are previewed one by one: out of the counts
            place = {(c, _key(list(named.values()))): i for i, (c, named, _) in enumerate(rendered)}
            class_by_pattern = dict(reaching)
            for at_row, p in enumerate(single_patterns):
                c = class_by_pattern.get(p)
                if c is None:
                    continue
                spot = place.get((c, _key([data[name][at_row] for name in values_of])))
                if spot is None:  # pragma: no cover - the same expressions on the same rows
                    why.append("a customer read alone did not match its rendering group")
                    return None
                cls_index, named, n = rendered[spot]
                rendered[spot] = (cls_index, named, n - 1)
    rest = None
    if data["customer_id"]:
        alone = {r.customer_id: r for r in columns.recipients(data, now=now, attributes=wanted)}
        for cid, outs in opt_outs.items():
            if cid in alone:
                alone[cid] = with_opt_outs(alone[cid], outs, now=now)
        state = ShopState(recipients=alone, audiences={campaign.id: list(alone)}, ledger=ledger)
        rest = _preview(campaign, state, now, policy)
    return preview_of_groups(campaign, plan, rendered, now=now, policy=policy, ledger=len(ledger), rest=rest)


def _others(columns: RecipientColumns) -> set[str]:
    """The recipient columns other than the contact points."""
    single = (columns.kakao_friend, columns.timezone, columns.night_consent, columns.opted_out_all)
    return {n for n in single if n} | set(columns.consents.values()) | set(columns.consent_times.values()) | set(
        columns.opted_out.values())


def _key(row: Sequence[Any]) -> tuple[str, ...]:
    """A group's values compared by their text (a NaN equals itself)."""
    return tuple(repr(v) for v in row)
