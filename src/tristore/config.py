"""Settings for the three stores.

Defaults are the specification's figures. Overrides come, in increasing priority, from a TOML file
(``TRISTORE_CONFIG`` or an explicit path) and from ``TRISTORE_<SECTION>_<KEY>`` environment
variables. Every value is type-checked against the dataclass field: an unknown key or a wrong type
raises :class:`ConfigError` naming the key and the expected type, because a silently ignored typo in
a benchmark configuration produces numbers for a setup nobody asked for.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sqlite3
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

from tristore.errors import ConfigError

MiB = 1024 * 1024

SyncMode = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
JournalMode = Literal["WAL"]
GraphEngine = Literal["kuzu", "ladybug"]
Ordering = Literal["deferred", "strict"]


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _sqlite_max_length() -> int:
    # SQLITE_MAX_LENGTH as compiled into this sqlite3 (1e9 by default): no value can be larger.
    with sqlite3.connect(":memory:") as conn:
        return conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not reported: allow the range a 64-bit Kuzu can address
        return 1 << 40


# Valid ranges. Each comes from what the engine or this machine supports, or, where neither
# sets one, from a cap beyond which a value can only be a typo; README's settings table lists them.
INT32_MAX = 2**31 - 1  # SQLite stores busy_timeout and cache_size as C ints; larger reads back 0
SQLITE_MAX_VALUE = _sqlite_max_length()
REDIS_MAX_VALUE = 512 * MiB  # Redis's proto-max-bulk-len: the largest string it accepts
REDIS_MAX_CLIENTS = 10_000  # Redis's default maxclients: more sockets are refused by the server
# Kuzu runs max_threads workers per Database; beyond a few per core they only add contention, and
# 100000 of them exhausted the process limit.
MAX_GRAPH_THREADS = max(8, 4 * (os.cpu_count() or 1))
MAX_READERS = 64  # each reader is a thread and a connection; past this they queue on the cores
MAX_PIPELINE = 100_000  # a batch is held in memory on both sides before it is sent
MAX_TIMEOUT_S = 3600.0
MIN_TIMEOUT_S = 0.001
MIN_BUFFER_POOL = 16 * MiB
MAX_BUFFER_POOL = _physical_memory()
# Measured with Kuzu 0.11.3: a string parameter larger than about an eighth of the buffer pool
# fails as "buffer pool full" (16 MiB pool: 2 MiB works, 3 MiB fails; 64 MiB: 8 works, 10 fails).
GRAPH_VALUE_SHARE = 8


def _default_data_dir() -> str:
    return str(Path.cwd() / ".tristore")


@dataclass(frozen=True)
class SQLiteSettings:
    path: str = ""  # empty: <data_dir>/tristore.sqlite3
    journal_mode: JournalMode = "WAL"
    busy_timeout_ms: int = 30_000
    cache_size: int = 10_000  # per reader connection
    # The writer's, smaller: it fills with the pages of rows just written, which no reader can use
    # (each connection has its own cache); in WAL a page it evicts is re-read from the OS page
    # cache, and the hot B-tree interior pages stay in an LRU cache of any reasonable size.
    writer_cache_size: int = 2_000
    synchronous: SyncMode = "NORMAL"
    readers: int = 4
    max_value_bytes: int = 16 * MiB
    # Write transactions on the event loop thread when SQLite's commit is cheap (WAL, synchronous
    # OFF/NORMAL); the budget bounds how long one may block the loop, in SQLite VM steps.
    inline_writes: bool = True
    inline_max_steps: int = 20_000
    # Background PASSIVE checkpoints (inline mode) start when the WAL file grows past this.
    checkpoint_wal_bytes: int = 4 * MiB

    def __post_init__(self) -> None:
        _within("sqlite.busy_timeout_ms", self.busy_timeout_ms, 0, INT32_MAX)
        _within("sqlite.inline_max_steps", self.inline_max_steps, 100, INT32_MAX)
        _within("sqlite.checkpoint_wal_bytes", self.checkpoint_wal_bytes, 64 * 1024, 2**40)
        # Negative: a size in KiB rather than pages, as SQLite reads it.
        _within("sqlite.cache_size", self.cache_size, -INT32_MAX - 1, INT32_MAX)
        _within("sqlite.writer_cache_size", self.writer_cache_size, -INT32_MAX - 1, INT32_MAX)
        _within("sqlite.readers", self.readers, 1, MAX_READERS)
        _within("sqlite.max_value_bytes", self.max_value_bytes, 1, SQLITE_MAX_VALUE)


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
        _within(
            "graph.buffer_pool_bytes",
            self.buffer_pool_bytes,
            MIN_BUFFER_POOL,
            MAX_BUFFER_POOL,
            "16 MiB to this machine's memory",
        )
        _within("graph.max_threads", self.max_threads, 1, MAX_GRAPH_THREADS)
        _within("graph.readers", self.readers, 1, MAX_READERS)
        _within(
            "graph.max_value_bytes",
            self.max_value_bytes,
            1,
            self.buffer_pool_bytes // GRAPH_VALUE_SHARE,
            f"up to graph.buffer_pool_bytes / {GRAPH_VALUE_SHARE}",
        )


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
        _check_redis_url(self.url, cluster=self.cluster)
        _within("redis.pool_max", self.pool_max, 1, REDIS_MAX_CLIENTS)
        _within("redis.pool_min", self.pool_min, 0, self.pool_max, "up to redis.pool_max")
        _within("redis.pipeline_size", self.pipeline_size, 1, MAX_PIPELINE)
        _within("redis.socket_timeout_s", self.socket_timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        _within("redis.connect_timeout_s", self.connect_timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        _within("redis.max_value_bytes", self.max_value_bytes, 1, REDIS_MAX_VALUE)


MAX_GRAPH_BATCH = 1024  # a batch's members wait for its one Kuzu COMMIT
MAX_REPLAYS = 1000
MAX_MARKER_TTL_S = 366 * 86_400.0


@dataclass(frozen=True)
class CoordinatorSettings:
    """The coordinator's options (``Coordinator(...)`` keywords override them)."""

    ordering: Ordering = "deferred"  # per transaction too: coordinator.transaction(ordering=...)
    lock_timeout: float = 5.0  # each bounded lock wait of a commit
    recovery_interval: float = 5.0  # 0: no periodic sweep (recovery at open only)
    marker_ttl: float = 7 * 86_400.0  # how long a Redis apply marker lives
    retention: float = 3_600.0  # settled intents are pruned after this; 0: kept
    max_replays: int = 5  # store-side failures in a row before an intent is dead-lettered
    retry_backoff: float = 0.5  # wait after a store failed before applying again
    flush_delay: float = 0.05  # how long "applied" marks wait for a commit to carry them
    graph_batch_size: int = 64  # intents per Kuzu transaction of the graph applier
    # How long a deferred commit waits for its graph apply before it returns with the graph
    # pending (0: it never waits). Bounds a commit's latency when the engine stalls, as Kuzu does
    # for each of its automatic checkpoints.
    graph_wait: float = 0.1

    def __post_init__(self) -> None:
        _within("coordinator.lock_timeout", self.lock_timeout, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        _within_or_off("coordinator.recovery_interval", self.recovery_interval)
        _within("coordinator.marker_ttl", self.marker_ttl, 1.0, MAX_MARKER_TTL_S)
        _within_or_off("coordinator.retention", self.retention, high=MAX_MARKER_TTL_S)
        _within("coordinator.max_replays", self.max_replays, 1, MAX_REPLAYS)
        _within("coordinator.retry_backoff", self.retry_backoff, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        # Down to 1 us: the instruction-count workloads flush on the next loop iteration.
        _within("coordinator.flush_delay", self.flush_delay, 1e-6, 60.0)
        _within("coordinator.graph_batch_size", self.graph_batch_size, 1, MAX_GRAPH_BATCH)
        _within("coordinator.graph_wait", self.graph_wait, 0.0, MAX_TIMEOUT_S)


def _within_or_off(key: str, value: float, high: float = MAX_TIMEOUT_S) -> None:
    if value != 0:
        _within(key, value, MIN_TIMEOUT_S, high, f"0 (off) or {MIN_TIMEOUT_S:g} .. {high:g}")


@dataclass(frozen=True)
class Settings:
    data_dir: str = field(default_factory=_default_data_dir)
    sqlite: SQLiteSettings = field(default_factory=SQLiteSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    coordinator: CoordinatorSettings = field(default_factory=CoordinatorSettings)

    def __post_init__(self) -> None:
        # An empty path would put the files in whatever the current directory happens to be.
        _require(bool(self.data_dir.strip()), "data_dir", "a non-empty path")

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


# Query parameters that redis-py hands to the connection as keywords and that carry a secret
# (``?password=``, ``?ssl_password=``, ...): redis-py accepts any name there.
_SECRET_PARAM = re.compile(r"pass|secret|token|auth|credential", re.IGNORECASE)
MASK = "***"


def redact_url(url: str) -> str:
    """The URL with every credential form redis-py reads masked, for any output.

    ``redis://user:pw@h`` -> ``redis://user:***@h``; ``redis://pw@h`` -> ``redis://***@h`` (a
    lone field may be the password); ``?password=pw`` -> ``?password=***``.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: show nothing after the scheme rather than guess
        return url.split("://", 1)[0] + "://" + MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    query = "&".join(
        f"{name}={MASK}" if _is_secret_param(name) else f"{name}{sep}{value}"
        for name, sep, value in (pair.partition("=") for pair in parts.query.split("&"))
    )
    # Not urlunsplit: it turns unix:///path into unix:/path.
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if parts.query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def url_secrets(url: str) -> set[str]:
    """The secrets in ``url``, raw and percent-decoded, for masking them in free text."""
    if "://" not in url:
        return set()
    try:
        parts = urlsplit(url)
    except ValueError:
        return {url}
    found: set[str] = set()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        user, colon, password = userinfo.partition(":")
        found.add(password if colon else user)
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if _is_secret_param(name):
            found.add(value)
    return {form for secret in found for form in (secret, unquote_plus(secret)) if form}


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with every secret of ``url`` masked."""
    # Longest first: one secret may contain another (a password and its decoded form).
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _is_secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM.search(unquote_plus(name)))


def _require(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}")


def _within(key: str, value: float, low: float, high: float, note: str = "") -> None:
    """``low <= value <= high``; NaN and infinities fail it, as no bound admits them."""
    if not (math.isfinite(value) and low <= value <= high):
        kind = "a float" if isinstance(value, float) else "an int"
        detail = f" ({note})" if note else ""
        raise ConfigError(f"{key}: expected {kind} in [{low}, {high}]{detail}, got {value!r}")


def _check_redis_url(url: str, *, cluster: bool) -> None:
    """Refuse what redis-py would silently reinterpret (``/abc`` as db 0) or fail on late."""
    if not url:
        return
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"redis.url: expected redis://, rediss:// or unix://, got {shown!r}")
    if parts.scheme == "unix":
        _require(bool(parts.path), "redis.url", f"a socket path after unix://, got {shown!r}")
        _require(not cluster, "redis.url", "a redis:// URL in cluster mode (nodes talk TCP)")
        return
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        raise ConfigError(f"redis.url: expected a port in [0, 65535], got {shown!r}") from None
    db = parts.path.strip("/")
    _require(
        db == "" or (db.isdigit() and db.isascii()),
        "redis.url",
        f"a database number after the host (redis://host:port/0), got {shown!r}",
    )


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
        CoordinatorSettings: "coordinator",
    }[type(section)]


