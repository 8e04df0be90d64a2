"""A deterministic synthetic Korean shop, generated column-wise with numpy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

__all__ = ["DEMO_NOW", "PLANTED_PAIRS", "DemoShop", "generate"]

DEMO_NOW = datetime(2026, 11, 24)

FAMILY = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황"]
FAMILY_WEIGHTS = [21.5, 14.7, 8.4, 4.7, 4.3, 2.4, 2.1, 2.1, 2.0, 1.7, 1.5, 1.5, 1.5, 1.5, 1.4, 1.4]
GIVEN = list("민서지현준우윤하수영예진도연은채시원재건유나")
GRADES = ["일반", "실버", "골드", "VIP"]
GRADE_WEIGHTS = [0.62, 0.22, 0.12, 0.04]
REGIONS = ["서울", "경기", "부산", "인천", "대구", "대전", "광주", "울산", "세종", "강원", "충북", "충남", "전북", "전남", "경북", "경남", "제주"]
REGION_WEIGHTS = [19, 26, 6.5, 5.8, 4.6, 2.8, 2.8, 2.2, 0.7, 3, 3.1, 4.1, 3.5, 3.5, 5, 6.4, 1.3]
CATEGORIES = ["shoes", "bags", "outer", "tops", "bottoms", "beauty", "kids", "living", "sports", "accessories"]
EVENTS = ["session_started", "product_viewed", "cart_added", "cart_removed", "order_completed", "promotion_joined", "coupon_issued"]
EVENT_WEIGHTS = [0.26, 0.44, 0.12, 0.03, 0.08, 0.035, 0.035]
N_PRODUCTS = 500
N_PROMOTIONS = 8
#: complementary products: a customer who orders the first of a pair orders its partner in their next order far more
#: often than anyone else orders it (``also_bought`` should recover each pair)
PLANTED_PAIRS: tuple[tuple[str, str], ...] = (
    ("P11", "P41"), ("P13", "P29"), ("P17", "P53"), ("P19", "P61"),
    ("P23", "P47"), ("P26", "P71"), ("P31", "P83"), ("P35", "P97"),
)
#: the chance that the order after an order of a pair's first product is its partner
PAIR_FOLLOW = 0.7
#: the chance that a product event of a customer with favourite categories is in one of them
TASTE_SHARE = 0.5
#: the Korean product nouns of each category (names are an adjective, a noun and a colour)
PRODUCT_NOUNS: dict[str, list[str]] = {
    "shoes": ["러닝화", "스니커즈", "로퍼", "부츠", "샌들", "슬립온"],
    "bags": ["토트백", "크로스백", "백팩", "클러치", "에코백"],
    "outer": ["패딩", "코트", "자켓", "가디건", "바람막이"],
    "tops": ["티셔츠", "니트", "셔츠", "맨투맨", "블라우스"],
    "bottoms": ["청바지", "슬랙스", "스커트", "조거팬츠", "반바지"],
    "beauty": ["립스틱", "선크림", "토너", "쿠션팩트", "세럼"],
    "kids": ["아동 점퍼", "유아 내의", "키즈 운동화", "아동 원피스"],
    "living": ["머그컵", "쿠션커버", "수건 세트", "디퓨저", "러그"],
    "sports": ["요가매트", "덤벨", "레깅스", "트레이닝복", "골프장갑"],
    "accessories": ["머플러", "모자", "양말 세트", "선글라스", "벨트", "장갑"],
}
ADJECTIVES = ["베이직", "프리미엄", "데일리", "오버핏", "클래식", "소프트", "울", "린넨", "캐시미어", "라이트"]
COLOURS = ["블랙", "화이트", "네이비", "베이지", "그레이", "카키"]
PRODUCT_BASE_URL = "https://shop.example.com"


@attrs.frozen
class DemoShop:
    """The generated tables (pyarrow) and the instant they end at."""

    customers: Any
    events: Any
    now: datetime
    #: the catalog: product_id, name, category, price, stock, image_url, product_url, available (as at ``now``)
    products: Any = None
    #: each product's price, stock and availability from ``ts`` on: one row per change (stock at the end of a day)
    product_history: Any = None


def _strings(pa: Any, codes: Any, dictionary: list[str]) -> Any:
    """A string column from integer codes into a small dictionary (fast, in C++)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(dictionary)).cast(pa.string())


