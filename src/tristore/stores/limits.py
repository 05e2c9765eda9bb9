"""Size limits on values, checked before a value reaches a store.

SQLite accepts values up to 1 GB and Redis up to 512 MB; a value that large is almost always a bug,
and failing before the round trip keeps the store and the caller's transaction untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tristore.errors import ValueTooLarge


def check_values(store: str, params: Iterable[Any] | Mapping[str, Any] | None, limit: int) -> None:
    if not params:
        return
    values = params.values() if isinstance(params, Mapping) else params
    for value in values:
        if isinstance(value, str | bytes | bytearray | memoryview) and len(value) > limit:
            raise ValueTooLarge(store, f"value of {len(value)} bytes exceeds the limit of {limit}")
