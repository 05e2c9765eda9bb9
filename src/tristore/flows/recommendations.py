""" "Customers who bought X also bought Y", answered by the graph and served through the cache.

Invalidation without a race, by generation counter (one per product):

- a reader reads the product's generation *before* it queries the graph and stores the answer
  tagged with that generation;
- a graph change that affects product X bumps X's generation (``INCR``) *after* the graph commit
  (the coordinator applies cache operations after graph operations);
- a cached answer counts only if its generation equals the current one.

So an answer computed from a graph older than the latest change can never be served: either its
reader saw the old generation (and its tag is stale now), or it read the new one, which is only
bumped after the graph change was committed, so its query saw the change. Plain "DEL on change"
has a window where a slow reader writes a stale answer back after the DEL.

Which products a purchase of P by customer C affects: P itself (C is a new co-buyer of everything
C bought) and every product C bought before (P becomes one of their co-purchases). Unless C had
bought P before: the graph then holds the pair already, and since recommendations count distinct
co-buyers, none of them changes, so a repeat purchase invalidates nothing. The purchase that
brought the pair invalidated them, after its own graph change; if that purchase's graph change
is dead-lettered by the coordinator, its invalidation waits for its retry too, and answers that
miss the pair can be served until then, for at most ``ttl_s``.

Keys use a Redis-cluster hash tag (``{product_id}``) so the value and its generation live in one
slot and can be read with one MGET in cluster mode too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tristore.schema import RECOMMENDATIONS_CYPHER

__all__ = [
    "Recommendation",
    "Recommendations",
    "generation_key",
    "invalidation_commands",
    "value_key",
]


def value_key(product_id: int) -> str:
    return f"tristore:rec:{{{int(product_id)}}}:items"


def generation_key(product_id: int) -> str:
    return f"tristore:rec:{{{int(product_id)}}}:gen"


def invalidation_commands(product_ids: Iterable[int]) -> list[tuple[Any, ...]]:
    """The cache commands that invalidate these products' recommendations, staged in the same
    coordinated transaction as the graph change (the coordinator applies them once, after the
    graph ops; were one ever applied twice, it would only cost a cache miss)."""
    return [("INCR", generation_key(pid)) for pid in sorted(set(product_ids))]


@dataclass(frozen=True)
class Recommendation:
    product_id: int
    name: str
    buyers: int


class Recommendations:
    """``await recs.get(product_id)``: from the cache when current, else from the graph."""

    def __init__(self, graph: Any, cache: Any, *, limit: int = 5, ttl_s: float = 300.0) -> None:
        self.graph = graph
        self.reads = graph
        self.cache = cache
        self.limit = limit
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    async def get(self, product_id: int) -> list[Recommendation]:
        gen_raw, cached = await self.cache.execute(
            "MGET", generation_key(product_id), value_key(product_id)
        )
        generation = int(gen_raw or 0)
        if cached is not None:
            stored = json.loads(cached)
            if stored.get("gen") == generation and stored.get("limit") == self.limit:
                self.hits += 1
                return [Recommendation(*item) for item in stored["items"]]
        self.misses += 1
        rows = await self.reads.query_rows(
            RECOMMENDATIONS_CYPHER, {"product_id": int(product_id), "limit": self.limit}
        )
        items = [Recommendation(int(pid), str(name), int(buyers)) for pid, name, buyers in rows]
        value = json.dumps(
            {
                "gen": generation,
                "limit": self.limit,
                "items": [[r.product_id, r.name, r.buyers] for r in items],
            }
        )
        await self.cache.set(value_key(product_id), value, ex=self.ttl_s)
        return items

    async def invalidate(self, product_ids: Iterable[int]) -> None:
        """Invalidate now (outside a coordinated transaction, e.g. after a bulk graph load)."""
        commands = invalidation_commands(product_ids)
        if commands:
            await self.cache.pipeline(commands)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
