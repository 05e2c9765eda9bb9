"""One Kuzu write transaction shared by consecutive coordinated commits (group apply).

Each commit still stages its graph ops, and its ``AppliedTx`` marker, in the open Kuzu transaction
*before* its SQLite commit, so a Cypher error still rolls that commit back. What the batch saves is
everything after: instead of one Kuzu COMMIT (and one hand-over of the Kuzu writer lane) per
transaction, the transactions that commit while others queue for the SQLite lane share one COMMIT.

Kuzu rolls a whole transaction back on any error inside it (a parser, binder or constraint error
alike), so a failing stage, a failing SQLite commit or a failing COMMIT takes every member with it.
The members are committed in SQLite by then: they go to the graph backlog, in commit order, and
are replayed one by one, each in its own Kuzu transaction with its marker, before any later graph
work. One member's bad ops can therefore never mark the others applied, and never lose them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tristore.coordinator.log import Intent


class GraphBatch:
    """The open Kuzu transaction on the writer lane, and the committed intents staged in it."""

    __slots__ = ("begun", "conn", "done", "lane", "members", "timer")

    def __init__(self, lane: Any, conn: Any) -> None:
        self.lane = lane  # the writer pool's acquire context: held until the batch ends
        self.conn = conn
        self.begun = False  # BEGIN TRANSACTION ran on conn
        self.members: list[Intent] = []  # SQLite-committed, in commit order
        # True once the Kuzu COMMIT succeeded; False if the batch was rolled back or the COMMIT
        # failed (the members are then in the graph backlog).
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.timer: asyncio.TimerHandle | None = None

    def settle(self, committed: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.done.done():
            self.done.set_result(committed)
