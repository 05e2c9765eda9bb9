// tristore graph schema for Kuzu 0.11 (and Ladybug, same dialect).
// Statements are separated by ';' and are idempotent (IF NOT EXISTS). Lines starting with '//'
// are comments; graph_statements() drops them before handing each statement to Kuzu.
// Node keys are the SQLite primary keys, so a row and its node share one id.
// Timestamps are written as 'YYYY-MM-DD HH:MM:SS' (SQLite's datetime format), which Kuzu parses.

CREATE NODE TABLE IF NOT EXISTS Customer(
    id INT64 PRIMARY KEY,
    name STRING,
    tier STRING
);

CREATE NODE TABLE IF NOT EXISTS Product(
    id INT64 PRIMARY KEY,
    name STRING,
    category STRING,
    price DOUBLE
);

// One edge per order that was not cancelled: a customer may buy one product several times.
CREATE REL TABLE IF NOT EXISTS PURCHASED(
    FROM Customer TO Product,
    order_id INT64,
    quantity INT64,
    at TIMESTAMP,
    MANY_MANY
);

CREATE REL TABLE IF NOT EXISTS VIEWED(
    FROM Customer TO Product,
    at TIMESTAMP,
    MANY_MANY
);

CREATE REL TABLE IF NOT EXISTS FOLLOWS(
    FROM Customer TO Customer,
    since TIMESTAMP,
    MANY_MANY
);
