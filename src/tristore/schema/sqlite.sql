-- tristore e-commerce schema for SQLite (>= 3.37: STRICT tables; >= 3.31: generated columns).
--
-- Every statement is idempotent (IF NOT EXISTS / INSERT OR IGNORE), so applying the script to a
-- database that already has it is harmless. Foreign keys are declared here but enforced only on
-- connections that run `PRAGMA foreign_keys = ON` (a per-connection setting, not a schema one).
--
-- Money. Amounts are REAL holding whole cents (checked); rates (discount, tax) are REAL fractions
-- holding whole basis points, 0.0001 (checked). The computed columns do their arithmetic on
-- integers: amount -> cents, rate -> basis points, multiply, then divide rounding half up. That
-- makes them exact and independent of the SQLite version: SQLite's own round(x, 2) goes through its
-- printf and, on 3.40, disagrees with every simple rule on values a hair from a half cent (measured:
-- 1.7% of 800k order-like values). The Python twins in tristore.schema.functions do the same integer
-- arithmetic, so SQL and Python agree to the bit. CAST(x * 100 + 0.5 AS INTEGER) is "nearest cent"
-- for x >= 0 (CHECKs keep it so); Python mirrors it as int(x * 100 + 0.5).

-- Reference data: the discount each customer tier gets. Seeded below; customers.tier points here.
CREATE TABLE IF NOT EXISTS pricing_tiers (
    tier     TEXT PRIMARY KEY CHECK (tier IN ('standard', 'silver', 'gold')),
    discount REAL NOT NULL
        CONSTRAINT pricing_tiers_discount_range CHECK (discount >= 0 AND discount <= 1)
) STRICT;

INSERT OR IGNORE INTO pricing_tiers (tier, discount) VALUES
    ('standard', 0.0),
    ('silver', 0.05),
    ('gold', 0.10);

CREATE TABLE IF NOT EXISTS customers (
    id         INTEGER PRIMARY KEY,
    -- NOCASE: Ann@x.org and ann@x.org are one mailbox, so they must collide on UNIQUE.
    email      TEXT NOT NULL UNIQUE COLLATE NOCASE
        CONSTRAINT customers_email_format CHECK (email LIKE '_%@_%' AND email NOT LIKE '% %'),
    name       TEXT NOT NULL CONSTRAINT customers_name_nonempty CHECK (length(trim(name)) > 0),
    country    TEXT NOT NULL CONSTRAINT customers_country_code CHECK (length(country) = 2),
    tier       TEXT NOT NULL DEFAULT 'standard'
        CONSTRAINT customers_tier CHECK (tier IN ('standard', 'silver', 'gold'))
        REFERENCES pricing_tiers (tier),
    -- Any format SQLite's date functions understand ('YYYY-MM-DD HH:MM:SS' is what we write).
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
        CONSTRAINT customers_created_at CHECK (datetime(created_at) IS NOT NULL)
) STRICT;

CREATE TABLE IF NOT EXISTS products (
    id       INTEGER PRIMARY KEY,
    sku      TEXT NOT NULL UNIQUE,
    name     TEXT NOT NULL CONSTRAINT products_name_nonempty CHECK (length(trim(name)) > 0),
    category TEXT NOT NULL,
    price    REAL NOT NULL
        CONSTRAINT products_price_nonnegative CHECK (price >= 0)
        CONSTRAINT products_price_cents CHECK (abs(price * 100 - round(price * 100)) < 0.001),
    stock    INTEGER NOT NULL DEFAULT 0 CONSTRAINT products_stock_nonnegative CHECK (stock >= 0),
    -- Mean of product_ratings, kept current by the triggers below; NULL while unrated.
    rating   REAL CONSTRAINT products_rating_range CHECK (rating >= 0 AND rating <= 5)
) STRICT;

CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    product_id  INTEGER NOT NULL REFERENCES products (id),
    -- Unit price at the time of the order (a copy: the product's price may change later).
    price       REAL NOT NULL
        CONSTRAINT orders_price_nonnegative CHECK (price >= 0)
        CONSTRAINT orders_price_cents CHECK (abs(price * 100 - round(price * 100)) < 0.001),
    quantity    INTEGER NOT NULL CONSTRAINT orders_quantity_positive CHECK (quantity > 0),
    discount    REAL NOT NULL DEFAULT 0
        CONSTRAINT orders_discount_range CHECK (discount >= 0 AND discount <= 1)
        CONSTRAINT orders_discount_bp
            CHECK (abs(discount * 10000 - round(discount * 10000)) < 0.001),
    status      TEXT NOT NULL DEFAULT 'placed'
        CONSTRAINT orders_status CHECK (status IN ('placed', 'paid', 'shipped', 'cancelled')),
    created_at  TEXT NOT NULL DEFAULT (datetime('now'))
        CONSTRAINT orders_created_at CHECK (datetime(created_at) IS NOT NULL),
    -- price * quantity, exact to the cent.
    total_price REAL GENERATED ALWAYS AS (
        CAST(price * 100 + 0.5 AS INTEGER) * quantity / 100.0
    ) STORED,
    -- price * quantity * discount rounded half up to the cent.
    discount_amount REAL GENERATED ALWAYS AS (
        (CAST(price * 100 + 0.5 AS INTEGER) * quantity
            * CAST(discount * 10000 + 0.5 AS INTEGER) + 5000) / 10000 / 100.0
    ) STORED,
    -- total_price - discount_amount, so that the two always add up to the total. It equals
    -- round(price * quantity * (1 - discount), 2) except on an exact half cent, where rounding
    -- both parts up would invent a cent.
    final_price REAL GENERATED ALWAYS AS (
        (CAST(price * 100 + 0.5 AS INTEGER) * quantity
            - (CAST(price * 100 + 0.5 AS INTEGER) * quantity
                * CAST(discount * 10000 + 0.5 AS INTEGER) + 5000) / 10000) / 100.0
    ) STORED
) STRICT;

-- customer_id leads the composite index, so it also serves the foreign key. status and
-- final_price make it cover a customer's month: REFRESH_ANALYTICS_SQL, which the order flow runs
-- for every order, sums it without reading the table. It replaces orders_customer_created
-- (customer_id, created_at), which a database made before it still has.
DROP INDEX IF EXISTS orders_customer_created;
CREATE INDEX IF NOT EXISTS orders_customer_totals
    ON orders (customer_id, created_at, status, final_price);
CREATE INDEX IF NOT EXISTS orders_product ON orders (product_id);
-- What each customer has bought (cancelled orders left out, as the graph leaves them out): a
-- repeat purchase is found with one index probe, and a customer's distinct products are read
-- from the index alone (tristore.flows.pipeline).
CREATE INDEX IF NOT EXISTS orders_customer_product ON orders (customer_id, product_id)
    WHERE status <> 'cancelled';
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at);
CREATE INDEX IF NOT EXISTS customers_tier_idx ON customers (tier);

CREATE TABLE IF NOT EXISTS invoices (
    id        INTEGER PRIMARY KEY,
    -- UNIQUE: one invoice per order; its implicit index also serves the foreign key.
    order_id  INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    subtotal  REAL NOT NULL
        CONSTRAINT invoices_subtotal_nonnegative CHECK (subtotal >= 0)
        CONSTRAINT invoices_subtotal_cents
            CHECK (abs(subtotal * 100 - round(subtotal * 100)) < 0.001),
    tax_rate  REAL NOT NULL
        CONSTRAINT invoices_tax_rate_range CHECK (tax_rate >= 0 AND tax_rate <= 1)
        CONSTRAINT invoices_tax_rate_bp
            CHECK (abs(tax_rate * 10000 - round(tax_rate * 10000)) < 0.001),
    issued_at TEXT NOT NULL DEFAULT (datetime('now'))
        CONSTRAINT invoices_issued_at CHECK (datetime(issued_at) IS NOT NULL),
    -- subtotal * tax_rate rounded half up to the cent.
    tax_amount REAL GENERATED ALWAYS AS (
        (CAST(subtotal * 100 + 0.5 AS INTEGER) * CAST(tax_rate * 10000 + 0.5 AS INTEGER) + 5000)
            / 10000 / 100.0
    ) STORED,
    -- subtotal + subtotal * tax_rate rounded half up; equals subtotal + tax_amount exactly.
    grand_total REAL GENERATED ALWAYS AS (
        (CAST(subtotal * 100 + 0.5 AS INTEGER) * (10000 + CAST(tax_rate * 10000 + 0.5 AS INTEGER))
            + 5000) / 10000 / 100.0
    ) STORED
) STRICT;

