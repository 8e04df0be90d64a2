"""What the shell's workers read of a shop (issue 15: the shell without a cycle).

Ticking, dispatching, the report's SQL and the recommendations a message asks for take a :class:`ShopView`,
not the :class:`~shopcrm.Shop` facade: its source (the engine, and through it the stores), its policies, and
how a rule's references to saved segments resolve.  ``Shop`` is one; the workers never import the facade, so
the facade sits above them and an import-linter contract keeps it so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shopcrm.campaigns import MessagingPolicy
    from shopcrm.dsl import Rule
    from shopcrm.dsl._parse import RuleLike
    from shopcrm.lifecycle import LifecyclePolicy
    from shopcrm.recipients import RecipientColumns
    from shopcrm.sources._base import Source

__all__ = ["ShopView"]


class ShopView(Protocol):
    """A shop as its workers see it."""

    @property
    def source(self) -> Source:
        """The engine the shop's tables are read on, and its stores."""

    @property
    def messaging_policy(self) -> MessagingPolicy:
        """The legal and policy rules messages follow."""

    @property
    def recipient_columns(self) -> RecipientColumns:
        """Which customers columns hold contacts and consents."""

    @property
    def lifecycle_policy(self) -> LifecyclePolicy:
        """The thresholds lifecycle stages are classified by."""

    def _resolve(self, rule: RuleLike) -> Rule:
        """The rule with its references to saved segments resolved."""
