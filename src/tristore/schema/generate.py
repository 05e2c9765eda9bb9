"""Seeded, realistic-looking data sets for the domain, at documented sizes.

``generate("small", seed=1)`` returns the same :class:`Dataset` on every call and every machine
with the same Python: every draw comes from one ``random.Random(seed)`` (never the global state)
in a fixed order, and no clock is read (timestamps are offsets from a fixed epoch).

What makes it look real without Faker: names from small word lists, customers with skewed
activity and products with skewed popularity (a few account for many orders, as in any shop),
charm prices per category, tier discounts from :data:`PRICING_TIERS`, a tax rate per country,
order statuses that follow time (recent orders still ``placed``, older ones ``shipped``), ratings
only by customers who bought the product, and follows between customers.

Referential integrity holds by construction: orders point at generated customers and products,
invoices at paid or shipped orders, ratings at bought (customer, product) pairs, and every
timestamp comes after the customer (and order) it depends on.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from tristore.schema.functions import mean_rating_py, order_amounts_py

__all__ = [
    "COUNTRIES",
    "PRICING_TIERS",
    "SIZES",
    "Customer",
    "Dataset",
    "Follow",
    "Invoice",
    "Order",
    "Product",
    "Rating",
    "Size",
    "View",
    "generate",
]

# --------------------------------------------------------------------------------------------
# Rows. Field order is the column order of the SQLite table (or of the graph CSV), so a row can
# go straight into executemany; generated columns are absent on purpose (SQLite computes them).
# --------------------------------------------------------------------------------------------


class Customer(NamedTuple):
    id: int
    email: str
    name: str
    country: str
    tier: str
    created_at: str


class Product(NamedTuple):
    id: int
    sku: str
    name: str
    category: str
    price: float
    stock: int
    rating: float | None


class Order(NamedTuple):
    id: int
    customer_id: int
    product_id: int
    price: float
    quantity: int
    discount: float
    status: str
    created_at: str


class Invoice(NamedTuple):
    id: int
    order_id: int
    subtotal: float
    tax_rate: float
    issued_at: str


class Rating(NamedTuple):
    product_id: int
    customer_id: int
    rating: int
    created_at: str


class View(NamedTuple):
    customer_id: int
    product_id: int
    at: str


class Follow(NamedTuple):
    follower_id: int
    followee_id: int
    since: str


# --------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """How many of each thing to generate. Derived counts follow fixed shares of ``orders``:
    5 % cancelled, the latest 10 % still placed, the next 20 % paid, the rest shipped; an invoice
    for each paid or shipped order; a PURCHASED edge for each order not cancelled."""

    customers: int
    products: int
    orders: int
    views: int
    follows: int
    ratings: int

    @property
    def cancelled(self) -> int:
        return self.orders // 20

    @property
    def placed(self) -> int:
        return self.orders // 10

    @property
    def paid(self) -> int:
        return self.orders // 5

    @property
    def invoices(self) -> int:
        return self.orders - self.cancelled - self.placed

    @property
    def purchased(self) -> int:
        return self.orders - self.cancelled

    def counts(self) -> dict[str, int]:
        """The counts a Dataset of this size has (same keys as :meth:`Dataset.counts`)."""
        return {
            "customers": self.customers,
            "products": self.products,
            "orders": self.orders,
            "invoices": self.invoices,
            "ratings": self.ratings,
            "views": self.views,
            "follows": self.follows,
            "purchased": self.purchased,
        }


#: Documented sizes. ``large`` is the graph the README's Kuzu figures were measured on: ~12k
#: nodes and ~47.5k PURCHASED edges (plus 50k VIEWED and 20k FOLLOWS).
#:
#: ========  =========  ========  ======  ========  =======  =======  =======  =========
#: size      customers  products  orders  invoices  ratings  views    follows  purchased
#: ========  =========  ========  ======  ========  =======  =======  =======  =========
#: small           200       100   1,000       850      200    2,000      400        950
#: medium        2,000     1,000  10,000     8,500    2,000   20,000    4,000      9,500
#: large        10,000     2,000  50,000    42,500   10,000   50,000   20,000     47,500
#: ========  =========  ========  ======  ========  =======  =======  =======  =========
SIZES: dict[str, Size] = {
    "small": Size(customers=200, products=100, orders=1_000, views=2_000, follows=400, ratings=200),
    "medium": Size(
        customers=2_000, products=1_000, orders=10_000, views=20_000, follows=4_000, ratings=2_000
    ),
    "large": Size(
        customers=10_000,
        products=2_000,
        orders=50_000,
        views=50_000,
        follows=20_000,
        ratings=10_000,
    ),
}

# --------------------------------------------------------------------------------------------
# Reference data and word lists
# --------------------------------------------------------------------------------------------

#: Discount per customer tier; the same rows sqlite.sql seeds into ``pricing_tiers``.
PRICING_TIERS: dict[str, float] = {"standard": 0.0, "silver": 0.05, "gold": 0.10}
_TIER_WEIGHTS = (("standard", 70), ("silver", 22), ("gold", 8))

#: Country code -> (share of customers in %, VAT/sales-tax rate applied on invoices).
COUNTRIES: dict[str, tuple[int, float]] = {
    "US": (30, 0.0725),
    "DE": (12, 0.19),
    "GB": (10, 0.20),
    "FR": (8, 0.20),
    "CA": (6, 0.13),
    "NL": (5, 0.21),
    "ES": (5, 0.21),
    "IT": (5, 0.22),
    "SE": (4, 0.25),
    "PL": (4, 0.23),
    "AU": (4, 0.10),
    "JP": (4, 0.10),
    "BR": (3, 0.17),
}

# One string per list: reads better than a column of quoted words.
_FIRST = (  # noqa: SIM905
    "Ada Alan Amara Anna Ben Carla Chen Dana David Elena Emil Eva Farah Felix Grace Hana Hugo "
    "Ines Ivan Jana Jonas Kai Karin Leo Lina Luca Maya Mateo Mia Nadia Noah Nora Omar Olga Pablo "
    "Priya Quinn Rosa Sam Sara Tomas Una Victor Wen Yara Yusuf Zoe"
).split()
_LAST = (  # noqa: SIM905
    "Andersen Baker Bauer Costa Dubois Eriksson Fischer Garcia Hansen Ito Jensen Kim Kowalski "
    "Larsen Lopez Martin Meyer Moreau Müller Nakamura Novak O'Neil Perez Rossi Santos Schmidt "
    "Silva Smith Tanaka Taylor Weber Wilson Wong Yilmaz Zimmermann"
).split()
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")

# category -> (SKU prefix, share %, price range in whole currency units, nouns)
_CATEGORIES: dict[str, tuple[str, int, tuple[int, int], tuple[str, ...]]] = {
    "electronics": (
        "ELE",
        18,
        (15, 1500),
        ("Headphones", "Speaker", "Monitor", "Keyboard", "Charger", "Camera", "Router", "Tablet"),
    ),
    "books": (
        "BOO",
        16,
        (5, 60),
        ("Novel", "Cookbook", "Atlas", "Biography", "Guide", "Anthology"),
    ),
    "home": (
        "HOM",
        15,
        (8, 400),
        ("Lamp", "Rug", "Kettle", "Pillow", "Vase", "Toaster", "Blanket"),
    ),
    "garden": ("GAR", 8, (4, 300), ("Hose", "Planter", "Shears", "Bench", "Lantern")),
    "sports": (
        "SPO",
        12,
        (10, 600),
        ("Yoga Mat", "Dumbbell", "Racket", "Helmet", "Backpack", "Bottle"),
    ),
    "toys": ("TOY", 9, (5, 120), ("Puzzle", "Robot", "Kite", "Board Game", "Plush Bear")),
    "beauty": ("BEA", 10, (4, 150), ("Serum", "Lotion", "Perfume", "Brush Set", "Shampoo")),
    "grocery": ("GRO", 12, (1, 40), ("Coffee", "Tea", "Olive Oil", "Chocolate", "Honey", "Pasta")),
}
_ADJECTIVES = (  # noqa: SIM905
    "Classic Compact Deluxe Eco Essential Everyday Handmade Modern Nordic Organic Portable "
    "Premium Smart Ultra Vintage Wireless"
).split()

# Time: fixed, so data does not depend on the day it is generated. Customers sign up during
# 2024-2025; activity runs until END (orders' last full month is 2026-11).
_EPOCH = datetime(2024, 1, 1)
_SIGNUP_SPAN = 2 * 365 * 86_400
_END = int((datetime(2026, 12, 1) - _EPOCH).total_seconds())
_DAY = 86_400


# Every date the window can produce, formatted once: _ts runs ~180k times for `large`, and
# datetime + timedelta + isoformat per call was 40 % of the generation time.
_DATES = tuple((_EPOCH + timedelta(days=d)).date().isoformat() for d in range(_END // _DAY + 90))


def _ts(offset: int) -> str:
    """Seconds after the epoch as 'YYYY-MM-DD HH:MM:SS' (SQLite datetime(); Kuzu TIMESTAMP)."""
    day, rest = divmod(offset, _DAY)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{_DATES[day]} {hour:02d}:{minute:02d}:{second:02d}"


def _skewed_cum_weights(rng: random.Random, n: int, exponent: float) -> list[float]:
    """Zipf-like weights 1/(rank + 5)^exponent, ranks shuffled so popularity is not id order."""
    weights = [1.0 / (rank + 5) ** exponent for rank in range(n)]
    rng.shuffle(weights)
    return list(itertools.accumulate(weights))


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """One generated (or hand-made) data set. Tuples all the way down, so it is truly immutable
    and can be shared by tests and benchmarks. Orders and invoices are sorted by id."""

    customers: tuple[Customer, ...]
    products: tuple[Product, ...]
    orders: tuple[Order, ...]
    invoices: tuple[Invoice, ...] = ()
    ratings: tuple[Rating, ...] = ()
    views: tuple[View, ...] = ()
    follows: tuple[Follow, ...] = ()

    def purchases(self) -> Iterator[Order]:
        """Orders that are graph PURCHASED edges: all but the cancelled ones."""
        return (o for o in self.orders if o.status != "cancelled")

    def counts(self) -> dict[str, int]:
        """Rows per table, plus ``purchased`` (the PURCHASED edges)."""
        return {
            "customers": len(self.customers),
            "products": len(self.products),
            "orders": len(self.orders),
            "invoices": len(self.invoices),
            "ratings": len(self.ratings),
            "views": len(self.views),
            "follows": len(self.follows),
            "purchased": sum(1 for _ in self.purchases()),
        }


def generate(size: str | Size = "small", seed: int = 0) -> Dataset:
    """A deterministic data set: the same ``size`` and ``seed`` give an identical Dataset.

    ``size`` is a key of :data:`SIZES` or a custom :class:`Size`. ``large`` takes well under a
    second or two.
    """
    if isinstance(size, str):
        try:
            size = SIZES[size]
        except KeyError:
            raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}") from None
    if size.customers < 1 or size.products < 1:
        raise ValueError("a data set needs at least one customer and one product")
    if size.follows > size.customers * (size.customers - 1):
        raise ValueError(f"{size.follows} follows do not fit between {size.customers} customers")
    rng = random.Random(seed)
    customers, signup = _customers(rng, size.customers)
    products = _products(rng, size.products)
    orders, order_at = _orders(rng, size, customers, signup, products)
    invoices = _invoices(rng, customers, orders, order_at)
    ratings = _ratings(rng, size.ratings, orders, order_at)
    products = _with_ratings(products, ratings)
    views = _views(rng, size, signup)
    follows = _follows(rng, size, signup)
    return Dataset(
        customers=customers,
        products=products,
        orders=orders,
        invoices=invoices,
        ratings=ratings,
        views=views,
        follows=follows,
    )


def _customers(rng: random.Random, n: int) -> tuple[tuple[Customer, ...], list[int]]:
    tiers = [t for t, _ in _TIER_WEIGHTS]
    tier_w = [w for _, w in _TIER_WEIGHTS]
    codes = list(COUNTRIES)
    country_w = [share for share, _ in COUNTRIES.values()]
    signup = sorted(rng.randrange(_SIGNUP_SPAN) for _ in range(n))  # ids follow sign-up order
    rows = []
    for i, (tier, country, at) in enumerate(
        zip(
            rng.choices(tiers, tier_w, k=n), rng.choices(codes, country_w, k=n), signup, strict=True
        ),
        start=1,
    ):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        # The id in the local part makes emails unique without a retry loop.
        local = f"{first}.{last}".lower().replace("'", "").replace("ü", "ue")
        email = f"{local}{i}@{rng.choice(_DOMAINS)}"
        rows.append(Customer(i, email, f"{first} {last}", country, tier, _ts(at)))
    return tuple(rows), signup


def _products(rng: random.Random, n: int) -> tuple[Product, ...]:
    names = list(_CATEGORIES)
    shares = [share for _, share, _, _ in _CATEGORIES.values()]
    rows = []
    for i, category in enumerate(rng.choices(names, shares, k=n), start=1):
        code, _, (lo, hi), nouns = _CATEGORIES[category]
        # Log-uniform: cheap items are common, expensive ones rare. Then a shop's charm price.
        whole = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        cents = max(49, whole * 100 - rng.choice((1, 1, 1, 5, 51, 0)))
        stock = 0 if rng.random() < 0.05 else rng.randint(1, 500)
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(nouns)}"
        rows.append(Product(i, f"{code}-{i:06d}", name, category, cents / 100, stock, None))
    return tuple(rows)


def _orders(
    rng: random.Random,
    size: Size,
    customers: Sequence[Customer],
    signup: Sequence[int],
    products: Sequence[Product],
) -> tuple[tuple[Order, ...], list[int]]:
    n = size.orders
    cust_w = _skewed_cum_weights(rng, len(customers), 0.8)
    prod_w = _skewed_cum_weights(rng, len(products), 1.0)
    who = rng.choices(range(len(customers)), cum_weights=cust_w, k=n)
    what = rng.choices(range(len(products)), cum_weights=prod_w, k=n)
    qty = rng.choices((1, 2, 3, 4, 5), (60, 20, 10, 6, 4), k=n)
    # An order falls between the customer's sign-up and the end of the window.
    when = [signup[c] + int(rng.random() * (_END - signup[c])) for c in who]
    # Ids follow time, like an autoincrement key would.
    chrono = sorted(range(n), key=lambda k: (when[k], k))
    # Statuses follow time too: the newest still placed, then paid, the rest shipped; a few
    # cancellations anywhere.
    cancelled = set(rng.sample(range(n), size.cancelled))
    live = [k for k in reversed(chrono) if k not in cancelled]
    status = dict.fromkeys(cancelled, "cancelled")
    for rank, k in enumerate(live):
        status[k] = (
            "placed"
            if rank < size.placed
            else "paid"
            if rank < size.placed + size.paid
            else "shipped"
        )
    rows, at = [], []
    for order_id, k in enumerate(chrono, start=1):
        c, p = customers[who[k]], products[what[k]]
        rows.append(
            Order(
                order_id,
                c.id,
                p.id,
                p.price,
                qty[k],
                PRICING_TIERS[c.tier],
                status[k],
                _ts(when[k]),
            )
        )
        at.append(when[k])
    return tuple(rows), at


def _invoices(
    rng: random.Random,
    customers: Sequence[Customer],
    orders: Sequence[Order],
    order_at: Sequence[int],
) -> tuple[Invoice, ...]:
    rows = []
    for o, at in zip(orders, order_at, strict=True):
        if o.status not in ("paid", "shipped"):
            continue
        # Customer ids are 1..n in order, so the row is customers[id - 1].
        tax_rate = COUNTRIES[customers[o.customer_id - 1].country][1]
        subtotal = order_amounts_py(o.price, o.quantity, o.discount).final_price
        issued = at + rng.randint(600, 2 * _DAY)  # paid within minutes to two days
        rows.append(Invoice(len(rows) + 1, o.id, subtotal, tax_rate, _ts(issued)))
    return tuple(rows)


def _ratings(
    rng: random.Random, n: int, orders: Sequence[Order], order_at: Sequence[int]
) -> tuple[Rating, ...]:
    first_bought: dict[tuple[int, int], int] = {}
    for o, at in zip(orders, order_at, strict=True):
        if o.status != "cancelled":
            first_bought.setdefault((o.product_id, o.customer_id), at)  # orders are in time order
    pairs = sorted(first_bought)
    if n > len(pairs):
        raise ValueError(f"{n} ratings wanted but only {len(pairs)} (customer, product) purchases")
    chosen = sorted(rng.sample(pairs, n))
    stars = rng.choices((1, 2, 3, 4, 5), (5, 7, 15, 35, 38), k=n)
    return tuple(
        Rating(p, c, s, _ts(first_bought[p, c] + rng.randint(_DAY, 30 * _DAY)))
        for (p, c), s in zip(chosen, stars, strict=True)
    )


def _with_ratings(products: Sequence[Product], ratings: Sequence[Rating]) -> tuple[Product, ...]:
    by_product: dict[int, list[int]] = defaultdict(list)
    for r in ratings:
        by_product[r.product_id].append(r.rating)
    return tuple(p._replace(rating=mean_rating_py(by_product.get(p.id, ()))) for p in products)


def _views(rng: random.Random, size: Size, signup: Sequence[int]) -> tuple[View, ...]:
    n = size.views
    cust_w = _skewed_cum_weights(rng, size.customers, 0.7)
    prod_w = _skewed_cum_weights(rng, size.products, 0.9)
    who = rng.choices(range(size.customers), cum_weights=cust_w, k=n)
    what = rng.choices(range(size.products), cum_weights=prod_w, k=n)
    return tuple(
        View(c + 1, p + 1, _ts(signup[c] + int(rng.random() * (_END - signup[c]))))
        for c, p in zip(who, what, strict=True)
    )


def _follows(rng: random.Random, size: Size, signup: Sequence[int]) -> tuple[Follow, ...]:
    n, m = size.follows, size.customers
    # Preferential: a few popular customers gather many followers.
    popular = _skewed_cum_weights(rng, m, 1.0)
    if n > m * (m - 1) // 4:
        # Dense (tiny custom sizes): rejection sampling would stall, so sample the pairs directly.
        pairs = rng.sample([(a, b) for a in range(m) for b in range(m) if a != b], n)
    else:
        seen: set[tuple[int, int]] = set()
        pairs = []
        while len(pairs) < n:
            a = rng.randrange(m)
            b = rng.choices(range(m), cum_weights=popular)[0]
            if a != b and (a, b) not in seen:
                seen.add((a, b))
                pairs.append((a, b))
    rows = []
    for a, b in pairs:
        start = max(signup[a], signup[b])
        rows.append(Follow(a + 1, b + 1, _ts(start + int(rng.random() * (_END - start)))))
    return tuple(rows)