-- Per customer and calendar month ('2026-11'): filled from orders by REFRESH_ANALYTICS_SQL.
CREATE TABLE IF NOT EXISTS analytics (
    customer_id  INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    period       TEXT NOT NULL
        CONSTRAINT analytics_period_format CHECK (
            period GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'
            AND substr(period, 6, 2) BETWEEN '01' AND '12'
        ),
    total_orders INTEGER NOT NULL DEFAULT 0
        CONSTRAINT analytics_total_orders_nonnegative CHECK (total_orders >= 0),
    total_spent  REAL NOT NULL DEFAULT 0
        CONSTRAINT analytics_total_spent_nonnegative CHECK (total_spent >= 0),
    updated_at   TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (customer_id, period)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS product_ratings (
    product_id  INTEGER NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    rating      INTEGER NOT NULL CONSTRAINT product_ratings_range CHECK (rating BETWEEN 1 AND 5),
    created_at  TEXT NOT NULL DEFAULT (datetime('now'))
        CONSTRAINT product_ratings_created_at CHECK (datetime(created_at) IS NOT NULL),
    PRIMARY KEY (product_id, customer_id)
) STRICT, WITHOUT ROWID;

-- product_id leads the primary key; customer_id needs its own index for the foreign key.
CREATE INDEX IF NOT EXISTS product_ratings_customer ON product_ratings (customer_id);

-- products.rating = mean rating, half up to 0.01, in integers for the same reason as the money
-- columns: floor(100 * sum / n + 1/2) = (200 * sum + n) / (2 * n). No ratings -> NULL (x / 0).
CREATE TRIGGER IF NOT EXISTS product_ratings_after_insert
AFTER INSERT ON product_ratings
BEGIN
    UPDATE products SET rating = (
        SELECT (200 * sum(rating) + count(*)) / (2 * count(*)) / 100.0
        FROM product_ratings WHERE product_id = NEW.product_id
    ) WHERE id = NEW.product_id;
END;

CREATE TRIGGER IF NOT EXISTS product_ratings_after_update
AFTER UPDATE OF rating, product_id ON product_ratings
BEGIN
    UPDATE products SET rating = (
        SELECT (200 * sum(rating) + count(*)) / (2 * count(*)) / 100.0
        FROM product_ratings WHERE product_id = products.id
    ) WHERE id IN (OLD.product_id, NEW.product_id);
END;

CREATE TRIGGER IF NOT EXISTS product_ratings_after_delete
AFTER DELETE ON product_ratings
BEGIN
    UPDATE products SET rating = (
        SELECT (200 * sum(rating) + count(*)) / (2 * count(*)) / 100.0
        FROM product_ratings WHERE product_id = OLD.product_id
    ) WHERE id = OLD.product_id;
END;

-- Lifetime metrics per customer, always current (a view: nothing to keep in sync). Cancelled
-- orders count for nothing; customers without orders appear with zeros. Sums are taken in cents
-- (exact), the average rounds half up to the cent: (2 * cents + n) / (2 * n).
CREATE VIEW IF NOT EXISTS customer_metrics AS
SELECT
    c.id                                                    AS customer_id,
    c.tier                                                  AS tier,
    count(o.id)                                             AS order_count,
    coalesce(sum(o.quantity), 0)                            AS items_bought,
    coalesce(sum(CAST(o.final_price * 100 + 0.5 AS INTEGER)), 0) / 100.0 AS lifetime_value,
    (2 * sum(CAST(o.final_price * 100 + 0.5 AS INTEGER)) + count(o.id))
        / (2 * count(o.id)) / 100.0                         AS avg_order_value,
    min(o.created_at)                                       AS first_order_at,
    max(o.created_at)                                       AS last_order_at
FROM customers AS c
LEFT JOIN orders AS o ON o.customer_id = c.id AND o.status <> 'cancelled'
GROUP BY c.id;
