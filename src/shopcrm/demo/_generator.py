"""A deterministic synthetic Korean shop, generated column-wise with numpy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

__all__ = ["DEMO_NOW", "DemoShop", "generate"]

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


@attrs.frozen
class DemoShop:
    """The generated tables (pyarrow) and the instant they end at."""

    customers: Any
    events: Any
    now: datetime


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
    category = product_category[product]
    quantity = rng.integers(1, 4, m)

    has_product = np.isin(kind, [1, 2, 3, 4])
    is_order = kind == 4
    is_promo = kind == 5
    promo = rng.choice(N_PROMOTIONS, m, p=np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.06, 0.05, 0.04]))

    product_names = [f"P{i}" for i in range(1, N_PRODUCTS + 1)]
    order_ids = np.char.add("O", np.char.zfill(np.arange(m).astype(str), 9)) if m else np.array([], dtype=str)
    events = pa.table(
        {
            "customer_id": pc.take(customers["customer_id"], pa.array(owner)),
            "event": _strings(pa, kind, EVENTS),
            "ts": pa.array(ts, type=pa.timestamp("us")),
            "category": _nullable(pa, _strings(pa, category, CATEGORIES), ~has_product),
            "product_id": _nullable(pa, _strings(pa, product, product_names), ~has_product),
            "price": _nullable(pa, pa.array(price_table[product]), ~has_product),
            "amount": _nullable(pa, pa.array(price_table[product] * quantity), ~is_order),
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
    events = pa.concat_tables([signups, events], promote_options="default")
    return DemoShop(customers, events, now)
