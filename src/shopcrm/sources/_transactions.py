"""Re-entrant transactions on one connection: a block inside a block joins it, and only the outermost block
commits (or rolls back, without hiding the error that made the rollback necessary)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Transactions", "is_contention", "is_duplicate_key"]


class Transactions:
    """Mixed into a source: ``_transaction()`` over the source's ``_begin``, ``_commit`` and ``_rollback``.
    ``_depth`` says how many blocks are open (0: statements run on their own)."""

    _depth: int = 0

    def _begin(self) -> None:
        """Start a transaction (DB-API connections start one implicitly)."""

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield
            self._depth = 0
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0


def is_contention(error: Exception) -> bool:
    """Whether a driver's ``error`` is the engine refusing one of two transactions that wrote the same rows: a
    deadlock or a serialisation failure (PostgreSQL ``40P01`` / ``40001``, MySQL 1213), a lock wait that timed out
    (MySQL 1205), SQLite's ``database is locked`` or DuckDB's write conflict (``Conflict on update``).  Read from the
    message, which every driver words so, without importing any of them; shopcrm's own errors never are one."""
    from shopcrm.errors import ShopCRMError

    if isinstance(error, ShopCRMError):
        return False
    text = str(error).lower()
    return any(word in text for word in ("deadlock", "could not serialize", "lock wait timeout", "conflict", "database is locked"))


def is_duplicate_key(error: Exception) -> bool:
    """Whether a driver's ``error`` is a row refused because its key is taken (a primary key or unique constraint:
    another writer inserted it first), read from the message as :func:`is_contention` does."""
    text = str(error).lower()
    return "duplicate" in text or "unique" in text or "primary key" in text
