"""Staged operations: checked when staged, stored as JSON in the intent log, replayable.

A graph or cache operation of a coordinated transaction runs *after* the SQLite commit (and again
during recovery), so every mistake that can be caught before the commit is caught here, at staging
time, where it still rolls the whole transaction back:

- graph parameters must survive a JSON round trip unchanged (they are replayed from the log);
- cache commands come from an allow-list of data-structure writes whose arity and numeric
  arguments are checked, and whose key types the apply script checks before writing anything;
- transaction-control statements (``COMMIT`` in ``tx.sql``, ``BEGIN`` in ``tx.graph``) are
  refused: they would break the protocol (committing business rows without their intent).

Cache arguments are normalised to strings here (``repr`` for floats, as redis-py does) so the Lua
apply script never sees a Lua number, which it would print with 14 significant digits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tristore.errors import QueryError
from tristore.stores.limits import check_values

GraphOp = tuple[str, dict[str, Any]]
CacheOp = list[str]

# Leading whitespace and comments, then a transaction-control keyword.
_LEAD = r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|//[^\n]*(?:\n|$))*"
_SQL_CONTROL = re.compile(
    _LEAD + r"(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|ATTACH|DETACH|VACUUM)\b",
    re.IGNORECASE | re.DOTALL,
)
_CYPHER_CONTROL = re.compile(
    _LEAD + r"(BEGIN|COMMIT|ROLLBACK|CHECKPOINT)\b", re.IGNORECASE | re.DOTALL
)


def check_sql(sql: Any) -> None:
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError("sqlite", f"tx.sql: expected a non-empty SQL string, got {sql!r}")
    match = _SQL_CONTROL.match(sql)
    if match:
        raise QueryError(
            "sqlite",
            f"tx.sql: {match.group(1).upper()} is not allowed inside a coordinated transaction "
            "(the coordinator begins and commits it)",
        )


def graph_op(cypher: Any, params: Mapping[str, Any] | None, limit: int) -> GraphOp:
    """A checked ``(cypher, params)`` pair whose params are exactly what a replay will pass."""
    if not isinstance(cypher, str) or not cypher.strip():
        raise QueryError("graph", f"tx.graph: expected a non-empty Cypher string, got {cypher!r}")
    match = _CYPHER_CONTROL.match(cypher)
    if match:
        raise QueryError(
            "graph",
            f"tx.graph: {match.group(1).upper()} is not allowed inside a coordinated transaction",
        )
    if params is None:
        return cypher, {}
    if not isinstance(params, Mapping):
        raise QueryError("graph", f"tx.graph: parameters must be a mapping, got {params!r}")
    check_values("graph", params, limit)
    return cypher, {_key(k): _json_value(v, k) for k, v in params.items()}


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise QueryError("graph", f"tx.graph: parameter names must be str, got {key!r}")
    return key


def _json_value(value: Any, where: str) -> Any:
    """``value`` if it round-trips through JSON unchanged (tuples become lists), else an error."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError("graph", f"tx.graph: parameter {where!r} is {value!r} (not finite)")
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v, where) for v in value]
    if isinstance(value, Mapping):
        return {_key(k): _json_value(v, where) for k, v in value.items()}
    raise QueryError(
        "graph",
        f"tx.graph: parameter {where!r} has type {type(value).__name__}, which the intent log "
        "cannot store; pass str/int/float/bool/None or lists and dicts of them (e.g. a "
        "timestamp as an ISO string with timestamp($p) in the query)",
    )


# --- cache commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    key_type: str | None  # what the key must hold (or be absent); None: any type
    min_args: int
    max_args: int | None  # None: unbounded
    keys: str = "first"  # which arguments are keys: "first" | "all" | "none"
    ints: tuple[int, ...] = ()  # argument positions that must be integers
    floats: tuple[int, ...] = ()  # argument positions that must be numbers
    pairs_from: int | None = None  # arguments from here on come in pairs