def _nullable(pa: Any, array: Any, mask: Any) -> Any:
    import pyarrow.compute as pc

    return pc.if_else(pa.array(mask), pa.nulls(len(array), type=array.type), array)


def generate(scale: int = 10_000, seed: int = 0, now: datetime = DEMO_NOW) -> DemoShop:
    """A shop of ``scale`` customers and about ``11 * scale`` events over the year before ``now``.

    The same ``scale``, ``seed`` and ``now`` always give the same tables.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if scale < 1:
        raise ValueError(f"scale must be at least 1 customer, not {scale}")
    rng = np.random.default_rng(seed)
    n = scale
    now64 = np.datetime64(now, "us")
    day = np.timedelta64(86_400_000_000, "us")

    # ------------------------------------------------------------- customers
    ids = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 7))
    family = rng.choice(len(FAMILY), n, p=np.array(FAMILY_WEIGHTS) / sum(FAMILY_WEIGHTS))
    given_a = rng.integers(0, len(GIVEN), n)
    given_b = rng.integers(0, len(GIVEN), n)
    names = np.char.add(np.char.add(np.array(FAMILY)[family], np.array(GIVEN)[given_a]), np.array(GIVEN)[given_b])
    age = np.clip(rng.normal(34, 11, n), 14, 80).astype(np.int64)
    # signups: two years back, more of them recent (the shop is growing)
    signup_age_days = 730 * rng.power(0.6, n)
    signed_up_at = now64 - (signup_age_days * day.astype(np.int64)).astype("timedelta64[us]")
    phone = np.char.add(np.char.add("010-", np.char.zfill(rng.integers(0, 10000, n).astype(str), 4)),
                        np.char.add("-", np.char.zfill(rng.integers(0, 10000, n).astype(str), 4)))
    email = np.char.add(np.char.lower(ids), "@example.com")
    customers = pa.table(
        {
            "customer_id": pa.array(ids.tolist(), type=pa.string()),
            "name": pa.array(names.tolist(), type=pa.string()),
            "gender": _strings(pa, rng.choice(2, n, p=[0.58, 0.42]), ["F", "M"]),
            "age": _nullable(pa, pa.array(age), rng.random(n) < 0.06),
            "grade": _strings(pa, rng.choice(4, n, p=GRADE_WEIGHTS), GRADES),
            "region": _strings(pa, rng.choice(len(REGIONS), n, p=np.array(REGION_WEIGHTS) / sum(REGION_WEIGHTS)), REGIONS),
            "signed_up_at": pa.array(signed_up_at, type=pa.timestamp("us")),
            "sms_consent": pa.array(rng.random(n) < 0.55),
            "email_consent": pa.array(rng.random(n) < 0.45),
            "kakao_consent": pa.array(rng.random(n) < 0.62),
            "night_consent": pa.array(rng.random(n) < 0.12),
            "phone": pa.array(phone.tolist(), type=pa.string()),
            "email": pa.array(email.tolist(), type=pa.string()),
        }
    )
    # added later, from its own stream so the columns above stay as they were: Kakao channel friends
    # (Brand Messages reach only them), mostly among those who consented to Kakao advertising
    friends = np.random.default_rng(seed + 7_919).random(n) < np.where(customers["kakao_consent"].to_numpy(), 0.7, 0.1)
    customers = customers.append_column("kakao_friend", pa.array(friends))

    # ---------------------------------------------------------------- events
    # activity: a few heavy users, many light ones; ~10 behaviour events each on average
    activity = rng.gamma(0.9, 10.0 / 0.9, n)
    counts = rng.poisson(activity)
    owner = np.repeat(np.arange(n), counts)
    m = len(owner)
    # each customer is last active some time ago: most recently, some lapsed for months
    last_active_days = np.where(rng.random(n) < 0.7, rng.exponential(12, n), rng.uniform(30, 365, n))
    span_days = np.minimum(signup_age_days, 365.0)
    # a customer cannot have gone quiet before signing up: those are last active some time since
    active_end = np.where(last_active_days < signup_age_days, last_active_days, signup_age_days * rng.random(n))
    # event age = last-active age + a skewed share of the customer's active span
    event_age_days = active_end[owner] + (span_days[owner] - active_end[owner]).clip(0) * (1 - rng.power(2.5, m))
    ts = now64 - (event_age_days * day.astype(np.int64)).astype("timedelta64[us]")
    kind = rng.choice(len(EVENTS), m, p=EVENT_WEIGHTS)

    # products: Zipf-like popularity, P1 and P2 the best sellers (shoes)
    popularity = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 0.9
    product = rng.choice(N_PRODUCTS, m, p=popularity / popularity.sum())
    product_category = rng.integers(0, len(CATEGORIES), N_PRODUCTS)
    product_category[:2] = 0  # P1, P2 are shoes
    shoe_lover = rng.random(n) < 0.15
    prefer_shoes = shoe_lover[owner] & (rng.random(m) < 0.5)
    shoe_products = np.flatnonzero(product_category == 0)
    product = np.where(prefer_shoes, shoe_products[rng.integers(0, len(shoe_products), m)], product)
    price_table = (rng.integers(99, 1990, N_PRODUCTS) * 100).astype(np.int64)
    quantity = rng.integers(1, 4, m)
    # added later, from their own streams so the draws above stay as they were: category tastes and complementary pairs
    product = _tastes(np.random.default_rng(seed + 15_485_863), product, owner, kind, shoe_lover, product_category,
                      popularity)
    product = _pairs(np.random.default_rng(seed + 32_452_843), product, owner, ts, kind == 4)
    category = product_category[product]

    has_product = np.isin(kind, [1, 2, 3, 4])
    is_order = kind == 4
    is_promo = kind == 5
    promo = rng.choice(N_PROMOTIONS, m, p=np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.06, 0.05, 0.04]))

    product_names = [f"P{i}" for i in range(1, N_PRODUCTS + 1)]
    catalog = _Catalog.draw(np.random.default_rng(seed + 49_979_687), price_table, now64, day)
    price = catalog.price_at(product, ts)
    order_ids = np.char.add("O", np.char.zfill(np.arange(m).astype(str), 9)) if m else np.array([], dtype=str)
    events = pa.table(
        {
            "customer_id": pc.take(customers["customer_id"], pa.array(owner)),
            "event": _strings(pa, kind, EVENTS),
            "ts": pa.array(ts, type=pa.timestamp("us")),
            "category": _nullable(pa, _strings(pa, category, CATEGORIES), ~has_product),
            "product_id": _nullable(pa, _strings(pa, product, product_names), ~has_product),
            "price": _nullable(pa, pa.array(price), ~has_product),
            "amount": _nullable(pa, pa.array(price * quantity), ~is_order),
            "order_id": _nullable(pa, pa.array(order_ids.tolist(), type=pa.string()), ~is_order),
            "promotion_id": _nullable(pa, _strings(pa, promo, [f"PROMO{i}" for i in range(1, N_PROMOTIONS + 1)]), ~is_promo),
        }
    )
    signups = pa.table(
        {
            "customer_id": customers["customer_id"],
            "event": pa.array(["signed_up"] * n, type=pa.string()),
            "ts": customers["signed_up_at"],
        }
    )
    wishlist = _wishlist(np.random.default_rng(seed + 67_867_967), pa, events, kind == 1, owner, ts)
    events = pa.concat_tables([signups, events, wishlist], promote_options="default")
    products, history = catalog.tables(pa, product_category, product_names, product[is_order], ts[is_order],
                                       quantity[is_order])
    return DemoShop(customers, events, now, products, history)


def _tastes(rng: Any, product: Any, owner: Any, kind: Any, shoe_lover: Any, product_category: Any, popularity: Any) -> Any:
    """Each customer's one or two favourite categories (shoes for the shoe lovers): about half of their product
    events move to a product of a favourite category, chosen by popularity within it."""
    import numpy as np

    n, m = len(shoe_lover), len(product)
    first = np.where(shoe_lover, 0, rng.integers(0, len(CATEGORIES), n))
    second = np.where(rng.random(n) < 0.5, rng.integers(0, len(CATEGORIES), n), first)
    moved = np.isin(kind, [1, 2, 3, 4]) & (rng.random(m) < TASTE_SHARE)
    favourite = np.where(rng.random(m) < 0.6, first[owner], second[owner])
    out = product.copy()
    for c in range(len(CATEGORIES)):
        members = np.flatnonzero(product_category == c)
        at = np.flatnonzero(moved & (favourite == c))
        if len(members) == 0 or len(at) == 0:
            continue
        weights = np.cumsum(popularity[members])
        picks = np.searchsorted(weights, rng.random(len(at)) * weights[-1], side="right")
        out[at] = members[np.minimum(picks, len(members) - 1)]
    return out


def _pairs(rng: Any, product: Any, owner: Any, ts: Any, is_order: Any) -> Any:
    """Plant :data:`PLANTED_PAIRS`: the next order of a customer after ordering a pair's first product is its
    partner with probability :data:`PAIR_FOLLOW`."""
    import numpy as np

    orders = np.flatnonzero(is_order)
    if len(orders) < 2:
        return product
    orders = orders[np.lexsort((ts[orders], owner[orders]))]
    partner = np.full(N_PRODUCTS, -1)
    for first, second in PLANTED_PAIRS:
        partner[int(first[1:]) - 1] = int(second[1:]) - 1
    out = product.copy()
    # in time order per customer, so a chain A -> B -> ... sees the partner it planted
    this, after = orders[:-1], orders[1:]
    follows = (owner[this] == owner[after]) & (partner[product[this]] >= 0) & (rng.random(len(this)) < PAIR_FOLLOW)
    out[after[follows]] = partner[product[this[follows]]]
    return out


def _wishlist(rng: Any, pa: Any, events: Any, viewed: Any, owner: Any, ts: Any) -> Any:
    """Wishlist events: about 3% of product views add the product to the wishlist at the view's instant; a third of
    those are removed again some time before the customer's last event."""
    import numpy as np
    import pyarrow.compute as pc

    added = np.flatnonzero(viewed & (rng.random(len(viewed)) < 0.03))
    stamps = ts.astype(np.int64)
    removed = added[rng.random(len(added)) < 0.33]
    if len(owner):  # owner is sorted (events are drawn customer by customer): each customer's last instant
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        group = np.cumsum(np.r_[True, owner[1:] != owner[:-1]]) - 1
        last = np.maximum.reduceat(stamps, starts)[group]
    else:
        last = stamps
    gap = (last[removed] - stamps[removed]).clip(0)
    removed_at = (stamps[removed] + (gap * rng.random(len(removed))).astype(np.int64)).astype("datetime64[us]")
    rows = pa.array(np.concatenate([added, removed]))
    out = pc.take(events.select(["customer_id", "ts", "category", "product_id", "price"]), rows)
    names = np.concatenate([np.zeros(len(added), np.int32), np.ones(len(removed), np.int32)])
    out = out.set_column(1, "ts", pa.array(np.concatenate([ts[added], removed_at]), type=pa.timestamp("us")))
    return out.add_column(1, "event", _strings(pa, names, ["wishlist_added", "wishlist_removed"]))


