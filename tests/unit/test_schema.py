"""The domain's pure-Python parts: the money rules, the generators, the packaged DDL.

No store is opened here; tests/integration/test_schema_stores.py checks SQLite and Kuzu against
these rules.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tristore.schema import (
    COUNTRIES,
    PRICING_TIERS,
    SIZES,
    Dataset,
    Size,
    calculate_total_py,
    generate,
    graph_statements,
    invoice_amounts_py,
    mean_rating_py,
    order_amounts_py,
    sqlite_script,
    to_basis_points,
    to_cents,
)

CENT = Decimal("0.01")


def exact_round(value: Decimal) -> Decimal:
    """The textbook rule on exact decimals: half up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def dec(x: float) -> Decimal:
    # repr is the shortest decimal that round-trips: the value a person typed (19.99, 0.05).
    return Decimal(repr(x))


# --------------------------------------------------------------------------------------------
# Money rules
# --------------------------------------------------------------------------------------------


def test_cents_and_basis_points_absorb_float_noise() -> None:
    assert 19.99 * 100 != 1999  # the noise the helpers exist for
    assert to_cents(19.99) == 1999
    assert to_cents(0.0) == 0
    assert to_cents(1234567.89) == 123456789
    assert to_basis_points(0.05) == 500
    assert to_basis_points(0.0725) == 725
    assert to_basis_points(1.0) == 10_000


@pytest.mark.parametrize(
    ("price", "quantity", "discount", "expected"),
    [
        (10.0, 3, 0.0, (30.0, 0.0, 30.0)),
        (19.99, 3, 0.10, (59.97, 6.0, 53.97)),  # 5.997 -> 6.00
        # 1990 cents * 5 % = 99.5 cents: an exact half cent. The discount rounds up to 1.00, and
        # final_price is what is left, so the parts add up to the total.
        (19.90, 1, 0.05, (19.9, 1.0, 18.9)),
        (0.25, 1, 0.5, (0.25, 0.13, 0.12)),  # 12.5 cents: a tie exact in binary, too
        (1.00, 1, 0.125, (1.0, 0.13, 0.87)),
        (0.01, 1, 0.3333, (0.01, 0.0, 0.01)),
        (99.99, 7, 1.0, (699.93, 699.93, 0.0)),
    ],
)
def test_order_amounts_examples(
    price: float, quantity: int, discount: float, expected: tuple[float, float, float]
) -> None:
    assert order_amounts_py(price, quantity, discount) == expected


def test_order_amounts_against_exact_decimal_rule() -> None:
    """On random whole-cent prices and whole-basis-point discounts: the discount is exactly the
    textbook half-up rounding, the parts always add up, and final_price equals
    round(price * quantity * (1 - discount), 2) except on exact half cents (one cent lower)."""
    rng = random.Random(7)
    ties = 0
    for _ in range(20_000):
        price = rng.randrange(0, 500_000) / 100
        quantity = rng.randint(1, 50)
        # Tier discounts make half cents common (5 % of an odd ten cents); random rates add range.
        discount = rng.choice([0.05, 0.10, rng.randrange(0, 10_001) / 10_000])
        total, off, final = order_amounts_py(price, quantity, discount)
        gross = dec(price) * quantity
        assert Decimal(repr(total)) == gross
        assert dec(off) == exact_round(gross * dec(discount))
        assert to_cents(total) == to_cents(off) + to_cents(final)
        textbook = exact_round(gross * (1 - dec(discount)))
        if dec(final) != textbook:
            ties += 1
            assert textbook - dec(final) == CENT
            assert (gross * dec(discount) * 100) % 1 == Decimal("0.5")
    assert 0 < ties < 2_000  # ties exist in realistic data; they are the exception


def test_invoice_amounts_add_up() -> None:
    assert invoice_amounts_py(100.0, 0.19) == (19.0, 119.0)
    assert invoice_amounts_py(18.9, 0.0725) == (1.37, 20.27)  # 1.37025
    assert invoice_amounts_py(0.1, 0.05) == (0.01, 0.11)  # half a cent -> up
    rng = random.Random(8)
    for _ in range(10_000):
        subtotal = rng.randrange(0, 1_000_000) / 100
        rate = rng.randrange(0, 10_001) / 10_000
        tax, grand = invoice_amounts_py(subtotal, rate)
        assert dec(tax) == exact_round(dec(subtotal) * dec(rate))
        assert dec(grand) == exact_round(dec(subtotal) * (1 + dec(rate)))
        assert to_cents(grand) == to_cents(subtotal) + to_cents(tax)


