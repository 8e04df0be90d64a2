"""A broadcast's hashes, computed by the engine in the query that reads its members (issue 15).

A one-off or recurring campaign asks three or four hashes of every member: the idempotency key of its message
(SHA-256), the global control group (SHA-256), the holdout and the variant (MD5 buckets).  In Python each costs
a microsecond or two, seconds at a million members; DuckDB, PostgreSQL, MySQL and Spark hash a column at a time.  The
tick reads them beside the recipient columns and hands them to the planner as
:class:`~shopcrm.campaigns.AudienceHashes`; the planner hashes only what is missing.

The expressions are the grouped preview's (:func:`~shopcrm.campaigns._preview_sql.hash_columns`) plus the key.
A key hashes ``repr(customer_id)``: an integer id's text is its digits on every engine; a text id's repr is the
text in single quotes exactly when it is printable (``str.isprintable``: what repr escapes is not) without a quote
or a backslash, which :func:`audience_hashes` checks for the whole audience at once; otherwise, and for any other
column type, the keys are left to Python.  Buckets
hash ``str(customer_id)``, the engine's text of an integer or a text column.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from sqlglot import exp

from shopcrm.campaigns import AudienceHashes, Campaign, MessagingPolicy
from shopcrm.campaigns._preview_sql import hash_columns
from shopcrm.compiler._dialects import dialect_for
from shopcrm.schema import ColumnType
from shopcrm.sources._event_values import sha_hex16

__all__ = ["HASHED_DIALECTS", "audience_hashes", "hash_expressions"]

#: the engines whose SHA-256, MD5 and text of an id are those of Python's hashlib and ``str`` (SQLite's are Python's
#: own, registered on its connection: no faster than the planner's)
HASHED_DIALECTS = ("duckdb", "postgres", "mysql", "spark")
#: the names of the computed columns (never a customers column: the library's prefix)
_KEY, _CONTROLLED, _HELD_OUT, _VARIANT = "__shopcrm_key", "__shopcrm_controlled", "__shopcrm_held_out", "__shopcrm_variant"
_ASKED = {"controlled": _CONTROLLED, "held_out": _HELD_OUT, "variant": _VARIANT}


def hash_expressions(
    dialect: str, campaign: Campaign, policy: MessagingPolicy, occurrence: str, id_type: ColumnType | None,
    customer_id: exp.Expression,
) -> dict[str, exp.Expression]:
    """The hashes the planner asks of each member of ``campaign``'s ``occurrence``, as columns over
    ``customer_id`` (empty where the engine or the id's type cannot give Python's)."""
    if dialect not in HASHED_DIALECTS or id_type not in (ColumnType.INTEGER, ColumnType.STRING):
        return {}
    quirks = dialect_for(dialect)

    found = hash_columns(campaign, policy, customer_id, to_text=quirks.to_text, concat=quirks.concat,
                         md5_bucket=quirks.md5_bucket, sha_hex16=lambda t: sha_hex16(dialect, t),
                         string_order=quirks.string_order)
    out = {_ASKED[name]: expression for name, expression in found.items()}
    step = campaign.send_steps()[0]
    prefix = exp.Literal.string(f"{campaign.id}\x1f{occurrence}\x1f{step.send}\x1f")
    if id_type is ColumnType.INTEGER:
        printed = quirks.to_text(customer_id.copy())
    else:  # repr of a plain text: the text in single quotes (audience_hashes checks that the ids are plain)
        quote = exp.Literal.string("'")
        printed = quirks.concat(quote, quirks.to_text(customer_id.copy()), quote.copy())
    out[_KEY] = sha_hex16(dialect, quirks.concat(prefix, printed), 32)
    return out


def audience_hashes(
    campaign: Campaign, occurrence: str, id_type: ColumnType | None, columns: MutableMapping[str, list[Any]],
) -> AudienceHashes | None:
    """The planner's :class:`AudienceHashes` from the columns :func:`hash_expressions` asked for (taken out of
    ``columns``); None when none were asked or the ids are not the column type's Python values."""
    found = {name: columns.pop(name) for name in (_KEY, _CONTROLLED, _HELD_OUT, _VARIANT) if name in columns}
    if not found:
        return None
    ids = columns["customer_id"]
    kinds = set(map(type, ids))
    if not kinds:
        return None
    if kinds != ({int} if id_type is ColumnType.INTEGER else {str}):  # e.g. a DECIMAL or UUID id: Python's own text
        return None
    keys = found.get(_KEY)
    if id_type is ColumnType.STRING and keys is not None:
        joined = "".join(ids)  # one pass in C over every id: repr(id) == f"'{id}'" for all of them
        if not (joined.isprintable() and "'" not in joined and "\\" not in joined):
            keys = None
    step = campaign.send_steps()[0]

    def flags(name: str) -> list[bool | None] | None:
        values = found.get(name)
        if values is not None and not set(map(type, values)) <= {bool}:  # MySQL's booleans are 0 and 1
            return [None if v is None else bool(v) for v in values]
        return values

    return AudienceHashes(occurrence=occurrence, step=step.send, members=ids, keys=keys, controlled=flags(_CONTROLLED),
                          held_out=flags(_HELD_OUT), variant=found.get(_VARIANT))
