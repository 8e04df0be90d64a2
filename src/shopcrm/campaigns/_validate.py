"""Checking a campaign's templates before it is saved: render every variant on every channel of the chain
for sample customers, so a missing variable or an over-long message fails now, not at send time. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shopcrm.campaigns._models import Campaign, Triggered
from shopcrm.campaigns._planner import Recipient, message_context
from shopcrm.campaigns._policy import MessagingPolicy, local
from shopcrm.campaigns._templates import SAMPLE_RECOMMENDATIONS, Renderer
from shopcrm.errors import CampaignError
from shopcrm.timeline import to_utc_naive

__all__ = ["check_templates"]


def check_templates(
    campaign: Campaign,
    samples: Sequence[Recipient],
    *,
    now: datetime,
    policy: MessagingPolicy | None = None,
    contexts: Mapping[Any, Mapping[str, Any]] | None = None,
    event: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """Every problem rendering ``campaign`` for ``samples``, as ``(where, message)`` pairs (empty: all good).

    ``where`` is ``<step>.<variant>.<channel>.<part>``.  ``event`` is a sample trigger event for a
    scenario's ``{{ event.* }}`` variables; without one, templates that read ``event`` are only
    checked for syntax.  With no samples at all, templates are checked for syntax only.
    """
    rules = policy or MessagingPolicy()
    when = to_utc_naive(now)
    problems: dict[tuple[str, str], None] = {}
    for message in rules.problems(campaign.purpose, campaign.channels):
        problems[("policy", message)] = None
    renderer = Renderer()
    advertising = campaign.purpose == "advertising"
    decorations = rules.decorations()
    triggered = isinstance(campaign.schedule, Triggered)
    for step in campaign.send_steps():
        for variant in campaign.variants_of(step):
            content = variant.content
            reads_event = "event" in renderer.names(content)
            if "link" in renderer.names(content) and rules.tracking is None:
                problems[(f"{step.send}.{variant.name}", "the template uses link() but no tracking base is configured: "
                          "set MessagingPolicy.tracking = TrackingPolicy(base_url='https://shop.example/r', secret=...)")] = None
            for channel in campaign.channels:
                where = f"{step.send}.{variant.name}"
                sources = [content.text, content.subject, content.html]
                if content.alimtalk is not None:
                    sources += list(content.alimtalk.variables.values())
                sources += [x for b in content.buttons for x in (b.name, b.url)]
                try:
                    for source in sources:
                        if source is not None:
                            renderer.template(source, where=f"{where}.{channel}")
                except CampaignError as error:
                    problems.update(dict.fromkeys(error.problems))
                    break
                if reads_event and (event is None or not triggered):
                    continue
                for recipient in samples:
                    extra = (contexts or {}).get(recipient.customer_id, {})
                    if content.recommend is not None and "recommendations" not in extra:  # real ones come at tick time
                        extra = {**extra, "recommendations": SAMPLE_RECOMMENDATIONS[:content.recommend.k]}
                    context = message_context(
                        recipient, extra, campaign, step.send,
                        local(when, recipient.timezone or rules.timezone), rules, event=event if triggered else None,
                    )
                    try:
                        renderer.render(content, channel, context, advertising=advertising, decorations=decorations, where=where)
                    except CampaignError as error:
                        for at, message in error.problems:
                            problems[(at, f"{message} (for customer {recipient.customer_id!r})")] = None
                        break
    return list(problems)
