"""What every asv-facing tool shares: the config's paths, the pinned asv, git, common options.

The library never imports this package. Its modules shell out to the venv's ``asv`` and read
the files asv writes (results JSON, the published ``html_dir``), so they depend on asv's file
formats, not on its Python API; those formats are pinned by ``asv==0.6.6`` in the dev extra.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

FC = TypeVar("FC", bound=Callable[..., Any])

__all__ = [
    "AsvPaths",
    "BenchError",
    "HarnessError",
    "asv_command",
    "asv_paths",
    "command_line",
    "git",
]


class BenchError(Exception):
    """A tooling step cannot go on; every tristore-bench command turns it into exit code 2."""


class HarnessError(BenchError):
    """A harness step cannot go on (missing tool, never-published site, unreadable results)."""


@dataclass(frozen=True)
class AsvPaths:
    """The locations an ``asv.conf.json`` names, made absolute.

    asv resolves relative paths against its working directory; every harness command runs asv
    with ``cwd`` = the config's directory, so that is what relative paths are resolved against.
    """

    config: Path
    root: Path
    repo: Path
    results_dir: Path
    html_dir: Path
    benchmark_dir: Path
    raw: dict[str, Any] = field(repr=False, compare=False)


def _load_json(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # asv also accepts // comments (``.jsonc`` style); defer to its own reader for those.
        try:
            from asv.util import load_json
        except ImportError as exc:  # pragma: no cover - asv is in the dev extra
            raise HarnessError(f"{path} is not plain JSON and asv is not installed") from exc
        data = load_json(str(path), js_comments=True)
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object")
    return data


def asv_paths(config: Path | str = "asv.conf.json") -> AsvPaths:
    """Read ``config`` and return its paths, with asv's defaults for keys it leaves out."""
    path = Path(config).resolve()
    if not path.is_file():
        raise HarnessError(
            f"asv config {path} not found (run from the repo root or pass --asv-config)"
        )
    raw = _load_json(path)
    root = path.parent

    def where(key: str, default: str) -> Path:
        return (root / str(raw.get(key, default))).resolve()

    return AsvPaths(
        config=path,
        root=root,
        repo=where("repo", "."),
        results_dir=where("results_dir", "results"),
        html_dir=where("html_dir", "html"),
        benchmark_dir=where("benchmark_dir", "benchmarks"),
        raw=raw,
    )


def git(repo: Path, *args: str) -> str:
    """``git ARGS`` in ``repo``; its stdout, or HarnessError naming what failed."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError as exc:
        raise HarnessError("git not found on PATH") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"git {' '.join(args)} in {repo}: {exc}") from exc
    if done.returncode != 0:
        raise HarnessError(f"git {' '.join(args)} in {repo} failed: {done.stderr.strip()}")
    return done.stdout


def command_line(subcommand: str) -> str:
    """How ``tristore-bench SUBCOMMAND`` was invoked, for the records and reports it writes."""
    args = sys.argv[1:]
    if subcommand in args:
        args = args[args.index(subcommand) + 1 :]
    return shlex.join(["tristore-bench", subcommand, *args])


def asv_command() -> list[str]:
    """argv prefix that runs the asv of *this* interpreter's environment (the project venv).

    A bare ``asv`` from PATH could belong to another Python whose asv version writes a different
    results format; the script next to ``sys.executable`` is the one pinned in the dev extra.
    """
    sibling = Path(sys.executable).with_name("asv")
    if sibling.is_file():
        return [str(sibling)]
    # ``python -m asv`` works whenever asv is importable here, even without its console script.
    return [sys.executable, "-m", "asv"]


def asv_config_option(help_text: str) -> Callable[[FC], FC]:
    """The ``--asv-config`` option every harness command shares (``--config`` is the TOML one)."""
    return click.option(
        "--asv-config",
        "config",
        type=click.Path(dir_okay=False, path_type=Path),
        default="asv.conf.json",
        show_default=True,
        help=help_text,
    )


def html_dir_option(help_text: str) -> Callable[[FC], FC]:
    return click.option(
        "--html-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=help_text,
    )
