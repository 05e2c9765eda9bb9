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


def test_a_setup_cache_that_lacks_the_api_becomes_a_skip_not_a_failure() -> None:
    sys.path.insert(0, str(REPO))
    try:
        common = importlib.import_module("benchmarks.common")
    finally:
        sys.path.remove(str(REPO))

    class Old:
        @common.cache_or_skip
        def setup_cache(self) -> str:
            return common.require("tristore.not_yet_written")

        def setup(self, cache: Any) -> None:
            common.skip_if_unavailable(cache)

    cache = Old().setup_cache()
    with pytest.raises(NotImplementedError, match="not available at this commit"):
        Old().setup(cache)
    common.skip_if_unavailable("/a/seeded/path")  # a real cache passes through
    common.skip_if_unavailable({"kuzu-small": "/x"})


@pytest.mark.parametrize("module", MODULES)
def test_every_setup_cache_in_the_suite_can_skip(module: str) -> None:
    source = (REPO / "benchmarks" / f"{module}.py").read_text()
    assert source.count("def setup_cache") == source.count("@cache_or_skip\n    def setup_cache")
