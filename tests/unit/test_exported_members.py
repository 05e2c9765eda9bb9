"""The public names of each package are exactly its ``__all__`` (in the manner of httpx).

A name that is importable but not exported, or exported but missing, is an accident either way:
the first becomes an API by use, the second breaks ``from tristore.x import *``.
"""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = (
    "tristore",
    "tristore.coordinator",
    "tristore.flows",
    "tristore.schema",
    "tristore.services",
    "tristore.stores",
    "tristore.testing",
)


@pytest.mark.parametrize("name", PACKAGES)
def test_module_exports_all_public_members(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        member
        for member in dir(module)
        if not member.startswith("_")
        # submodules are reachable as attributes once imported; they are not exports
        and not isinstance(getattr(module, member), types.ModuleType)
        and member != "annotations"  # `from __future__ import annotations`
    }
    exported = set(module.__all__) - {"__version__"}
    assert public == exported, {
        "importable, not exported": sorted(public - exported),
        "exported, missing": sorted(exported - public),
    }


def test_the_library_never_imports_its_tooling() -> None:
    # A fresh interpreter: this test process has imported plenty already.
    import subprocess
    import sys

    probe = (
        f"import importlib, sys; [importlib.import_module(m) for m in {PACKAGES!r}]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tristore_bench', 'pyperf', 'asv', 'scipy', 'pytest_benchmark', 'virtualenv'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
