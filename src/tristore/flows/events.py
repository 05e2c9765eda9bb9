"""Change events on a Redis stream: the format, the commands that publish, replay.

Why a stream and not pub/sub: a stream keeps its entries, so a dashboard that starts late or
reconnects resumes from the last id it saw (replay) instead of silently missing changes, and a
test can read back every event that was published. ``XREAD BLOCK`` wakes a waiting reader as soon
as an entry is added, so delivery latency is the same as pub/sub's. The stream is capped with
``MAXLEN ~`` so it cannot grow without bound under load.

An event is published as one ``XADD`` *after* the SQLite commit, by the coordinator's cache
phase, after the cache writes it announces: a subscriber that sees the event and then reads the
cache sees the new value. Delivery is at least once (a recovery sweep may re-apply a cache phase),
so every event carries its transaction id for de-duplication.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tristore.errors import QueryError

__all__ = [
    "ANALYTICS_UPDATED",
    "EVENTS_STREAM",
    "ORDER_INSERTED",
    "STREAM_MAXLEN",
    "Event",
    "parse_entry",
    "read_events",
    "xadd_command",
]

EVENTS_STREAM = "tristore:events"
STREAM_MAXLEN = 100_000  # approximate cap (MAXLEN ~): a few MB of Redis memory at most
ORDER_INSERTED = "order_inserted"
ANALYTICS_UPDATED = "analytics_updated"


@dataclass(frozen=True)
class Event:
    """One change event as read back from the stream."""

    id: str  # the stream entry id ("<ms>-<seq>")
    type: str
    data: dict[str, Any]
    ts: float  # epoch s at the end of the transaction body, just before the commit protocol
    txid: str


def xadd_command(
    event_type: str,
    data: Mapping[str, Any],
    *,
    ts: float,
    txid: str,
    stream: str = EVENTS_STREAM,
    maxlen: int = STREAM_MAXLEN,
) -> tuple[Any, ...]:
    """The ``XADD`` that publishes one event (a plain command: the coordinator stages it).

    ``data`` goes as JSON: floats round-trip exactly through ``json`` (shortest repr), so a
    subscriber gets SQLite's computed amounts bit for bit.
    """
    return (
        "XADD",
        stream,
        "MAXLEN",
        "~",
        maxlen,
        "*",
        "type",
        event_type,
        "ts",
        repr(ts),
        "txid",
        txid,
        "data",
        json.dumps(dict(data), separators=(",", ":")),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def parse_entry(entry_id: Any, fields: Mapping[Any, Any] | list[Any]) -> Event:
    """An event from a stream entry as redis-py returns it (a dict, or a flat field list)."""
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    values = {_text(k): v for k, v in fields.items()}
    try:
        return Event(
            id=_text(entry_id),
            type=_text(values["type"]),
            data=json.loads(_text(values["data"])),
            ts=float(_text(values["ts"])),
            txid=_text(values["txid"]),
        )
    except (KeyError, ValueError) as exc:
        raise QueryError("redis", f"malformed event {_text(entry_id)}: {exc!r}") from exc


async def read_events(
    cache: Any,
    *,
    stream: str = EVENTS_STREAM,
    start: str = "-",
    end: str = "+",
    count: int | None = None,
) -> list[Event]:
    """Replay: the events between two ids (default: all that the stream still holds)."""
    command: list[Any] = ["XRANGE", stream, start, end]
    if count is not None:
        command += ["COUNT", count]
    entries = await cache.execute(*command)
    return [parse_entry(entry_id, fields) for entry_id, fields in entries or []]