_COMMANDS: dict[str, _Spec] = {
    "SET": _Spec("string", 2, 4),
    "DEL": _Spec(None, 1, None, keys="all"),
    "UNLINK": _Spec(None, 1, None, keys="all"),
    "EXPIRE": _Spec(None, 2, 2, ints=(1,)),
    "PEXPIRE": _Spec(None, 2, 2, ints=(1,)),
    "PERSIST": _Spec(None, 1, 1),
    "INCR": _Spec("string", 1, 1),
    "DECR": _Spec("string", 1, 1),
    "INCRBY": _Spec("string", 2, 2, ints=(1,)),
    "DECRBY": _Spec("string", 2, 2, ints=(1,)),
    "INCRBYFLOAT": _Spec("string", 2, 2, floats=(1,)),
    "HSET": _Spec("hash", 3, None, pairs_from=1),
    "HDEL": _Spec("hash", 2, None),
    "HINCRBY": _Spec("hash", 3, 3, ints=(2,)),
    "HINCRBYFLOAT": _Spec("hash", 3, 3, floats=(2,)),
    "SADD": _Spec("set", 2, None),
    "SREM": _Spec("set", 2, None),
    "ZADD": _Spec("zset", 3, None, pairs_from=1),
    "ZINCRBY": _Spec("zset", 3, 3, floats=(1,)),
    "ZREM": _Spec("zset", 2, None),
    "LPUSH": _Spec("list", 2, None),
    "RPUSH": _Spec("list", 2, None),
    "LTRIM": _Spec("list", 3, 3, ints=(1, 2)),
    "XADD": _Spec("stream", 4, None),
    "PUBLISH": _Spec(None, 2, 2, keys="none"),
}

CACHE_COMMANDS = frozenset(_COMMANDS)
MAX_ARGS = 1024


def cache_op(command: Sequence[Any], limit: int) -> CacheOp:
    """A checked command, every argument a string, ready for the log and the apply script."""
    if not command:
        raise QueryError("redis", "tx.cache: expected a command, got nothing")
    name = command[0]
    if not isinstance(name, str) or name.upper() not in _COMMANDS:
        allowed = ", ".join(sorted(_COMMANDS))
        raise QueryError(
            "redis", f"tx.cache: command {name!r} is not supported (supported: {allowed})"
        )
    name = name.upper()
    spec = _COMMANDS[name]
    args = [_arg(a, name) for a in command[1:]]
    check_values("redis", args, limit)
    n = len(args)
    if n > MAX_ARGS:
        # The apply script unpacks a command onto the Lua stack, which holds ~8000 values; a
        # script failing there would fail on every retry. Split big writes into several ops.
        raise QueryError("redis", f"tx.cache: {name} has {n} arguments, more than {MAX_ARGS}")
    if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
        raise QueryError("redis", f"tx.cache: wrong number of arguments for {name}: {n}")
    if spec.pairs_from is not None and (n - spec.pairs_from) % 2:
        raise QueryError("redis", f"tx.cache: {name} expects field/value pairs")
    for pos in spec.ints:
        _check_number(args[pos], name, integer=True)
    for pos in spec.floats:
        _check_number(args[pos], name, integer=False)
    if name == "ZADD":
        for pos in range(1, n, 2):
            _check_number(args[pos], name, integer=False)
    if name == "SET" and n > 2:
        if n != 4 or args[2].upper() not in {"EX", "PX"}:
            raise QueryError("redis", "tx.cache: SET takes only an EX or PX expiry option")
        _check_number(args[3], name, integer=True)
    return [name, *args]


