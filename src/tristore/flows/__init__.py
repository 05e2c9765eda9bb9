"""Production data flows: the order pipeline, the real-time dashboard, recommendations, load.

- :mod:`~tristore.flows.pipeline`: an order placed = one coordinated transaction across SQLite,
  Kuzu and Redis, then analytics recomputed and validated;
- :mod:`~tristore.flows.events` / :mod:`~tristore.flows.dashboard`: change events on a Redis
  stream and a subscriber measuring commit -> event and commit -> cache-visible latencies;
- :mod:`~tristore.flows.recommendations`: "bought X also bought Y" from the graph, cached, with
  race-free invalidation;
- :mod:`~tristore.flows.scenarios`: the specification's load scenarios;
- :mod:`~tristore.flows.env`: stores + coordinator + pipeline opened together (the load CLI).
"""

from tristore.flows.dashboard import Dashboard
from tristore.flows.env import FlowEnv, open_env
from tristore.flows.events import (
    ANALYTICS_UPDATED,
    EVENTS_STREAM,
    ORDER_INSERTED,
    Event,
    read_events,
)
from tristore.flows.pipeline import (
    FlowValidationError,
    OrderPipeline,
    OrderResult,
    analytics_key,
    check_consistency,
)
from tristore.flows.recommendations import Recommendation, Recommendations
from tristore.flows.scenarios import (
    SCENARIOS,
    Progress,
    ScenarioReport,
    cache_synchronization,
    cross_database_coordination,
    database_stress_test,
)

__all__ = [
    "ANALYTICS_UPDATED",
    "EVENTS_STREAM",
    "ORDER_INSERTED",
    "SCENARIOS",
    "Dashboard",
    "Event",
    "FlowEnv",
    "FlowValidationError",
    "OrderPipeline",
    "OrderResult",
    "Progress",
    "Recommendation",
    "Recommendations",
    "ScenarioReport",
    "analytics_key",
    "cache_synchronization",
    "check_consistency",
    "cross_database_coordination",
    "database_stress_test",
    "open_env",
    "read_events",
]
