"""The e-commerce domain: SQLite DDL with generated columns, SQL functions, graph DDL, data.

- ``sqlite.sql`` / ``graph.cypher``: the packaged DDL (read with :func:`sqlite_script` and
  :func:`graph_statements`, applied with :func:`apply_sqlite_schema` / :func:`apply_graph_schema`).
- :mod:`~tristore.schema.functions`: the money rules, ``calculate_total`` and the domain queries.
- :mod:`~tristore.schema.generate`: seeded data sets at documented :data:`SIZES`.
- :mod:`~tristore.schema.load`: bulk loads (SQLite ``executemany``, Kuzu ``COPY``).
"""

from tristore.schema.functions import (
    ORDER_SUMMARY_SQL,
    RANK_PRODUCTS_CYPHER,
    REBUILD_ANALYTICS_SQL,
    RECOMMENDATIONS_CYPHER,
    REFRESH_ANALYTICS_SQL,
    InvoiceAmounts,
    OrderAmounts,
    calculate_total_py,
    invoice_amounts_py,
    mean_rating_py,
    order_amounts_py,
    register_functions,
    to_basis_points,
    to_cents,
)
from tristore.schema.generate import (
    COUNTRIES,
    PRICING_TIERS,
    SIZES,
    Customer,
    Dataset,
    Follow,
    Invoice,
    Order,
    Product,
    Rating,
    Size,
    View,
    generate,
)
from tristore.schema.load import (
    GRAPH_TABLES,
    GraphConnection,
    apply_graph_schema,
    apply_sqlite_schema,
    graph_statements,
    load_graph,
    load_sqlite,
    sqlite_script,
    write_graph_csv,
)

__all__ = [
    "COUNTRIES",
    "GRAPH_TABLES",
    "ORDER_SUMMARY_SQL",
    "PRICING_TIERS",
    "RANK_PRODUCTS_CYPHER",
    "REBUILD_ANALYTICS_SQL",
    "RECOMMENDATIONS_CYPHER",
    "REFRESH_ANALYTICS_SQL",
    "SIZES",
    "Customer",
    "Dataset",
    "Follow",
    "GraphConnection",
    "Invoice",
    "InvoiceAmounts",
    "Order",
    "OrderAmounts",
    "Product",
    "Rating",
    "Size",
    "View",
    "apply_graph_schema",
    "apply_sqlite_schema",
    "calculate_total_py",
    "generate",
    "graph_statements",
    "invoice_amounts_py",
    "load_graph",
    "load_sqlite",
    "mean_rating_py",
    "order_amounts_py",
    "register_functions",
    "sqlite_script",
    "to_basis_points",
    "to_cents",
    "write_graph_csv",
]
