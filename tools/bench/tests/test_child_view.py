"""The counted child's view: every path it holds lies under the scratch root, and the view is the
same whatever the location of the environment.

What that does to a count is measured, not tested here: a count of a threaded workload moves
between runs by more than a path used to move it (docs/benchmarks.md cites the figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "tools/bench/src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from tristore_bench import child_view, instructions  # noqa: E402

# What the child reports of itself: everything a path could leak through.
PROBE = """
import json, sys, tristore, tristore_bench
print(json.dumps({
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "path": [p for p in sys.path if p],
    "tristore": tristore.__file__,
    "tristore_bench": tristore_bench.__file__,
}))
"""

# Run by an interpreter started from somewhere else: build a view at ROOT_DIR, probe through it.
BUILD_AND_PROBE = """
import json, subprocess, sys
from pathlib import Path
sys.path.insert(0, {src!r})
from tristore_bench import instructions
root = Path({root!r})
view = instructions.children_view(root)
run_dir = root / "a"
env = instructions.child_environment(run_dir, view)
done = subprocess.run([view.python, "-c", {probe!r}], env=env, cwd=run_dir,
                      capture_output=True, text=True, check=True)
print(done.stdout)
"""


def _probe_from(python: str, root: Path) -> dict[str, object]:
    root.mkdir()
    code = BUILD_AND_PROBE.format(src=str(SRC), root=str(root), probe=PROBE)
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    seen: dict[str, object] = json.loads(done.stdout)
    return json.loads(json.dumps(seen).replace(str(root), "ROOT"))


def _elsewhere(tmp_path: Path) -> str:
    """This environment's interpreter, reached through a link at a much longer path."""
    env = tmp_path / ("a-directory-name-much-longer-than-the-checkout-" * 2) / "env"
    env.parent.mkdir()
    env.symlink_to(sys.prefix, target_is_directory=True)
    return str(env / "bin" / Path(sys.executable).name)


def test_the_child_sees_only_paths_under_the_root(tmp_path: Path) -> None:
    seen = _probe_from(sys.executable, tmp_path / "r")
    assert seen["executable"] == "ROOT/py/bin/python"
    assert seen["prefix"] == "ROOT/py"
    assert seen["base_prefix"] == "ROOT/base"
    paths = seen["path"]
    assert isinstance(paths, list) and paths
    assert all(str(p).startswith("ROOT/") for p in paths), paths
    # Editable installs (.pth files naming the checkout) are re-pointed through links too.
    assert str(seen["tristore"]).startswith("ROOT/")
    assert str(seen["tristore_bench"]).startswith("ROOT/")


def test_the_view_does_not_depend_on_where_the_environment_lies(tmp_path: Path) -> None:
    here = _probe_from(sys.executable, tmp_path / "r1")
    there = _probe_from(_elsewhere(tmp_path), tmp_path / "r2")
    assert here == there


def test_a_pth_file_keeps_imports_and_relative_entries(tmp_path: Path) -> None:
    target = tmp_path / "checkout" / "src"
    target.mkdir(parents=True)
    text = f"# a comment\nimport os; os.getcwd()\nrelative-dir\n{target}\n{target}\n"
    aliases: dict[str, Path] = {}
    rewritten = child_view._rewrite_pth(text, tmp_path, aliases)
    assert rewritten.splitlines() == [
        "# a comment",
        "import os; os.getcwd()",
        "relative-dir",
        str(tmp_path / "p0"),
        str(tmp_path / "p0"),
    ]
    assert os.path.realpath(tmp_path / "p0") == str(target)


def test_scratch_roots_are_numbered_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instructions, "FIXED_ROOT", str(tmp_path))
    first = instructions.scratch_root()
    second = instructions.scratch_root()  # while the first is held
    assert (first.name, second.name) == ("tsb-00000000", "tsb-00000001")
    first.rmdir()
    assert instructions.scratch_root().name == "tsb-00000000"
