"""Every asv teardown survives a setup that stopped early.

asv calls ``teardown`` even when ``setup`` raised NotImplementedError (the commit lacks the API).
A teardown that then raises turns that skip into a failure in the history, which is how the
first re-measured history recorded failures on the commits before ``tristore.flows`` existed.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(
    p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem not in {"__init__", "common"}
)


def _classes_with_teardown() -> list[tuple[str, type[Any]]]:
    sys.path.insert(0, str(REPO))
    try:
        found = []
        for name in MODULES:
            module = importlib.import_module(f"benchmarks.{name}")
            for cls_name, cls in vars(module).items():
                if (
                    inspect.isclass(cls)
                    and cls.__module__ == module.__name__
                    and not cls_name.startswith("_")
                    and "teardown" in dir(cls)
                ):
                    found.append((f"{name}.{cls_name}", cls))
        return found
    finally:
        sys.path.remove(str(REPO))


CLASSES = _classes_with_teardown()


def test_the_suite_has_teardowns_to_check() -> None:
    assert len(CLASSES) >= 10, [name for name, _ in CLASSES]


@pytest.mark.parametrize(("name", "cls"), CLASSES, ids=[name for name, _ in CLASSES])
def test_teardown_after_a_setup_that_never_ran(name: str, cls: type[Any]) -> None:
    args: list[Any] = []
    if hasattr(cls, "setup_cache"):
        args.append(None)  # what setup_cache would have returned
    args += [values[0] for values in getattr(cls, "params", [])]
    cls().teardown(*args)  # must not raise: nothing was opened
