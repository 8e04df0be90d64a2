"""The exceptions shopcrm raises; each message says what was wrong and what would be right."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CampaignError", "MappingError", "PluginError", "RuleError", "SchemaError", "SegmentCycleError", "ShopCRMError"]


class ShopCRMError(Exception):
    """Base class of every error shopcrm raises on purpose."""


class RuleError(ShopCRMError, ValueError):
    """A segment rule is malformed, or does not fit the data it runs on.

    Attributes
    ----------
    path:
        The JSON path of the first problem, e.g. ``and[1].performed.within.last``
        (empty for a problem with the whole rule).
    problems:
        Every problem found, as ``(path, message)`` pairs, first one first.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("RuleError needs at least one problem")
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        self.path: str = self.problems[0][0]
        lines = [f"{path}: {message}" if path else message for path, message in self.problems]
        super().__init__("\n".join(lines))

    @classmethod
    def at(cls, path: str, message: str) -> RuleError:
        """One problem at one path."""
        return cls([(path, message)])


class SchemaError(RuleError):
    """A rule names a field that the data source does not have."""


class MappingError(SchemaError):
    """A shop's tables do not fit its :class:`shopcrm.mapping.Mapping`: a table or column is missing,
    the two tables' customer ids differ in type, or the properties column holds no JSON.

    ``path`` is the mapping field at fault, e.g. ``events.ts`` or ``customers.columns.grade``.
    """


class SegmentCycleError(RuleError):
    """Named segments refer to each other in a cycle."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle: tuple[str, ...] = tuple(cycle)
        chain = " -> ".join(self.cycle)
        super().__init__(
            [("", f"named segments form a cycle: {chain}; remove one of these in_segment references")]
        )


class PluginError(ShopCRMError):
    """A plugin registered under a shopcrm entry-point group could not be used."""


class CampaignError(ShopCRMError, ValueError):
    """A campaign, its schedule or one of its templates is invalid.

    ``problems`` holds every problem as ``(where, message)`` pairs, e.g.
    ``("variants[0].sms", "74 bytes over the LMS limit of 2,000 bytes (CP949)")``.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("CampaignError needs at least one problem")
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        self.path: str = self.problems[0][0]
        super().__init__("\n".join(f"{where}: {message}" if where else message for where, message in self.problems))


# ---------------------------------------------------------------- issue 12: checks (warnings)
__all__ += ["CampaignWarning", "ShopCRMWarning", "UnseenEventWarning"]


class ShopCRMWarning(UserWarning):
    """Base class of the warnings shopcrm gives when something would silently do nothing."""


class UnseenEventWarning(ShopCRMWarning):
    """A rule names an event that never occurs in the shop's events table, so that part counts 0.

    ``event`` is the name, ``suggestion`` the closest event the shop has (or None).
    """

    def __init__(self, event: str, suggestion: str | None = None) -> None:
        self.event = event
        self.suggestion = suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else "; shop.check() lists the events the shop has"
        super().__init__(f"event {event!r} never occurs in the events table, so it counts 0{hint}")


class CampaignWarning(ShopCRMWarning):
    """A saved campaign (or enabled playbook) would never send, or not to everyone it should; ``findings``
    holds the :class:`~shopcrm.checks.CheckReport` about it."""

    def __init__(self, campaign_id: str, findings: object) -> None:
        self.campaign_id = campaign_id
        self.findings = findings
        super().__init__(f"campaign {campaign_id!r} was saved, but {findings}")