def test_calculate_total_is_the_invoice_of_the_order_line() -> None:
    assert calculate_total_py(19.99, 3, 0.05, 0.19) == 67.79
    assert calculate_total_py(10, 1, 0, 0) == 10.0
    assert calculate_total_py(0, 5, 0.1, 0.2) == 0.0
    assert calculate_total_py(10.0, 2.0, 0.0, 0.0) == 20.0  # SQLite may hand over 2.0
    rng = random.Random(9)
    for _ in range(10_000):
        price = rng.randrange(0, 200_000) / 100
        quantity = rng.randint(1, 20)
        discount = rng.choice([*PRICING_TIERS.values(), rng.randrange(0, 10_001) / 10_000])
        tax = rng.choice([rate for _, rate in COUNTRIES.values()])
        got = calculate_total_py(price, quantity, discount, tax)
        final = order_amounts_py(price, quantity, discount).final_price
        assert got == invoice_amounts_py(final, tax).grand_total
        single = exact_round(dec(price) * quantity * (1 - dec(discount)) * (1 + dec(tax)))
        assert abs(dec(got) - single) <= CENT


@pytest.mark.parametrize("position", range(4))
def test_calculate_total_null_in_null_out(position: int) -> None:
    args: list[float | None] = [19.99, 2, 0.05, 0.2]
    args[position] = None
    assert calculate_total_py(*args) is None


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-0.01, 1, 0, 0), ValueError),  # negative price
        ((9.999, 1, 0, 0), ValueError),  # not whole cents
        ((10, 0, 0, 0), ValueError),  # quantity 0
        ((10, -2, 0, 0), ValueError),
        ((10, 1.5, 0, 0), ValueError),  # a fraction of an item
        ((10, 1, 1.5, 0), ValueError),  # discount above 100 %
        ((10, 1, -0.1, 0), ValueError),
        ((10, 1, 0.00001, 0), ValueError),  # finer than a basis point
        ((10, 1, 0, 2), ValueError),  # tax above 100 %
        ((math.nan, 1, 0, 0), ValueError),
        ((math.inf, 1, 0, 0), ValueError),
        (("10", 1, 0, 0), TypeError),
        ((b"10", 1, 0, 0), TypeError),
        ((True, 1, 0, 0), TypeError),
    ],
)
def test_calculate_total_rejects_bad_input(args: tuple[object, ...], error: type) -> None:
    with pytest.raises(error, match="calculate_total"):
        calculate_total_py(*args)  # type: ignore[arg-type]


def test_mean_rating_rounds_half_up() -> None:
    assert mean_rating_py([]) is None
    assert mean_rating_py([4, 5]) == 4.5
    assert mean_rating_py([1, 2, 2]) == 1.67
    assert mean_rating_py([4, 4, 4, 5, 5, 5, 5, 5]) == 4.63  # 4.625 exactly
    assert mean_rating_py([5] * 3 + [4] * 197) == 4.02  # 4.015: half up on the exact value


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = generate("small", seed=11), generate("small", seed=11)
    assert a == b
    assert a.orders[-1] == b.orders[-1]
    c = generate("small", seed=12)
    assert c != a
    assert c.counts() == a.counts()  # sizes do not depend on the seed
    # No global random state is used or disturbed.
    random.seed(1)
    before = random.random()
    random.seed(1)
    generate("small", seed=3)
    assert random.random() == before


@pytest.mark.parametrize("name", ["small", "medium", "large"])
def test_documented_counts(name: str) -> None:
    ds = generate(name, seed=1)
    assert ds.counts() == SIZES[name].counts()


def test_size_table_in_docs() -> None:
    assert SIZES["small"].counts() == {
        "customers": 200,
        "products": 100,
        "orders": 1_000,
        "invoices": 850,
        "ratings": 200,
        "views": 2_000,
        "follows": 400,
        "purchased": 950,
    }
    assert SIZES["medium"].counts()["orders"] == 10_000
    large = SIZES["large"]
    assert (large.customers, large.products, large.orders) == (10_000, 2_000, 50_000)


