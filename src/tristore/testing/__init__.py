"""Real-store testing support: the pytest plugin, factories, assertions, shared set-up.

The plugin (``tristore.testing.plugin``) is registered through the ``pytest11`` entry point, so
installing tristore makes its fixtures available in any project; this package holds what tests
import: factories, assertion helpers, and the store set-up shared with the asv benchmarks.
"""

from tristore.testing.assertions import (
    assert_absent,
    assert_computed_columns,
    assert_consistent,
    assert_referential_integrity,
    check_computed_columns,
    check_referential_integrity,
)
from tristore.testing.factories import Factory, GraphFactory, Row
from tristore.testing.setup import (
    SeededFiles,
    Stores,
    StoreTemplates,
    open_stores,
    seed_files,
    store_settings,
)

__all__ = [
    "Factory",
    "GraphFactory",
    "Row",
    "SeededFiles",
    "StoreTemplates",
    "Stores",
    "assert_absent",
    "assert_computed_columns",
    "assert_consistent",
    "assert_referential_integrity",
    "check_computed_columns",
    "check_referential_integrity",
    "open_stores",
    "seed_files",
    "store_settings",
]