_SECTIONS = ("sqlite", "graph", "redis", "coordinator")


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``TRISTORE_SQLITE_BUSY_TIMEOUT_MS=5`` -> ``{"sqlite": {"busy_timeout_ms": "5"}}``."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if (
            not name.startswith("TRISTORE_")
            or name in _ENV_NOT_SETTINGS
            or name.startswith(_ENV_TOOLING_PREFIXES)
        ):
            continue
        rest = name[len("TRISTORE_") :].lower()
        if rest == "data_dir":
            out["data_dir"] = value
            continue
        section, _, key = rest.partition("_")
        if section not in _SECTIONS or not key:
            raise ConfigError(
                f"{name}: unknown setting (expected TRISTORE_DATA_DIR or "
                "TRISTORE_<SQLITE|GRAPH|REDIS|COORDINATOR>_<KEY>)"
            )
        out.setdefault(section, {})[key] = value
    return out


# The library's own variables that are not store settings.
_ENV_NOT_SETTINGS = frozenset({"TRISTORE_CONFIG", "TRISTORE_REDIS_BINARY"})
# Prefixes reserved for test and benchmark tooling (the test suite's switches, tristore-bench's
# workloads): the library never reads them, so it need not know their names.
_ENV_TOOLING_PREFIXES = ("TRISTORE_TEST_", "TRISTORE_BENCH_")


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
        except IsADirectoryError:
            raise ConfigError(f"config file {file}: is a directory, expected a TOML file") from None
        except OSError as exc:
            raise ConfigError(f"config file {file}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {file}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                f"offset {exc.start}); TOML files are UTF-8"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file}: invalid TOML ({exc})") from None
        settings = _apply(settings, data, source=f"config file {file}")
    overrides = _env_overrides(env)
    if overrides:
        settings = _apply(settings, overrides, source="environment", from_env=True)
    return settings


__all__ = [
    "CoordinatorSettings",
    "GraphSettings",
    "MiB",
    "RedisSettings",
    "SQLiteSettings",
    "Settings",
    "load_settings",
    "redact_text",
    "redact_url",
]
