"""The library alone, as ``pip install tristore`` gives it: no dev extra, no tristore-bench.

One venv per module, holding this checkout installed non-editable with its runtime dependencies
only, plus pytest and pytest-asyncio (what a user who runs the plugin brings). In it: the CLI's
help and ``doctor`` on embedded stores, and the pytest plugin from a project outside this
repository. The tooling's imports are checked absent first, so a pass cannot come from them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLING = ("pyperf", "asv", "scipy", "pytest_benchmark", "virtualenv", "tristore_bench")


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("runtime-only")
    source = base / "tristore-src"  # a copy, so the build never writes into this checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".asv", "results", "html", "node_modules", "tools", "tests",
            "benchmarks", "__pycache__", "*.egg-info", "build",
        ),
    )  # fmt: skip
    venv = base / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([sys.executable, "-m", "venv", str(venv)], base, env)
    python = venv / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", str(source), "pytest", "pytest-asyncio"],
        base,
        env,
    )
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


def test_no_tooling_is_installed(runtime_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = runtime_venv
    probe = f"import importlib.util as u; print([m for m in {TOOLING!r} if u.find_spec(m)])"
    assert _run([str(venv / "bin" / "python"), "-c", probe], tmp_path, env).strip() == "[]"


def test_cli_help_and_doctor(runtime_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = runtime_venv
    tristore = str(venv / "bin" / "tristore")
    help_text = _run([tristore, "--help"], tmp_path, env)
    for command in ("doctor", "load", "coordinator"):
        assert command in help_text
    for tooling in ("gate", "site", "regressions", "compare"):
        assert f"  {tooling} " not in help_text
    doctor_env = env | {"TRISTORE_DATA_DIR": str(tmp_path / "data")}
    report = _run([tristore, "doctor"], tmp_path, doctor_env, timeout=300)
    assert [line.split()[:2] for line in report.splitlines() if line[:1] != " "] == [
        ["ok", "sqlite"],
        ["ok", "graph"],
        ["ok", "redis"],
    ], report


def test_plugin_from_an_outside_project(
    runtime_venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = runtime_venv
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (project / "test_uses_tristore.py").write_text(
        textwrap.dedent(
            """\
            import pytest

            pytestmark = pytest.mark.asyncio


            async def test_all_three_stores(sqlite_store, graph_store, redis_store):
                await sqlite_store.execute("CREATE TABLE t (x INTEGER)")
                await sqlite_store.execute("INSERT INTO t VALUES (?)", (7,))
                assert await sqlite_store.fetchall("SELECT x FROM t") == [(7,)]
                rows = await graph_store.query("RETURN $v AS v", {"v": 3})
                assert rows == [{"v": 3}]
                assert await redis_store.set("k", "v")
                assert await redis_store.get("k") == b"v"
            """
        )
    )
    out = _run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], project, env
    )
    assert "1 passed" in out, out
