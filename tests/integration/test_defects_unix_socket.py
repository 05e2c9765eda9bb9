"""Probe finding: ``unix://`` Redis URLs work, against a real redis-server on a unix socket.

Every unix:// URL used to fail with ``AbstractConnection.__init__() got an unexpected keyword
argument 'socket_keepalive'``: TCP keepalive was passed to redis-py's unix connection class.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from tristore.errors import ConfigError, StoreUnavailable
from tristore.services.redis_server import find_redis_binary
from tristore.stores import CacheStore
from tristore.testing import store_settings


@dataclass(frozen=True)
class UnixRedis:
    socket: Path
    password: str

    def url(self, form: str) -> str:
        secret = quote(self.password, safe="")
        if form == "userinfo":
            return f"unix://:{secret}@{self.socket}"
        return f"unix://{self.socket}?db=0&password={secret}"


@pytest.fixture
def unix_redis() -> Iterator[UnixRedis]:
    # Under /tmp, not tmp_path: a unix socket path must stay under 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="tristore-uds-", dir="/tmp"))
    server = UnixRedis(workdir / "redis.sock", secrets.token_urlsafe(18))
    config = workdir / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(
        "port 0\n"  # no TCP listener at all: only the socket can answer
        f'unixsocket "{server.socket}"\nunixsocketperm 700\n'
        f'requirepass "{server.password}"\n'
        f'dir "{workdir}"\nsave ""\nappendonly no\n'
    )
    proc = subprocess.Popen(
        [find_redis_binary(), str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(unix_socket_path=str(server.socket), password=server.password)
        deadline = time.monotonic() + 30  # a hang guard for a server that never comes up
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("form", ["userinfo", "query"])
async def test_unix_socket_url_round_trips(
    tmp_path: Path, unix_redis: UnixRedis, form: str
) -> None:
    settings = store_settings(tmp_path, unix_redis.url(form), redis={"pool_min": 1})
    async with CacheStore(settings) as cache:
        assert await cache.set("k", "v")
        assert await cache.get("k") == b"v"
        assert await cache.pipeline([("INCR", "n")] * 3) == [1, 2, 3]
        assert (await cache.check())["ok"]
        assert cache.where == str(unix_redis.socket)
        shown = json.dumps(await cache.effective_settings())
    assert unix_redis.password not in shown and str(unix_redis.socket) in shown


async def test_unix_socket_wrong_password_is_store_unavailable(
    tmp_path: Path, unix_redis: UnixRedis
) -> None:
    url = f"unix://:wrong-pw-1234@{unix_redis.socket}"
    with pytest.raises(StoreUnavailable, match="redis.sock") as info:
        async with CacheStore(store_settings(tmp_path, url, redis={"pool_min": 1})):
            pass
    assert "wrong-pw-1234" not in str(info.value)


def test_doctor_over_a_unix_socket(tmp_path: Path, unix_redis: UnixRedis) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRISTORE_")}
    environ |= {
        "TRISTORE_DATA_DIR": str(tmp_path / "data"),
        "TRISTORE_REDIS_URL": unix_redis.url("query"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tristore.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,  # a hang guard only
    )
    assert done.returncode == 0, done.stdout + done.stderr
    redis_report = next(r for r in json.loads(done.stdout) if r["store"] == "redis")
    assert redis_report["ok"] and redis_report["settings"]["embedded"] is False
    assert unix_redis.password not in done.stdout + done.stderr


def test_cluster_mode_refuses_a_unix_socket() -> None:
    from tristore.config import Settings

    with pytest.raises(ConfigError, match="redis.url: expected a redis:// URL in cluster mode"):
        Settings().replace(redis={"url": "unix:///tmp/r.sock", "cluster": True})