@attrs.frozen
class _Catalog:
    """The drawn catalog facts: price changes, stock levels, images, discontinued products."""

    base: Any
    changed_at: Any  # int64 microseconds; the max int64 for a product whose price never changes
    new_price: Any
    has_image: Any
    discontinued_at: Any
    capacity_days: Any
    lead_days: Any
    now64: Any
    day: Any

    @classmethod
    def draw(cls, rng: Any, base: Any, now64: Any, day: Any) -> _Catalog:
        """A fifth of the products change price once in the last 60 days (most of them a markdown of 10-30%);
        images miss for a few (never a planted pair's); 3% are discontinued in the last 90 days."""
        import numpy as np

        k = len(base)
        never = np.iinfo(np.int64).max
        changes = rng.random(k) < 0.2
        drop = rng.random(k) < 0.75
        factor = np.where(drop, 1 - rng.uniform(0.1, 0.3, k), 1 + rng.uniform(0.05, 0.15, k))
        new_price = np.maximum((base * factor / 100).round().astype(np.int64) * 100, 100)
        start = now64.astype(np.int64)
        step = day.astype(np.int64)
        when = start - rng.integers(1, 60, k) * step
        changed_at = np.where(changes, when, never)
        has_image = rng.random(k) >= 0.04
        for pair in PLANTED_PAIRS:
            for product_id in pair:
                has_image[int(product_id[1:]) - 1] = True
        discontinued_at = np.where(rng.random(k) < 0.03, start - rng.integers(1, 90, k) * step, never)
        return cls(base, changed_at, new_price, has_image, discontinued_at, rng.uniform(10, 40, k),
                   rng.integers(2, 15, k), now64, day)

    def price_at(self, product: Any, ts: Any) -> Any:
        """The price each product had at each instant."""
        import numpy as np

        return np.where(ts.astype(np.int64) >= self.changed_at[product], self.new_price[product], self.base[product])

    def tables(self, pa: Any, category: Any, names: list[str], ordered: Any, ordered_at: Any, quantity: Any) -> tuple[Any, Any]:
        """The catalog and its history: stock starts full, orders take from it day by day, and a product at its
        reorder point is restocked after its lead time; a row whenever a product's price, stock or availability
        changes (the stock as at the end of the day)."""
        import numpy as np

        k = len(self.base)
        step = self.day.astype(np.int64)
        end = self.now64.astype(np.int64)
        days = 366
        start = end - days * step
        at = ordered_at.astype(np.int64)
        inside = at >= start
        slot = ((at[inside] - start) // step).clip(0, days - 1)
        demand = np.bincount(ordered[inside] * days + slot, weights=quantity[inside], minlength=k * days)
        demand = demand.reshape(k, days).astype(np.int64)
        capacity = np.maximum(5, (demand.sum(axis=1) / days * self.capacity_days).round().astype(np.int64))
        reorder = capacity // 6
        stock = capacity.copy()
        restock_on = np.full(k, -1)
        levels = np.empty((days, k), np.int64)
        for d in range(days):
            arriving = restock_on == d
            stock = np.where(arriving, capacity, stock)
            restock_on = np.where(arriving, -1, restock_on)
            stock = np.maximum(stock - demand[:, d], 0)
            order_now = (stock <= reorder) & (restock_on < 0)
            restock_on = np.where(order_now, d + self.lead_days, restock_on)
            levels[d] = stock
        instants = start + (np.arange(days) + 1) * step  # each day's stock holds from the end of that day
        price = np.where(instants[:, None] >= self.changed_at[None, :], self.new_price[None, :], self.base[None, :])
        available = (levels > 0) & (instants[:, None] < self.discontinued_at[None, :])
        first = np.ones((1, k), bool)
        changed = np.vstack([first, (np.diff(levels, axis=0) != 0) | (np.diff(price, axis=0) != 0)
                             | (np.diff(available, axis=0) != 0)])
        day_of, product_of = np.nonzero(changed)
        order = np.lexsort((day_of, product_of))
        day_of, product_of = day_of[order], product_of[order]
        ids = pa.array(names)
        history = pa.table({
            "product_id": ids.take(pa.array(product_of)),
            "ts": pa.array(instants[day_of].astype("datetime64[us]"), type=pa.timestamp("us")),
            "price": pa.array(price[day_of, product_of]),
            "stock": pa.array(levels[day_of, product_of]),
            "available": pa.array(available[day_of, product_of]),
        })
        noun_draw = np.arange(k) * 7 % 6
        product_names = [
            f"{ADJECTIVES[(i * 3) % len(ADJECTIVES)]} "
            f"{PRODUCT_NOUNS[CATEGORIES[category[i]]][noun_draw[i] % len(PRODUCT_NOUNS[CATEGORIES[category[i]]])]}"
            f" {COLOURS[(i // 10) % len(COLOURS)]}"
            for i in range(k)
        ]
        images = [f"{PRODUCT_BASE_URL}/images/{name}.jpg" if self.has_image[i] else None for i, name in enumerate(names)]
        products = pa.table({
            "product_id": ids,
            "name": pa.array(product_names, type=pa.string()),
            "category": _strings(pa, category, CATEGORIES),
            "price": pa.array(price[-1]),
            "stock": pa.array(levels[-1]),
            "image_url": pa.array(images, type=pa.string()),
            "product_url": pa.array([f"{PRODUCT_BASE_URL}/products/{name}" for name in names], type=pa.string()),
            "available": pa.array(available[-1]),
        })
        return products, history
