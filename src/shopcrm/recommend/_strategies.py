"""What a recommendation request says: the strategies, their fallback chain, the filters and k.

Values only (pydantic models, frozen, unknown keys refused), so that a request reads the same from Python, JSON
or a campaign file.  Every strategy is named by its ``kind``; a request is a chain of strategies tried in order
until each customer has ``k`` items, and every returned row names the strategy that produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from shopcrm.errors import ShopCRMError

__all__ = [
    "CATALOG_EVENTS",
    "AFFINITY_WEIGHTS",
    "AlsoBought",
    "AlsoViewed",
    "Filters",
    "Personal",
    "Popular",
    "RecommendError",
    "Recommendation",
    "Strategy",
    "Trending",
    "ViewedNotBought",
    "parse_filters",
    "parse_request",
    "parse_strategy",
]

#: the events the recommenders read (others are ignored)
CATALOG_EVENTS = ("product_viewed", "cart_added", "order_completed")
#: how much one event says about a customer's taste for the product's category (the personal blend)
AFFINITY_WEIGHTS = {"product_viewed": 1, "cart_added": 2, "order_completed": 3}


class RecommendError(ShopCRMError, ValueError):
    """A recommendation request that cannot be met as written (the message says what would work)."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlsoBought(_Value):
    """Products bought by the customers who bought what this customer bought (co-occurrence of distinct buyers).

    A pair counts when at least ``min_support`` distinct customers ordered both.  ``measure`` normalises the count
    so that best-sellers do not win everything: ``lift`` = n(a,b)·N / (n(a)·n(b)), ``cosine`` =
    n(a,b) / √(n(a)·n(b)).  A candidate's score is its best pair with any product the customer ordered."""

    kind: Literal["also_bought"] = "also_bought"
    measure: Literal["lift", "cosine"] = "lift"
    min_support: int = Field(default=2, ge=1)


class AlsoViewed(_Value):
    """As :class:`AlsoBought`, over the customers who viewed both products (``product_viewed``)."""

    kind: Literal["also_viewed"] = "also_viewed"
    measure: Literal["lift", "cosine"] = "lift"
    min_support: int = Field(default=2, ge=1)


class ViewedNotBought(_Value):
    """Products the customer viewed and has not ordered, the most viewed first (score: their views)."""

    kind: Literal["viewed_not_bought"] = "viewed_not_bought"


class Trending(_Value):
    """Products whose ``event`` count in the last ``recent_days`` runs ahead of their last ``baseline_days``.

    score = (r / recent_days) / ((b + smoothing) / baseline_days) with r the recent count and b the baseline's
    (which includes the recent days).  ``smoothing`` keeps a product with one or two sales, all of them recent,
    from topping the list: a product needs some volume to trend.  Only products with at least one recent event."""

    kind: Literal["trending"] = "trending"
    recent_days: int = Field(default=7, ge=1)
    baseline_days: int = Field(default=28, ge=2)
    event: Literal["order_completed", "product_viewed", "cart_added"] = "order_completed"
    smoothing: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _windows(self) -> Trending:
        if self.baseline_days <= self.recent_days:
            raise ValueError(f"baseline_days ({self.baseline_days}) must be longer than recent_days "
                             f"({self.recent_days}): the baseline is the longer window the recent one is compared with")
        return self


class Popular(_Value):
    """The products with the most distinct buyers (in the last ``days`` when given; within ``category`` when
    given).  The same list for everyone: the usual last fallback."""

    kind: Literal["popular"] = "popular"
    category: str | None = None
    days: int | None = Field(default=None, ge=1)


class Personal(_Value):
    """A blend by the customer's category affinity: for a product p of category c,
    score = a(customer, c) · n(p) / n(c), where n counts distinct buyers (n(c) summed over c's products, N over
    every category) and the affinity a(customer, c) = (w(customer, c) + prior · n(c) / N) / (w(customer) + prior)
    is the share of the customer's catalog events in c (by weight: viewed 1, added to cart 2, ordered 3), drawn
    towards the shop's own mix of categories by ``prior`` (in the same weight units: a customer with few events
    still sees the shop's best-sellers of the categories they have not touched; ``prior=0`` keeps to the touched
    categories).  A customer without catalog events gets nothing from it (the fallback takes over)."""

    kind: Literal["personal"] = "personal"
    prior: int = Field(default=6, ge=0)


