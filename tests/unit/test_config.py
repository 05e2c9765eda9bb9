from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tristore.config import MiB, Settings, load_settings, redact_url
from tristore.errors import ConfigError


def test_defaults_are_the_specification_figures() -> None:
    s = load_settings(environ={})
    assert s.graph.buffer_pool_bytes == 128 * MiB
    assert s.graph.max_threads == min(8, os.cpu_count() or 1)
    assert s.graph.compression is True
    assert (s.redis.pool_min, s.redis.pool_max) == (10, 50)
    assert s.redis.retry_on_timeout and s.redis.socket_keepalive
    assert s.redis.pipeline_size == 100
    assert s.sqlite.journal_mode == "WAL"
    assert s.sqlite.busy_timeout_ms == 30_000
    assert s.sqlite.cache_size == 10_000
    assert s.sqlite.writer_cache_size == 2_000
    assert s.sqlite.synchronous == "NORMAL"


def test_environment_overrides_parse_types() -> None:
    s = load_settings(
        environ={
            "TRISTORE_SQLITE_BUSY_TIMEOUT_MS": "5000",
            "TRISTORE_SQLITE_SYNCHRONOUS": "full",
            "TRISTORE_SQLITE_WRITER_CACHE_SIZE": "-4096",
            "TRISTORE_REDIS_RETRY_ON_TIMEOUT": "off",
            "TRISTORE_REDIS_SOCKET_TIMEOUT_S": "1.5",
            "TRISTORE_DATA_DIR": "/tmp/x",
        }
    )
    assert s.sqlite.busy_timeout_ms == 5000
    assert s.sqlite.synchronous == "FULL"
    assert s.sqlite.writer_cache_size == -4096
    assert s.redis.retry_on_timeout is False
    assert s.redis.socket_timeout_s == 1.5
    assert s.data_dir == "/tmp/x"


def test_toml_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        "[sqlite]\ncache_size = 2000\nwriter_cache_size = 500\nreaders = 2\n"
        "[redis]\npool_max = 20\n"
    )
    s = load_settings(cfg, environ={"TRISTORE_SQLITE_READERS": "3"})
    assert s.sqlite.cache_size == 2000
    assert s.sqlite.writer_cache_size == 500
    assert s.sqlite.readers == 3  # the environment wins over the file
    assert s.redis.pool_max == 20


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[graph]\nengine = "kuzu"\nmax_threads = 1\n')
    s = load_settings(environ={"TRISTORE_CONFIG": str(cfg)})
    assert s.graph.max_threads == 1


def test_tooling_variables_are_not_settings() -> None:
    # Reserved prefixes: the test suite's and tristore-bench's switches never reach the settings,
    # and the library does not list their names.
    environ = {
        "TRISTORE_TEST_SLOWDOWN": "20",
        "TRISTORE_TEST_CRASH_KILLS": "5",
        "TRISTORE_BENCH_INJECT": "pool_checkout:3",
        "TRISTORE_SQLITE_READERS": "3",
    }
    assert load_settings(environ=environ).sqlite.readers == 3


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"TRISTORE_SQLITE_BUSYTIMEOUT": "5"}, "sqlite.busytimeout: unknown key"),
        ({"TRISTORE_TESTS_X": "1"}, "TRISTORE_TESTS_X: unknown setting"),
        ({"TRISTORE_NOSUCH_KEY": "5"}, "TRISTORE_NOSUCH_KEY: unknown setting"),
        ({"TRISTORE_SQLITE_BUSY_TIMEOUT_MS": "soon"}, "sqlite.busy_timeout_ms: expected int"),
        ({"TRISTORE_REDIS_CLUSTER": "maybe"}, "redis.cluster: expected bool"),
        ({"TRISTORE_REDIS_SOCKET_TIMEOUT_S": "x"}, "redis.socket_timeout_s: expected float"),
        ({"TRISTORE_SQLITE_SYNCHRONOUS": "SOMETIMES"}, "sqlite.synchronous: expected one of"),
        ({"TRISTORE_GRAPH_ENGINE": "neo4j"}, "graph.engine: expected one of 'kuzu', 'ladybug'"),
        ({"TRISTORE_REDIS_POOL_MIN": "60"}, "redis.pool_min: expected an int in [0, 50]"),
        ({"TRISTORE_SQLITE_READERS": "0"}, "sqlite.readers: expected an int in [1, 64]"),
        ({"TRISTORE_GRAPH_BUFFER_POOL_BYTES": "1024"}, "graph.buffer_pool_bytes"),
    ],
)
def test_environment_errors_name_key_and_type(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_settings(environ=environ)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sqlite]\ncache_sise = 1\n", "sqlite.cache_sise: unknown key in config file"),
        ("[sqlite]\ncache_size = '1'\n", "sqlite.cache_size: expected int, got str"),
        ("[sqlite]\ncache_size = true\n", "sqlite.cache_size: expected int, got bool"),
        ("[sqlite]\nwriter_cache_size = '1'\n", "sqlite.writer_cache_size: expected int, got str"),
        (
            "[sqlite]\nwriter_cache_size = 2147483648\n",
            r"sqlite.writer_cache_size: expected an int in \[-2147483648, 2147483647\]",
        ),
        ("[redis]\ncluster = 1\n", "redis.cluster: expected bool, got int"),
        ("[redis]\nurl = 5\n", "redis.url: expected str"),
        ("sqlite = 3\n", "sqlite: expected a table of settings"),
        ("[kuzu]\npath = 'x'\n", "kuzu: unknown key"),
        ("[sqlite\n", "invalid TOML"),
    ],
)
def test_file_errors_name_key_and_type(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_replace_validates_like_a_file() -> None:
    s = Settings().replace(sqlite={"readers": 2})
    assert s.sqlite.readers == 2
    with pytest.raises(ConfigError, match="sqlite.readerz: unknown key"):
        Settings().replace(sqlite={"readerz": 2})


def test_paths_default_under_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path))
    assert s.sqlite_path == tmp_path / "tristore.sqlite3"
    assert s.graph_path == tmp_path / "graph.kuzu"


