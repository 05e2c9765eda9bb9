from __future__ import annotations

import os
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
    assert s.sqlite.synchronous == "NORMAL"


def test_environment_overrides_parse_types() -> None:
    s = load_settings(
        environ={
            "TRISTORE_SQLITE_BUSY_TIMEOUT_MS": "5000",
            "TRISTORE_SQLITE_SYNCHRONOUS": "full",
            "TRISTORE_REDIS_RETRY_ON_TIMEOUT": "off",
            "TRISTORE_REDIS_SOCKET_TIMEOUT_S": "1.5",
            "TRISTORE_DATA_DIR": "/tmp/x",
        }
    )
    assert s.sqlite.busy_timeout_ms == 5000
    assert s.sqlite.synchronous == "FULL"
    assert s.redis.retry_on_timeout is False
    assert s.redis.socket_timeout_s == 1.5
    assert s.data_dir == "/tmp/x"


def test_toml_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[sqlite]\ncache_size = 2000\nreaders = 2\n[redis]\npool_max = 20\n")
    s = load_settings(cfg, environ={"TRISTORE_SQLITE_READERS": "3"})
    assert s.sqlite.cache_size == 2000
    assert s.sqlite.readers == 3  # the environment wins over the file
    assert s.redis.pool_max == 20


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[graph]\nengine = "kuzu"\nmax_threads = 1\n')
    s = load_settings(environ={"TRISTORE_CONFIG": str(cfg)})
    assert s.graph.max_threads == 1


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"TRISTORE_SQLITE_BUSYTIMEOUT": "5"}, "sqlite.busytimeout: unknown key"),
        ({"TRISTORE_NOSUCH_KEY": "5"}, "TRISTORE_NOSUCH_KEY: unknown setting"),
        ({"TRISTORE_SQLITE_BUSY_TIMEOUT_MS": "soon"}, "sqlite.busy_timeout_ms: expected int"),
        ({"TRISTORE_REDIS_CLUSTER": "maybe"}, "redis.cluster: expected bool"),
        ({"TRISTORE_REDIS_SOCKET_TIMEOUT_S": "x"}, "redis.socket_timeout_s: expected float"),
        ({"TRISTORE_SQLITE_SYNCHRONOUS": "SOMETIMES"}, "sqlite.synchronous: expected one of"),
        ({"TRISTORE_GRAPH_ENGINE": "neo4j"}, "graph.engine: expected one of 'kuzu', 'ladybug'"),
        ({"TRISTORE_REDIS_POOL_MIN": "60"}, "redis.pool_min: expected an int <= redis.pool_max"),
        ({"TRISTORE_SQLITE_READERS": "0"}, "sqlite.readers: expected an int >= 1"),
        ({"TRISTORE_GRAPH_BUFFER_POOL_BYTES": "1024"}, "graph.buffer_pool_bytes"),
    ],
)
def test_environment_errors_name_key_and_type(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_settings(environ=environ)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sqlite]\ncache_sise = 1\n", "sqlite.cache_sise: unknown key in config file"),
        ("[sqlite]\ncache_size = '1'\n", "sqlite.cache_size: expected int, got str"),
        ("[sqlite]\ncache_size = true\n", "sqlite.cache_size: expected int, got bool"),
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
