"""asv.conf.json is valid for asv 0.6.6, because asv itself never says when it is not.

asv loads the config with ``conf.__dict__.update(json)``: a misspelt key ("html_dri") is silently
ignored and the default used instead. The allowed keys are therefore taken from asv's own source:
the attributes ``asv.config.Config()`` initialises, plus the few it reads with ``getattr`` (found by
scanning the installed package), plus ``version`` (checked by its JSON loader).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tristore_bench.asv import asv_command

REPO = Path(__file__).resolve().parents[3]
CONF_PATH = REPO / "asv.conf.json"

asv = pytest.importorskip("asv")
from asv.config import Config  # noqa: E402  (after the importorskip guard)
from asv.machine import Machine  # noqa: E402

# asv.conf.json settings the project relies on being explicit rather than asv's defaults (asv's
# default html_dir is "html", its default install command --force-reinstalls every dependency...).
REQUIRED = {
    "version",
    "project",
    "repo",
    "branches",
    "dvcs",
    "environment_type",
    "pythons",
    "matrix",
    "benchmark_dir",
    "env_dir",
    "results_dir",
    "html_dir",
    "build_command",
    "install_command",
    "uninstall_command",
}
# Keys that belong in ~/.asv-machine.json, where asv looks for them; in asv.conf.json asv ignores
# them without a word.
MACHINE_FIELDS = {name for name, _ in Machine.fields}
DEPRECATED = {"wheel_cache_size"}  # asv warns and renames it to build_cache_size


def _conf() -> dict[str, Any]:
    return json.loads(CONF_PATH.read_text())


def _asv_allowed_keys() -> set[str]:
    keys = set(vars(Config())) | {"version"}
    # Keys read with getattr(conf, "name", default) instead of being initialised in Config().
    package = Path(asv.__file__).parent
    pattern = re.compile(r"""getattr\(\s*(?:self\.)?_?conf(?:ig)?\s*,\s*['"](\w+)['"]""")
    for source in package.rglob("*.py"):
        keys.update(pattern.findall(source.read_text(encoding="utf-8")))
    return keys - DEPRECATED


def test_asv_version_is_the_one_these_rules_were_written_for() -> None:
    # The rules below (matrix key types, install-command syntax) are asv 0.6's; re-read them on an
    # upgrade.
    assert asv.__version__ == "0.6.6"


def test_allowed_keys_come_from_asv() -> None:
    allowed = _asv_allowed_keys()
    # Sanity of the derivation itself: keys asv 0.6.6 documents in its template config.
    for key in ("regressions_thresholds", "build_cache_size", "install_timeout", "launch_method"):
        assert key in allowed
    assert "machine" not in allowed


def test_no_unknown_keys() -> None:
    unknown = set(_conf()) - _asv_allowed_keys()
    assert not unknown, f"asv 0.6.6 silently ignores these keys: {sorted(unknown)}"


def test_required_keys_present() -> None:
    conf = _conf()
    missing = REQUIRED - set(conf)
    assert not missing, f"asv.conf.json should set {sorted(missing)} explicitly"
    assert conf["version"] == 1
    assert conf["dvcs"] == "git"
    assert conf["branches"], "asv refuses an empty branches list"
    assert conf["html_dir"] != conf["results_dir"]


def test_paths_are_relative_and_inside_the_repo() -> None:
    conf = _conf()
    for key in ("repo", "benchmark_dir", "env_dir", "results_dir", "html_dir"):
        value = Path(conf[key])
        assert not value.is_absolute(), f"{key} must be relative, so any checkout works"
        assert (REPO / value).resolve().is_relative_to(REPO), key
    assert (REPO / conf["benchmark_dir"]).is_dir()


def _strip_asv_prefixes(command: str) -> list[str]:
    # asv's command syntax (util.interpolate_command): leading "in-dir=..." and "return-code=..."
    # tokens are directives to asv, not part of the command.
    words = shlex.split(command)
    while words and re.match(r"^(in-dir|return-code)=", words[0]):
        words.pop(0)
    return words


def test_install_command_is_a_plain_pip_install_of_the_wheel() -> None:
    # asv's default adds --force-reinstall, reinstalling every dependency for every commit.
    commands = _conf()["install_command"]
    assert len(commands) == 1, commands
    assert _strip_asv_prefixes(commands[0]) == ["python", "-m", "pip", "install", "{wheel_file}"]


def test_build_command_builds_one_wheel_into_the_cache() -> None:
    (build,) = _conf()["build_command"]
    words = _strip_asv_prefixes(build)
    assert words[:4] == ["python", "-m", "pip", "wheel"], words
    assert "--no-deps" in words  # the matrix installs dependencies once per environment
    assert "{build_cache_dir}" in words and "{build_dir}" in words


def test_uninstall_tolerates_a_missing_project() -> None:
    (uninstall,) = _conf()["uninstall_command"]
    assert uninstall.startswith("return-code=any "), "first install: nothing to uninstall yet"


def test_matrix_uses_asv_0_6_key_types() -> None:
    # A matrix with any key other than req/env/env_nobuild is read in the legacy format, where
    # every key is a package name: a typo such as "reqs" would become a package to install.
    matrix = _conf()["matrix"]
    assert set(matrix) <= {"req", "env", "env_nobuild"}, sorted(matrix)
    for kind, entries in matrix.items():
        assert isinstance(entries, dict), kind


def test_matrix_pins_agree_with_pyproject() -> None:
    # The benchmarks measure the stores' drivers: the environment asv builds must hold the same
    # versions the package pins.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins: dict[str, str] = {}
    for spec in pyproject["project"]["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", spec)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    req = {k.lower(): v for k, v in _conf()["matrix"].get("req", {}).items()}
    disagree = {name: (req[name], pins[name]) for name in pins if req.get(name)}
    disagree = {k: v for k, v in disagree.items() if v[0] != v[1]}
    assert not disagree, f"asv matrix vs pyproject pins (matrix, pyproject): {disagree}"


def test_every_asv_run_launches_benchmarks_the_same_way() -> None:
    # The history was measured with spawn (a fresh interpreter per benchmark); asv's "auto" is
    # forkserver on Linux, whose pre-imported parent changes peakmem and RSS baselines. In the
    # config, so `make bench`, the nightly job and a bare `asv run` all match the history.
    assert _conf()["launch_method"] == "spawn"


def test_regression_thresholds_are_valid() -> None:
    thresholds = _conf().get("regressions_thresholds", {})
    for pattern, value in thresholds.items():
        re.compile(pattern)  # asv matches these with re.match against benchmark names
        assert isinstance(value, int | float) and 0 < value < 10, (pattern, value)


def test_instruction_counts_get_a_count_threshold() -> None:
    # asv applies the largest threshold of every key that matches an entry: a key matching every
    # name (".*": 0.05) would silently lift the deterministic counts from 1-2% to 5%.
    from tristore_bench.thresholds import effective_threshold

    thresholds = _conf().get("regressions_thresholds", {})
    for pattern in thresholds:
        re.compile(pattern)
    name = "instructions.PoolCheckout.track_instructions"
    value = effective_threshold(thresholds, name)
    assert value <= 0.02, f"asv applies {value:.0%} to {name}: check the floors and overrides"


def test_the_config_holds_policy_not_derived_thresholds() -> None:
    # The derived thresholds are computed when the site is published (tristore-bench
    # thresholds prints them); the config keeps the two floors and any override a person
    # chose, and each override says why in docs/thresholds.md.
    from tristore_bench.thresholds import default_keys, overrides

    policy = _conf()["regressions_thresholds"]
    assert list(policy)[:2] == list(default_keys())
    docs = (REPO / "docs" / "thresholds.md").read_text(encoding="utf-8")
    unexplained = [key for key in overrides(policy) if f"`{key}`" not in docs]
    assert not unexplained, f"overrides without a reason in docs/thresholds.md: {unexplained}"


def test_machine_sanity() -> None:
    conf = _conf()
    # Machine facts belong in ~/.asv-machine.json (asv machine), never in the project config.
    assert not MACHINE_FIELDS & set(conf), sorted(MACHINE_FIELDS & set(conf))
    # `asv run --python=same` records the running interpreter: it must be one the config lists.
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running in conf["pythons"], (running, conf["pythons"])
    if conf["environment_type"] == "virtualenv":
        assert importlib.util.find_spec("virtualenv"), "environment_type virtualenv needs it"
    # The Makefile names the machine; asv uses that name as a directory under results/.
    makefile = (REPO / "Makefile").read_text()
    m = re.search(r"^MACHINE\s*\?=\s*(\S+)", makefile, re.MULTILINE)
    assert m, "Makefile should name the asv machine (MACHINE ?= ...)"
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", m.group(1)), m.group(1)


def test_committed_results_describe_their_machine() -> None:
    # Results from different hardware must never be compared; the only record of which hardware
    # produced a results/<machine>/ directory is its machine.json.
    results = REPO / _conf()["results_dir"]
    machine_files = sorted(results.glob("*/machine.json")) if results.is_dir() else []
    for path in machine_files:
        info = json.loads(path.read_text())
        assert info.get("machine") == path.parent.name, path
        missing = MACHINE_FIELDS - {k for k, v in info.items() if v}
        assert not missing, (
            f"{path} lacks {sorted(missing)}: `asv machine --machine NAME --yes` stores only the "
            "name (asv 0.6.6 keeps just the fields given on its command line). Save "
            "asv.machine.Machine.get_defaults() under NAME instead (`make machine`), then re-run."
        )


@pytest.mark.timeout(180)
def _committed_results() -> list[dict[str, Any]]:
    results = REPO / _conf()["results_dir"]
    names = {"machine.json", "benchmarks.json"}
    return [
        json.loads(p.read_text()) for p in sorted(results.glob("*/*.json")) if p.name not in names
    ]


def test_committed_history_is_long_enough() -> None:
    commits = {r["commit_hash"] for r in _committed_results()}
    assert len(commits) >= 20, f"results/ holds {len(commits)} measured commits; 20 are promised"


COUNTS = "instructions."  # the callgrind benchmarks (benchmarks/instructions.py)


def test_committed_results_are_real_runs_with_the_environment_fingerprint() -> None:
    # `asv run --python=same` writes "existing-..." envs and `--quick` one sample per benchmark:
    # neither may stand in results/. Every result must say what it was measured on.
    from tristore_bench.fingerprint import CORE_KEYS

    for result in _committed_results():
        commit = result["commit_hash"][:8]
        assert result["env_name"].startswith("virtualenv-"), (commit, result["env_name"])
        params = result["params"]
        missing = [k for k in CORE_KEYS if not params.get(k)]
        assert not missing, f"{commit}: no {missing} in params; measure with `make bench`"
        for req in ("kuzu", "redis", "aiosqlite"):
            assert params.get(req), (commit, req)
        assert params.get("num_cpu"), commit
        columns = result["result_columns"]
        at = columns.index("stats_repeat")
        timed = {
            k: row
            for k, row in result["results"].items()
            if not k.startswith(COUNTS) and ".track_" not in k
        }
        if not timed:
            # Instruction counts take one sample by design: a count is exact, so --quick
            # (one sample) measures the same number and cannot fake a result there. asv keeps
            # no sample statistics for any track_ benchmark (the in-process ratios summarise
            # their own rounds), so a file of those alone has nothing to tell --quick by.
            continue
        repeats = [r for row in timed.values() if len(row) > at for r in (row[at] or [])]
        assert any(r and r > 1 for r in repeats), f"{commit}: one sample per benchmark (--quick?)"


def test_asv_check_passes() -> None:
    done = subprocess.run(
        [*asv_command(), "check", "--python=same", "--config", str(CONF_PATH)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "No problems found" in output, output
