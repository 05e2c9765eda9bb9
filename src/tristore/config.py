"""Settings for the three stores.

Defaults are the specification's figures. Overrides come, in increasing priority, from a TOML file
(``TRISTORE_CONFIG`` or an explicit path) and from ``TRISTORE_<SECTION>_<KEY>`` environment
variables. Every value is type-checked against the dataclass field: an unknown key or a wrong type
raises :class:`ConfigError` naming the key and the expected type, because a silently ignored typo in
a benchmark configuration produces numbers for a setup nobody asked for.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tristore.errors import ConfigError

MiB = 1024 * 1024

SyncMode = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
JournalMode = Literal["WAL"]
GraphEngine = Literal["kuzu", "ladybug"]


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _default_data_dir() -> str:
    return str(Path.cwd() / ".tristore")


@dataclass(frozen=True)
class SQLiteSettings:
    path: str = ""  # empty: <data_dir>/tristore.sqlite3
    journal_mode: JournalMode = "WAL"
    busy_timeout_ms: int = 30_000
    cache_size: int = 10_000
    synchronous: SyncMode = "NORMAL"
    readers: int = 4
    max_value_bytes: int = 16 * MiB

    def __post_init__(self) -> None:
        _require(self.busy_timeout_ms >= 0, "sqlite.busy_timeout_ms", "an int >= 0")
        _require(self.readers >= 1, "sqlite.readers", "an int >= 1")
        _require(self.max_value_bytes > 0, "sqlite.max_value_bytes", "an int > 0")


@dataclass(frozen=True)
class GraphSettings:
    path: str = ""  # empty: <data_dir>/graph.kuzu
    engine: GraphEngine = "kuzu"
    buffer_pool_bytes: int = 128 * MiB
    max_threads: int = field(default_factory=_default_threads)
    compression: bool = True
    readers: int = 4
    max_value_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        _require(self.buffer_pool_bytes >= 16 * MiB, "graph.buffer_pool_bytes", "an int >= 16 MiB")
        _require(self.max_threads >= 1, "graph.max_threads", "an int >= 1")
        _require(self.readers >= 1, "graph.readers", "an int >= 1")


@dataclass(frozen=True)
class RedisSettings:
    # repr=False: the URL carries the password, and reprs end up in logs and tracebacks.
    url: str = field(default="", repr=False)  # empty: start an embedded redis-server
    pool_min: int = 10
    pool_max: int = 50
    retry_on_timeout: bool = True
    socket_keepalive: bool = True
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    pipeline_size: int = 100
    cluster: bool = False
    max_value_bytes: int = 8 * MiB

    def __post_init__(self) -> None:
        _require(self.pool_min >= 0, "redis.pool_min", "an int >= 0")
        _require(self.pool_max >= 1, "redis.pool_max", "an int >= 1")
        _require(self.pool_min <= self.pool_max, "redis.pool_min", "an int <= redis.pool_max")
        _require(self.pipeline_size >= 1, "redis.pipeline_size", "an int >= 1")
        _require(self.socket_timeout_s > 0, "redis.socket_timeout_s", "a float > 0")


@dataclass(frozen=True)
class Settings:
    data_dir: str = field(default_factory=_default_data_dir)
    sqlite: SQLiteSettings = field(default_factory=SQLiteSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)

    @property
    def sqlite_path(self) -> Path:
        return (
            Path(self.sqlite.path) if self.sqlite.path else Path(self.data_dir) / "tristore.sqlite3"
        )

    @property
    def graph_path(self) -> Path:
        return Path(self.graph.path) if self.graph.path else Path(self.data_dir) / "graph.kuzu"

    def replace(self, **sections: Mapping[str, Any] | str) -> Settings:
        """A copy with overrides, validated like a TOML file: ``replace(sqlite={"readers": 2})``."""
        return _apply(self, dict(sections), source="override")

    def redacted(self) -> dict[str, Any]:
        """The effective settings with secrets (the Redis URL's password) masked, for logs."""
        data = dataclasses.asdict(self)
        data["redis"]["url"] = redact_url(self.redis.url)
        return data


def redact_url(url: str) -> str:
    """``redis://:secret@host`` -> ``redis://:***@host``: credentials never reach logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _require(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any, *, from_env: bool) -> Any:
    """Check (or, for environment strings, parse) ``value`` as ``tp``."""
    expected = _type_name(tp)
    if typing.get_origin(tp) is Literal:
        allowed = typing.get_args(tp)
        candidate = value.strip() if isinstance(value, str) else value
        if isinstance(candidate, str):
            for a in allowed:
                if a.lower() == candidate.lower():
                    return a
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    if from_env and isinstance(value, str):
        text = value.strip()
        try:
            if tp is bool:
                lowered = text.lower()
                if lowered in {"1", "true", "yes", "on"}:
                    return True
                if lowered in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(text)
            if tp is int:
                return int(text)
            if tp is float:
                return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected {expected}, got {value!r}") from None
        return text
    # bool is an int subclass: refuse True where a count is wanted, and 1 where a flag is.
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {type(value).__name__} {value!r}")
    return float(value) if tp is float else value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _apply(base: Any, data: Mapping[str, Any], *, source: str, from_env: bool = False) -> Any:
    hints = _hints(type(base))
    prefix = "" if type(base) is Settings else _section_name(base) + "."
    changes: dict[str, Any] = {}
    for key, value in data.items():
        full = prefix + key
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{full}: unknown key in {source} (known: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{full}: expected a table of settings, got {value!r}")
            changes[key] = _apply(getattr(base, key), value, source=source, from_env=from_env)
        else:
            changes[key] = _coerce(full, tp, value, from_env=from_env)
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{source}: {exc}") from exc


def _section_name(section: Any) -> str:
    return {
        SQLiteSettings: "sqlite",
        GraphSettings: "graph",
        RedisSettings: "redis",
    }[type(section)]


_SECTIONS = ("sqlite", "graph", "redis")


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``TRISTORE_SQLITE_BUSY_TIMEOUT_MS=5`` -> ``{"sqlite": {"busy_timeout_ms": "5"}}``."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("TRISTORE_") or name in _ENV_NOT_SETTINGS:
            continue
        rest = name[len("TRISTORE_") :].lower()
        if rest == "data_dir":
            out["data_dir"] = value
            continue
        section, _, key = rest.partition("_")
        if section not in _SECTIONS or not key:
            raise ConfigError(
                f"{name}: unknown setting (expected TRISTORE_DATA_DIR or "
                "TRISTORE_<SQLITE|GRAPH|REDIS>_<KEY>)"
            )
        out.setdefault(section, {})[key] = value
    return out


# Variables that steer tooling rather than store settings.
_ENV_NOT_SETTINGS = frozenset(
    {
        "TRISTORE_CONFIG",
        "TRISTORE_SLOWDOWN",
        "TRISTORE_SLOWDOWN_TARGET",
        "TRISTORE_REDIS_BINARY",
        "TRISTORE_LOAD_SECONDS",
        "TRISTORE_CRASH_KILLS",
        "TRISTORE_CRASH_TRANSACTIONS",
        "TRISTORE_CRASH_BUDGET_S",
    }
)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then ``TRISTORE_*`` variables."""
    env = os.environ if environ is None else environ
    settings = Settings()
    file = path if path is not None else env.get("TRISTORE_CONFIG")
    if file:
        try:
            with open(file, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {file}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file}: invalid TOML ({exc})") from None
        settings = _apply(settings, data, source=f"config file {file}")
    overrides = _env_overrides(env)
    if overrides:
        settings = _apply(settings, overrides, source="environment", from_env=True)
    return settings


__all__ = [
    "GraphSettings",
    "MiB",
    "RedisSettings",
    "SQLiteSettings",
    "Settings",
    "load_settings",
    "redact_url",
]