def test_redaction_hides_password() -> None:
    assert redact_url("redis://:s3cret@127.0.0.1:1234/0") == "redis://:***@127.0.0.1:1234/0"
    assert redact_url("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    s = Settings().replace(redis={"url": "redis://:s3cret@127.0.0.1:1/0"})
    assert "s3cret" not in repr(s.redacted())


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"TRISTORE_GRAPH_MAX_THREADS": "100000"}, "graph.max_threads: expected an int in [1, "),
        (
            {"TRISTORE_GRAPH_MAX_VALUE_BYTES": "-1"},
            "graph.max_value_bytes: expected an int in [1, ",
        ),
        (
            {"TRISTORE_GRAPH_MAX_VALUE_BYTES": str(64 * MiB)},
            "(up to graph.buffer_pool_bytes / 8), got 67108864",
        ),
        ({"TRISTORE_REDIS_MAX_VALUE_BYTES": "0"}, "redis.max_value_bytes: expected an int in [1, "),
        ({"TRISTORE_REDIS_MAX_VALUE_BYTES": str(513 * MiB)}, "in [1, 536870912]"),
        (
            {"TRISTORE_REDIS_CONNECT_TIMEOUT_S": "-1"},
            "redis.connect_timeout_s: expected a float in",
        ),
        (
            {"TRISTORE_REDIS_CONNECT_TIMEOUT_S": "nan"},
            "[0.001, 3600.0], got nan",
        ),
        (
            {"TRISTORE_REDIS_SOCKET_TIMEOUT_S": "inf"},
            "[0.001, 3600.0], got inf",
        ),
        (
            {"TRISTORE_SQLITE_BUSY_TIMEOUT_MS": str(10**20)},
            "busy_timeout_ms: expected an int in [0, 2147483647]",
        ),
        ({"TRISTORE_SQLITE_CACHE_SIZE": str(10**20)}, "sqlite.cache_size: expected an int in"),
        (
            {"TRISTORE_SQLITE_WRITER_CACHE_SIZE": str(10**20)},
            "sqlite.writer_cache_size: expected an int in [-2147483648, 2147483647]",
        ),
        (
            {"TRISTORE_SQLITE_WRITER_CACHE_SIZE": str(-(2**31) - 1)},
            "sqlite.writer_cache_size: expected an int in [-2147483648, 2147483647]",
        ),
        ({"TRISTORE_SQLITE_MAX_VALUE_BYTES": str(2 * 10**9)}, "sqlite.max_value_bytes"),
        ({"TRISTORE_DATA_DIR": ""}, "data_dir: expected a non-empty path"),
        ({"TRISTORE_DATA_DIR": "  "}, "data_dir: expected a non-empty path"),
        ({"TRISTORE_REDIS_URL": "redis://:pw@127.0.0.1:1/abc"}, "redis.url: expected a database"),
        ({"TRISTORE_REDIS_URL": "redis://127.0.0.1:99999/0"}, "redis.url: expected a port"),
        ({"TRISTORE_REDIS_URL": "http://127.0.0.1:1/0"}, "redis.url: expected redis://"),
        ({"TRISTORE_REDIS_URL": "unix://"}, "redis.url: expected a socket path"),
        ({"TRISTORE_SQLITE_READERS": "100000"}, "sqlite.readers: expected an int in [1, 64]"),
        ({"TRISTORE_GRAPH_READERS": "100000"}, "graph.readers: expected an int in [1, 64]"),
        ({"TRISTORE_REDIS_POOL_MAX": "100000"}, "redis.pool_max: expected an int in [1, 10000]"),
        ({"TRISTORE_REDIS_PIPELINE_SIZE": "0"}, "redis.pipeline_size: expected an int in"),
        ({"TRISTORE_GRAPH_BUFFER_POOL_BYTES": str(2**60)}, "16 MiB to this machine's memory"),
    ],
)
def test_out_of_range_values_name_key_and_range(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_settings(environ=environ)


def test_range_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TRISTORE_REDIS_URL": "redis://:s3cret@127.0.0.1:1/abc"})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "values",
    [
        {"sqlite": {"cache_size": -2000, "busy_timeout_ms": 0, "readers": 64}},
        {"sqlite": {"cache_size": 2**31 - 1, "writer_cache_size": -(2**31)}},
        {"sqlite": {"writer_cache_size": 2**31 - 1}},
        {"graph": {"buffer_pool_bytes": 16 * MiB, "max_value_bytes": 2 * MiB, "max_threads": 1}},
        {"redis": {"pool_min": 0, "pool_max": 10_000, "max_value_bytes": 512 * MiB}},
        {"redis": {"url": "unix:///tmp/redis.sock?password=x"}},
        {"redis": {"url": "rediss://u:p@host:6380/15"}},
    ],
)
def test_values_at_the_bounds_are_accepted(values: dict[str, dict[str, object]]) -> None:
    Settings().replace(**values)


def test_directory_or_non_utf8_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, expected a TOML file"):
        load_settings(environ={"TRISTORE_CONFIG": str(tmp_path)})
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"[sqlite]\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at offset 14\)"):
        load_settings(latin, environ={})