Strategy = Annotated[AlsoBought | AlsoViewed | ViewedNotBought | Trending | Popular | Personal, Field(discriminator="kind")]
_STRATEGY: TypeAdapter[Any] = TypeAdapter(Strategy)
KINDS = ("also_bought", "also_viewed", "viewed_not_bought", "trending", "popular", "personal")
#: the chain a single strategy falls back along, so that everyone gets k items
DEFAULT_FALLBACK: Mapping[str, tuple[str, ...]] = {
    "personal": ("also_bought", "popular"),
    "also_bought": ("popular",), "also_viewed": ("popular",), "viewed_not_bought": ("popular",),
    "trending": ("popular",), "popular": (),
}


class Filters(_Value):
    """Which candidates may be shown.  ``in_stock`` (``available`` not false and ``stock`` unknown or above 0) and
    ``has_image`` (a non-empty ``image_url``) need the catalog; ``not_bought`` drops what the customer already
    ordered; ``exclude`` drops the given product ids (the item that triggered a message); ``min_price`` /
    ``max_price`` keep a price band (the catalog's price, else the product's latest price in the events)."""

    in_stock: bool = False
    has_image: bool = False
    not_bought: bool = False
    exclude: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None

    @model_validator(mode="after")
    def _band(self) -> Filters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price ({self.min_price}) is above max_price ({self.max_price})")
        return self

    @property
    def needs_catalog(self) -> tuple[str, ...]:
        """The filters that read the catalog's own columns."""
        return tuple(name for name in ("in_stock", "has_image") if getattr(self, name))


class Recommendation(_Value):
    """A whole request: the strategies tried in order (the fallback chain), the filters, and k."""

    strategies: tuple[Strategy, ...]
    k: int = Field(default=10, ge=1, le=1000)
    filters: Filters = Filters()

    @model_validator(mode="after")
    def _chain(self) -> Recommendation:
        if not self.strategies:
            raise ValueError("a request needs at least one strategy, e.g. ['personal', 'popular']")
        return self


def _explain(error: ValidationError, what: str) -> RecommendError:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return RecommendError(f"invalid {what}: " + "; ".join(parts))


def parse_strategy(value: Any) -> Any:
    """A strategy from its name (``"popular"``), a dict (``{"kind": "also_bought", "measure": "cosine"}``) or a
    strategy value."""
    if isinstance(value, BaseModel) and getattr(value, "kind", None) in KINDS:
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise RecommendError(f"a strategy is a name ({', '.join(KINDS)}) or a dict with a 'kind'; got {value!r}")
    kind = value.get("kind")
    if kind not in KINDS:
        import difflib

        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RecommendError(f"unknown strategy {kind!r}{hint}; the strategies are {', '.join(KINDS)}")
    try:
        return _STRATEGY.validate_python(dict(value))
    except ValidationError as error:
        raise _explain(error, f"{kind} strategy") from None


def parse_filters(value: Filters | Mapping[str, Any] | None = None, **more: Any) -> Filters:
    """Filters from a dict or keywords (``in_stock=True, exclude=["P1"]``)."""
    data = dict(value.model_dump() if isinstance(value, Filters) else (value or {}))
    data.update({k: v for k, v in more.items() if v is not None})
    if isinstance(data.get("exclude"), str):
        data["exclude"] = (data["exclude"],)
    if "exclude" in data:
        data["exclude"] = tuple(str(p) for p in data["exclude"])
    try:
        return Filters.model_validate(data)
    except ValidationError as error:
        raise _explain(error, "filters") from None


def parse_request(strategy: Any = "personal", *, k: int = 10, filters: Filters | None = None,
                  fallback: Sequence[Any] | None = None) -> Recommendation:
    """A request from what a caller wrote.  ``strategy`` is one strategy (then it falls back along
    :data:`DEFAULT_FALLBACK`, or ``fallback`` when given: ``()`` for none) or a list, which is the whole chain."""
    if isinstance(strategy, list | tuple):
        chain = [parse_strategy(s) for s in strategy]
        if fallback:
            chain += [parse_strategy(s) for s in fallback]
    else:
        first = parse_strategy(strategy)
        rest = DEFAULT_FALLBACK[first.kind] if fallback is None else fallback
        chain = [first, *(parse_strategy(s) for s in rest)]
    try:
        return Recommendation(strategies=tuple(chain), k=k, filters=filters or Filters())
    except ValidationError as error:
        raise _explain(error, "recommendation request") from None
