"""Real-store testing support: the pytest plugin and the set-up shared with the benchmarks."""

from tristore.testing.setup import Stores, open_stores, store_settings

__all__ = ["Stores", "open_stores", "store_settings"]
