"""Everything a flow needs, opened together: stores (a PoolManager), coordinator, pipeline."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tristore.config import Settings
from tristore.coordinator import Coordinator
from tristore.flows.pipeline import OrderPipeline
from tristore.manager import PoolManager
from tristore.services.owned_dirs import make_owned_dir

__all__ = ["LOAD_DIR_PREFIX", "FlowEnv", "open_env"]

LOAD_DIR_PREFIX = "tristore-load-"


@dataclass
class FlowEnv:
    manager: PoolManager
    coordinator: Coordinator
    pipeline: OrderPipeline
    data_dir: Path
    seeded: dict[str, int]


def _seed(directory: Path, size: str, seed: int) -> dict[str, int]:
    # The same seeded data set the test templates and the asv suite load (one code path).
    from tristore.testing.setup import seed_files

    return dict(seed_files(directory, size, seed=seed).counts)


@contextlib.asynccontextmanager
async def open_env(
    settings: Settings | None = None,
    *,
    size: str | None = "small",
    seed: int = 0,
    data_dir: str | Path | None = None,
    embedded_redis: bool = True,
    **coordinator_options: Any,
) -> AsyncIterator[FlowEnv]:
    """Open the stores in ``data_dir`` (a new temporary directory, removed afterwards, when not
    given), seeded with the ``size`` data set (None: schema only), a coordinator and a pipeline.

    ``embedded_redis`` starts a throwaway redis-server on loopback instead of the configured URL,
    so a load run never writes into a Redis someone else uses.
    """
    base = settings or Settings()
    own_dir = data_dir is None
    # Owned: a run killed by SIGKILL leaves its directory, which the next run sweeps.
    directory = Path(make_owned_dir(LOAD_DIR_PREFIX) if own_dir else data_dir)
    try:
        redis = {"url": ""} if embedded_redis else {}
        settings = base.replace(
            data_dir=str(directory), sqlite={"path": ""}, graph={"path": ""}, redis=redis
        )
        seeded = _seed(directory, size, seed) if size else {}
        manager = PoolManager(settings)
        await manager.open()
        try:
            coordinator = Coordinator.for_stores(manager, **coordinator_options)
            await coordinator.open()
            try:
                yield FlowEnv(
                    manager, coordinator, OrderPipeline(manager, coordinator), directory, seeded
                )
            finally:
                await coordinator.close()
        finally:
            await manager.close()
    finally:
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)
