"""The site's attribution pages for flagged count steps (profiles faked; the real profiler is
tested in test_attribution.py, the whole site in test_site.py)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tristore_bench import attribution, site_attribution

HASHES = [f"{i:x}" * 40 for i in range(1, 6)]
SQLITE = "instructions.SQLiteWrite.track_instructions"


@pytest.fixture
def html(tmp_path: Path) -> Path:
    out = tmp_path / "html"
    out.mkdir()
    (out / "index.json").write_text(
        json.dumps({"revision_to_hash": {str(i): h for i, h in enumerate(HASHES)}})
    )
    regressions = [
        # A count step at commit 2 (adjacent: no last good commit), one in 3..4, a wall step.
        [SQLITE, "g.json", {}, None, 2.0, 1.0, [[None, 2, 1.0, 1.08]]],
        [
            "instructions.GraphPointRead.track_instructions", "g.json", {}, None, 3.0, 2.0,
            [[3, 4, 2.0, 3.0]],
        ],
        ["mod.time_a", "g.json", {}, None, 2.0, 1.0, [[None, 2, 1.0, 2.0]]],
    ]  # fmt: skip
    (out / "regressions.json").write_text(json.dumps({"regressions": regressions}))
    (out / "index.html").write_text("<html><body><div id='regressions-body'></div></body></html>")
    return out


class Fake:
    def __init__(self) -> None:
        self.profiled: list[tuple[str, Path]] = []

    @contextlib.contextmanager
    def sources(self, ref: str) -> Iterator[Path]:
        yield Path(ref[:4])

    def profile(self, workload: str, n: int | None = None, *, library: Path) -> Any:
        self.profiled.append((workload, library))
        grown = library.name in (HASHES[2][:4], HASHES[4][:4])
        own = 60.0 if grown else 10.0
        return attribution.Profile(
            workload,
            10,
            {"tristore.stores.sqlite:SQLiteStore.execute": own, "m:other": 5.0},
            {"tristore.stores.sqlite:SQLiteStore.execute": own + 5.0, "m:other": 5.0},
        )


def _write(html: Path, fake: Fake, tmp_path: Path) -> list[site_attribution.Page]:
    return site_attribution.write_pages(
        html, tmp_path, cache=tmp_path / "cache", sources=fake.sources, profile=fake.profile,
        parent=lambda commit: HASHES[HASHES.index(commit) - 1],
    )  # fmt: skip


def test_a_page_per_flagged_count_step_naming_the_python_function(
    html: Path, tmp_path: Path
) -> None:
    fake = Fake()
    pages = _write(html, fake, tmp_path)
    by_name = {p.benchmark: p for p in pages}  # biggest ratio first, as regressions lists them
    assert [(p.benchmark, p.base, p.head) for p in pages] == [
        ("instructions.GraphPointRead.track_instructions", HASHES[3], HASHES[4]),
        (SQLITE, HASHES[1], HASHES[2]),  # against the flagged commit's parent
    ]
    assert ("sqlite_write", Path("2222")) in fake.profiled
    assert ("sqlite_write", Path("3333")) in fake.profiled
    page = by_name[SQLITE].path.read_text()
    assert "tristore.stores.sqlite:SQLiteStore.execute</code></td><td>+50.0</td><td>+50.0" in page
    assert "m:other" not in page  # did not move
    assert f"--base {HASHES[1][:12]} --head {HASHES[2][:12]}" in page
    index = json.loads((html / "attribution" / "index.json").read_text())
    assert index == {f"{p.benchmark}|{p.head}": f"attribution/{p.path.name}" for p in pages}
    assert (html / "attribution" / "links.js").read_text() == site_attribution.LINKS_JS


def test_a_republish_reads_the_cache(html: Path, tmp_path: Path) -> None:
    first = Fake()
    _write(html, first, tmp_path)
    again = Fake()
    pages = _write(html, again, tmp_path)
    assert again.profiled == [] and len(first.profiled) == 4
    assert all("+50.0" in p.path.read_text() for p in pages)


def test_a_commit_that_cannot_run_the_workload_says_why(html: Path, tmp_path: Path) -> None:
    fake = Fake()

    def failing(workload: str, n: int | None = None, *, library: Path) -> Any:
        raise RuntimeError("attribution failed\nModuleNotFoundError: No module named 'x'")

    fake.profile = failing  # type: ignore[method-assign]
    pages = _write(html, fake, tmp_path)
    assert pages[0].rows == () and "ModuleNotFoundError" in pages[0].note
    assert "no attribution: ModuleNotFoundError" in pages[0].path.read_text()


def test_the_regressions_page_loads_the_links_once(html: Path) -> None:
    assert site_attribution.link_from_index(html)
    assert not site_attribution.link_from_index(html)
    text = (html / "index.html").read_text()
    assert text.count('<script src="attribution/links.js"></script>') == 1


def test_the_links_script_parses(tmp_path: Path) -> None:
    """Syntax only: the rendering is the browser's (test_site.py's headless checks)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "links.js"
    script.write_text(site_attribution.LINKS_JS)
    done = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