def test_referential_integrity_and_realism() -> None:
    ds = generate("medium", seed=5)
    customers = {c.id: c for c in ds.customers}
    products = {p.id: p for p in ds.products}
    assert list(customers) == list(range(1, len(customers) + 1))
    assert list(products) == list(range(1, len(products) + 1))

    emails = [c.email.lower() for c in ds.customers]
    assert len(set(emails)) == len(emails)
    assert all(e.count("@") == 1 and " " not in e for e in emails)
    assert {c.tier for c in ds.customers} == set(PRICING_TIERS)
    assert {c.country for c in ds.customers} <= set(COUNTRIES)
    assert len({p.sku for p in ds.products}) == len(ds.products)
    assert all(p.price > 0 and to_cents(p.price) == round(p.price * 100) for p in ds.products)

    # Orders: valid keys, the product's price, the tier's discount, after sign-up, ids in time.
    assert [o.id for o in ds.orders] == list(range(1, len(ds.orders) + 1))
    assert [o.created_at for o in ds.orders] == sorted(o.created_at for o in ds.orders)
    for o in ds.orders:
        customer, product = customers[o.customer_id], products[o.product_id]
        assert o.price == product.price
        assert o.discount == PRICING_TIERS[customer.tier]
        assert o.created_at >= customer.created_at
        assert 1 <= o.quantity <= 5
    status = Counter(o.status for o in ds.orders)
    size = SIZES["medium"]
    assert status == {
        "cancelled": size.cancelled,
        "placed": size.placed,
        "paid": size.paid,
        "shipped": size.orders - size.cancelled - size.placed - size.paid,
    }
    # Statuses follow time: every placed order is newer than every shipped one.
    newest_shipped = max(o.created_at for o in ds.orders if o.status == "shipped")
    assert all(o.created_at >= newest_shipped for o in ds.orders if o.status == "placed")
    # Skew: the busiest tenth of customers places far more than a tenth of the orders.
    per_customer = sorted(Counter(o.customer_id for o in ds.orders).values(), reverse=True)
    assert sum(per_customer[: len(customers) // 10]) > 0.2 * len(ds.orders)

    # Invoices: one per paid or shipped order, for the order's final price and country's tax.
    orders = {o.id: o for o in ds.orders}
    assert {i.order_id for i in ds.invoices} == {
        o.id for o in ds.orders if o.status in ("paid", "shipped")
    }
    for inv in ds.invoices:
        o = orders[inv.order_id]
        assert inv.subtotal == order_amounts_py(o.price, o.quantity, o.discount).final_price
        assert inv.tax_rate == COUNTRIES[customers[o.customer_id].country][1]
        assert inv.issued_at > o.created_at

    # Ratings: only by buyers, one per (product, customer); products.rating is their mean.
    bought = {(o.product_id, o.customer_id) for o in ds.purchases()}
    pairs = [(r.product_id, r.customer_id) for r in ds.ratings]
    assert len(set(pairs)) == len(pairs)
    assert set(pairs) <= bought
    stars: dict[int, list[int]] = defaultdict(list)
    for r in ds.ratings:
        stars[r.product_id].append(r.rating)
    assert all(p.rating == mean_rating_py(stars.get(p.id, [])) for p in ds.products)

    # Views and follows: valid keys; follows are distinct and never self.
    assert all(v.customer_id in customers and v.product_id in products for v in ds.views)
    follows = [(f.follower_id, f.followee_id) for f in ds.follows]
    assert len(set(follows)) == len(follows)
    assert all(a != b and a in customers and b in customers for a, b in follows)
    assert all(
        f.since >= max(customers[f.follower_id].created_at, customers[f.followee_id].created_at)
        for f in ds.follows
    )


def test_dataset_is_immutable() -> None:
    ds = generate("small")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.orders = ()  # type: ignore[misc]
    assert isinstance(ds.orders, tuple)


def test_custom_and_bad_sizes() -> None:
    tiny = Size(customers=3, products=2, orders=10, views=4, follows=6, ratings=2)
    ds = generate(tiny, seed=1)
    assert ds.counts() == tiny.counts()
    assert len({(f.follower_id, f.followee_id) for f in ds.follows}) == 6  # all pairs of 3
    with pytest.raises(ValueError, match="unknown size"):
        generate("huge")
    with pytest.raises(ValueError, match="follows"):
        generate(Size(customers=2, products=1, orders=1, views=0, follows=3, ratings=0))
    with pytest.raises(ValueError, match="ratings"):
        generate(Size(customers=2, products=1, orders=1, views=0, follows=0, ratings=5))


def test_hand_made_dataset_defaults() -> None:
    ds = Dataset(customers=(), products=(), orders=())
    assert ds.counts() == dict.fromkeys(SIZES["small"].counts(), 0)


# --------------------------------------------------------------------------------------------
# Packaged DDL
# --------------------------------------------------------------------------------------------


def test_graph_statements_are_clean() -> None:
    statements = graph_statements()
    assert len(statements) == 5
    assert all(s.startswith("CREATE ") and "IF NOT EXISTS" in s for s in statements)
    assert not any("//" in s or ";" in s for s in statements)
    assert [s.split()[6].split("(")[0] for s in statements] == [
        "Customer",
        "Product",
        "PURCHASED",
        "VIEWED",
        "FOLLOWS",
    ]


def test_sqlite_script_is_idempotent_text() -> None:
    script = sqlite_script()
    creates = [line for line in script.splitlines() if line.startswith("CREATE ")]
    assert creates and all("IF NOT EXISTS" in line for line in creates)
    assert "STRICT" in script
    assert "GENERATED ALWAYS" in script
