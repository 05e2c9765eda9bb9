"""What a counted child sees of the interpreter and the sources: paths of one length, anywhere.

An instruction count moves with the *length* of the paths the measured process holds: the
interpreter's prefix, its ``sys.path``, the modules' ``__file__``. What a process allocates
before the counted region places its heap, and objects hashed by address (tasks, futures,
handles in sets and dicts) then collide differently in the region. So the same commit counted
from a checkout in another directory, or from asv's env under another path, read another number:
a clone in ``/work/main`` and a runner's ``/home/runner/work/tristore/tristore`` would split one
series by a fraction of a percent, and shards with env directories of different lengths would
not merge into the series one serial run gives.

The child therefore runs from a *view* under the measurement's scratch root (``/tmp/tsb-XXXXXXXX``,
one length everywhere):

* ``base``: a link to the base interpreter's prefix (``sys.base_prefix``: the standard library);
* ``py``: a virtual environment of links: ``pyvenv.cfg`` whose ``home`` is in ``base``,
  ``bin/python`` a link to the real executable through ``base``, and a ``site-packages`` whose
  every entry links to the running environment's own; a ``.pth`` file naming absolute
  directories (an editable install) is rewritten to name them through links ``p0``, ``p1``, ...;
* ``lib`` (a library under measurement given as a ``src`` directory) and ``src`` (the counting
  code), the child's ``PYTHONPATH``.

Where the interpreter's binary lies outside its own prefix the view cannot be built; the child
then runs from the real paths, as before, and :attr:`View.fixed` says so.
"""

from __future__ import annotations

import os
import platform
import site
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["View", "build"]


@dataclass(frozen=True)
class View:
    """How to start a counted child: its interpreter and its ``PYTHONPATH`` entries."""

    python: str
    pythonpath: tuple[str, ...]
    fixed: bool  # False: the real paths (the view could not be built here)

    @property
    def pythonpath_value(self) -> str:
        return os.pathsep.join(self.pythonpath)


def build(root: Path, sources: Path, library: Path | None = None) -> View:
    """Make the view under ``root`` (an existing, empty enough directory) and return it."""
    real_paths = (*([str(library)] if library else []), str(sources))
    base_real = Path(os.path.realpath(sys.base_prefix))
    executable = Path(os.path.realpath(sys.executable))
    try:
        inside = executable.relative_to(base_real)
    except ValueError:
        return View(sys.executable, real_paths, fixed=False)

    base = _link(root / "base", base_real)
    env = root / "py"
    (env / "bin").mkdir(parents=True)
    python = env / "bin" / "python"
    python.symlink_to(base / inside)
    in_venv = sys.prefix != sys.base_prefix
    (env / "pyvenv.cfg").write_text(
        f"home = {base / inside.parent}\n"
        f"include-system-site-packages = {'false' if in_venv else 'true'}\n"
        f"version = {platform.python_version()}\n"
    )
    if in_venv:
        target = env / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        _mirror_site_packages(root, _own_site_packages(), target / "site-packages")
    paths = [str(_link(root / "lib", library))] if library else []
    paths.append(str(_link(root / "src", sources)))
    return View(str(python), tuple(paths), fixed=True)


def _own_site_packages() -> list[Path]:
    """The running environment's site-packages (not the base interpreter's)."""
    prefix = os.path.realpath(sys.prefix)
    found = []
    for directory in site.getsitepackages():
        real = Path(os.path.realpath(directory))
        if real.is_dir() and str(real).startswith(prefix + os.sep) and real not in found:
            found.append(real)
    return found


def _mirror_site_packages(root: Path, sources: list[Path], mirror: Path) -> None:
    """Link every entry of ``sources`` into ``mirror``; re-point absolute paths in ``.pth`` files.

    Entries are linked in sorted order and the aliases numbered in that order, so the same
    environment gives the same view wherever it lies.
    """
    mirror.mkdir(parents=True)
    aliases: dict[str, Path] = {}
    for source in sources:
        for entry in sorted(source.iterdir()):
            target = mirror / entry.name
            if target.exists() or target.is_symlink():
                continue  # an earlier directory of sys.path wins, as it would for imports
            if entry.suffix == ".pth" and entry.is_file():
                target.write_text(_rewrite_pth(entry.read_text(), root, aliases))
            else:
                target.symlink_to(entry)


def _rewrite_pth(text: str, root: Path, aliases: dict[str, Path]) -> str:
    """A ``.pth`` file whose absolute directory lines name links under ``root`` instead.

    Comment lines, ``import`` lines and relative entries (resolved against the site directory,
    which the mirror reproduces) are kept as they are.
    """
    lines = []
    for line in text.splitlines():
        entry = line.rstrip()
        if entry.startswith("/") and Path(entry).is_dir():
            if entry not in aliases:
                aliases[entry] = _link(root / f"p{len(aliases)}", Path(entry))
            line = str(aliases[entry])
        lines.append(line)
    return "\n".join(lines) + "\n"


def _link(path: Path, to: Path) -> Path:
    path.symlink_to(os.path.realpath(to), target_is_directory=True)
    return path