def _arg(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: True is an int, and redis-py refuses it too
        raise QueryError("redis", f"tx.cache: {name}: a bool is not a Redis value, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError("redis", f"tx.cache: {name}: {value!r} is not a Redis number")
        return repr(value)
    raise QueryError(
        "redis",
        f"tx.cache: {name}: argument of type {type(value).__name__} cannot be stored in the "
        "intent log; pass str, int or float",
    )


def _check_number(text: str, name: str, *, integer: bool) -> None:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise QueryError("redis", f"tx.cache: {name}: {text!r} is not {kind}") from None
    if not integer and not math.isfinite(value):
        raise QueryError("redis", f"tx.cache: {name}: {text!r} is not a finite number")


def type_checks(ops: Sequence[CacheOp]) -> list[tuple[str, str]]:
    """``(key, type)`` pairs the apply script checks before it writes anything."""
    checks: dict[str, str] = {}
    for op in ops:
        spec = _COMMANDS[op[0]]
        if spec.key_type is not None and spec.keys == "first":
            checks.setdefault(op[1], spec.key_type)
    return list(checks.items())


# --- the apply script ----------------------------------------------------------------------------

MARKER_PREFIX = "tristore:applied:"


def marker_key(txid: str) -> str:
    """The Redis key whose presence says a transaction's cache ops were applied."""
    return MARKER_PREFIX + txid


# KEYS[1] = the transaction's marker. ARGV = ttl_ms, n_checks, (key, type)*, ops as JSON (the
# intent log's own text of them: a list of [cmd, arg, ...] lists of strings, so Lua sees no
# numbers). One JSON argument instead of every op's arguments flat: redis-py packs each argument
# of a command in Python, and an order's ops are dozens of them. Applies the ops only if the
# marker is absent and then sets it, in one atomic script: a replay is a no-op. Key types are
# checked first, so a wrong-typed key writes nothing; a command that still fails (INCRBY on
# "abc") is reported and the marker set anyway, because Redis cannot undo the writes before it
# and running them twice would be worse than reporting the failure.
APPLY_SCRIPT = """
local marker = KEYS[1]
local seen = redis.call('GET', marker)
if seen then return {0, seen} end
local i = 2
local nchecks = tonumber(ARGV[i]); i = i + 1
for _ = 1, nchecks do
  local key, want = ARGV[i], ARGV[i + 1]; i = i + 2
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    local msg = 'WRONGTYPE ' .. key .. ' holds a ' .. have .. ', not a ' .. want
    redis.call('SET', marker, 'failed', 'PX', ARGV[1])
    return {2, msg}
  end
end
local result = {1}
for _, op in ipairs(cjson.decode(ARGV[i])) do
  local r = redis.pcall(unpack(op))
  if type(r) == 'table' and r['err'] then
    result[1] = 2
    table.insert(result, r['err'])
  end
end
redis.call('SET', marker, result[1] == 1 and 'applied' or 'failed', 'PX', ARGV[1])
return result
"""


def ops_json(ops: Sequence[Any]) -> str:
    """Graph or cache ops as the intent log stores them (and the apply script reads them)."""
    return json.dumps(ops, separators=(",", ":"))


def script_args(ops: Sequence[CacheOp], ttl_ms: int, encoded: str) -> list[str]:
    """The apply script's ARGV for ``ops``, whose JSON text (:func:`ops_json`) is ``encoded``."""
    argv: list[str] = [str(ttl_ms)]
    checks = type_checks(ops)
    argv.append(str(len(checks)))
    for key, kind in checks:
        argv += [key, kind]
    argv.append(encoded)
    return argv


def param_signature(params: Mapping[str, Any]) -> Hashable:
    """The parameters' names and value types: what Kuzu binds a statement's parameters to.

    Two calls with the same statement text and signature bind alike, so one validation (and one
    UNWIND list type) holds for both.
    """
    return tuple(sorted((name, _type_of(value)) for name, value in params.items()))


def _type_of(value: Any) -> Hashable:
    if isinstance(value, list):
        return ("list", frozenset(_type_of(v) for v in value))
    if isinstance(value, dict):
        return ("map", tuple(sorted((k, _type_of(v)) for k, v in value.items())))
    return type(value).__name__
