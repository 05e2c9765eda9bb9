"""Size limits on values, checked before a value reaches a store.

SQLite accepts values up to 1 GB and Redis up to 512 MB; a value that large is almost always a bug,
and failing before the round trip keeps the store and the caller's transaction untouched.

A value's size is what the store holds, not what Python's ``len`` says: text counts as UTF-8
("€" is 3 bytes), and a list or dict counts everything inside it, keys included, since the
engines store and send it whole. Numbers and other scalars count as their 8-byte width.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tristore.errors import QueryError, ValueTooLarge

SCALAR_BYTES = 8
# Checked by exact type first: most parameters are these, and the Mapping check below is an ABC
# isinstance (~0.5 us a value on every store call).
_SCALAR_TYPES = frozenset({int, float, bool, type(None)})
# Far deeper than any real parameter; it also stops a list that contains itself.
MAX_DEPTH = 64


def check_values(store: str, params: Iterable[Any] | Mapping[str, Any] | None, limit: int) -> None:
    """Raise :class:`ValueTooLarge` naming the first parameter whose size exceeds ``limit``."""
    if not params:
        return
    items = params.items() if isinstance(params, Mapping) else enumerate(params, 1)
    for name, value in items:
        size = value_bytes(store, value, limit)
        if size > limit:
            which = f"parameter {name!r}" if isinstance(name, str) else f"parameter {name}"
            raise ValueTooLarge(
                store,
                f"{which}: a value of at least {size} bytes exceeds the limit of {limit} "
                "(text counts as UTF-8, a list or dict with its contents)",
            )


def value_bytes(store: str, value: Any, limit: int) -> int:
    """The size of ``value`` as a store holds it, or a lower bound once that is past ``limit``."""
    return _size(store, value, limit, 0)


def _size(store: str, value: Any, limit: int, depth: int) -> int:
    if type(value) in _SCALAR_TYPES:
        return SCALAR_BYTES
    if isinstance(value, str):
        # Characters are a lower bound of UTF-8 bytes, and an ASCII check allocates nothing.
        if len(value) > limit or value.isascii():
            return len(value)
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, Mapping):
        parts: Iterable[Any] = (part for pair in value.items() for part in pair)
    elif isinstance(value, list | tuple | set | frozenset):
        parts = value
    else:
        return SCALAR_BYTES
    if depth >= MAX_DEPTH:
        raise QueryError(store, f"a parameter is nested more than {MAX_DEPTH} levels deep")
    total = 0
    for part in parts:
        total += _size(store, part, limit - total, depth + 1)
        if total > limit:  # no need to walk the rest of a huge list
            break
    return total
