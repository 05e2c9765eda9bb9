"""Redis through tristore's cache store: single ops, pipelines, MULTI/EXEC and a Lua script."""

from __future__ import annotations

from typing import Any

from .common import AsyncBench, registry, require, settings_in

OPS = 200  # operations per timed call; results are per batch, comparable across commits


class RedisOps(AsyncBench):
    params = [[1, 10, 100, 1000]]
    param_names = ["pipeline_size"]

    def setup(self, size: int) -> None:
        stores = require("tristore.stores", "CacheStore")
        self.setup_loop()
        self.cache: Any = stores.CacheStore(settings_in(self.tmpdir, redis={"pool_min": 1}))
        self.run(self.cache.open())
        self.commands = registry().set_commands(size)

    def teardown(self, size: int) -> None:
        self.close_opened("cache")
        self.teardown_loop()

    def time_pipeline(self, size: int) -> None:
        """One pipeline of ``size`` SET commands (MULTI-less): at 100, the registry's
        redis_pipeline (tristore_bench.workloads)."""
        self.run(self.cache.pipeline(self.commands))

    # The version of the series before the commands came from the registry (asv's hash of this
    # benchmark's source then): the same SETs, so its history continues.
    time_pipeline.version = (  # type: ignore[attr-defined]
        "5d840987bcda7f97d57a0db07dc13048687cb35eb1edc301b5b005669ef86160"
    )


class RedisSingle(AsyncBench):
    def setup(self) -> None:
        stores = require("tristore.stores", "CacheStore")
        self.setup_loop()
        self.cache: Any = stores.CacheStore(settings_in(self.tmpdir, redis={"pool_min": 1}))
        self.run(self.cache.open())
        self.run(self.cache.set("bench:k", "v"))
        self.commands = [("SET", f"bench:{i}", "x" * 32) for i in range(100)]
        self.sha = self.run(
            self.cache.execute("SCRIPT", "LOAD", "return redis.call('INCRBY', KEYS[1], ARGV[1])")
        )

    def teardown(self) -> None:
        self.close_opened("cache")
        self.teardown_loop()

    def time_get_x200(self) -> None:
        """200 sequential GETs, each through a pool checkout."""
        self.batch(OPS, lambda: self.cache.get("bench:k"))

    def time_multi_exec_100(self) -> None:
        """One MULTI/EXEC transaction of 100 SETs."""
        self.run(self.cache.pipeline(self.commands, transaction=True))

    def time_lua_script_x200(self) -> None:
        self.batch(OPS, lambda: self.cache.execute("EVALSHA", self.sha, 1, "bench:n", 1))
