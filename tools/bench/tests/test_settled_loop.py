"""The settled event loop of the instruction counts: a poll takes a reply only once it is whole.

Real sockets (a socketpair) and real threads. The loop-level tests run the loop with a longer
wait (``SETTLE_S``) than the peer's gaps, so that they do not depend on this machine's load; the
``_settle`` tests drive the peer from the loop's own waits (one chunk per wait), so they are exact.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tristore_bench import workloads

CHUNK = b"+OK\r\n" * 10


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, peer = socket.socketpair()
    client.setblocking(False)
    yield client, peer
    client.close()
    peer.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = workloads._SettledLoop()
    yield made
    made.close()


def _peer(sock: socket.socket, chunks: int, gap: float, first: float) -> threading.Thread:
    def write() -> None:
        time.sleep(first)
        for _ in range(chunks):
            sock.sendall(CHUNK)
            time.sleep(gap)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _on_readable(
    loop: asyncio.AbstractEventLoop, client: socket.socket, seen: list[int]
) -> Callable[[], None]:
    def read() -> None:
        seen.append(len(client.recv(1 << 16, socket.MSG_PEEK)))
        loop.remove_reader(client)
        loop.stop()

    return read


# -- the loop ---------------------------------------------------------------------------------


def test_a_reply_written_in_chunks_is_taken_whole(
    loop: asyncio.AbstractEventLoop,
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing is ready at the first look: the loop blocks until the reply starts, then waits
    # while it grows. The peer writes every 4 ms, a tenth of a wait, for longer than one wait.
    monkeypatch.setattr(workloads, "SETTLE_S", 0.04)
    client, peer = pair
    seen: list[int] = []
    loop.add_reader(client, _on_readable(loop, client, seen))
    writer = _peer(peer, chunks=12, gap=0.004, first=0.08)
    loop.run_forever()
    writer.join()
    assert seen == [12 * len(CHUNK)]


def test_results_of_a_worker_thread_are_taken_together(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread hands results to the loop through its self-pipe: one byte per call. It hands
    # over twelve, 4 ms apart, for longer than one wait.
    monkeypatch.setattr(workloads, "SETTLE_S", 0.04)
    sent: list[int] = []
    ran: list[tuple[int, int]] = []  # (result, how many were sent when it ran)

    def deliver(i: int) -> None:
        ran.append((i, len(sent)))
        if len(ran) == 12:
            loop.stop()

    def worker() -> None:
        time.sleep(0.08)
        for i in range(12):
            sent.append(i)
            loop.call_soon_threadsafe(deliver, i)
            time.sleep(0.004)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    loop.run_forever()
    thread.join()
    assert ran == [(i, 12) for i in range(12)]


def _spin_until(loop: asyncio.AbstractEventLoop, done: Callable[[], bool]) -> int:
    """Loop turns until ``done()``, with a callback always ready: every poll may not block."""

    async def spin() -> int:
        turns = 0
        while not done():
            turns += 1
            await asyncio.sleep(0)
        return turns

    return loop.run_until_complete(spin())


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_worker_thread_still_running_is_waited_for(loop: asyncio.AbstractEventLoop) -> None:
    # The loop may not block (a callback is ready), nothing is ready yet, but a thread of this
    # process is still computing the result: the poll waits for it, whatever the load.
    result = loop.run_in_executor(None, _busy, 0.06)
    turns = _spin_until(loop, result.done)
    assert turns <= 2  # the turn that submitted it, and the one its result arrived in


def test_a_child_process_still_working_is_waited_for(
    loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, socket.socket]
) -> None:
    # As redis-server: another process, started by this one, writes the reply when done.
    client, peer = pair
    script = (
        "import socket, sys, time\n"
        "end = time.perf_counter() + 0.05\n"
        "while time.perf_counter() < end: pass\n"
        "socket.socket(fileno=int(sys.argv[1])).sendall(b'+OK\\r\\n' * 10)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(peer.fileno())], pass_fds=(peer.fileno(),)
    )
    try:
        arrived: list[int] = []
        loop.add_reader(client, lambda: arrived.append(len(client.recv(1 << 16))))
        turns = _spin_until(loop, lambda: bool(arrived))
    finally:
        child.wait(timeout=10)
    assert arrived == [len(CHUNK)]
    assert turns <= 2


def test_a_peer_that_never_stops_cannot_hang_a_poll(
    loop: asyncio.AbstractEventLoop,
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workloads, "SETTLE_S", 0.01)
    monkeypatch.setattr(workloads, "SETTLE_STEPS", 5)
    client, peer = pair
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            peer.sendall(b"x")
            time.sleep(0.001)

    seen: list[int] = []
    loop.add_reader(client, _on_readable(loop, client, seen))
    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    loop.run_forever()
    elapsed = time.monotonic() - started
    stop.set()
    thread.join()
    assert seen and seen[0] > 0
    # At most the first wait and SETTLE_STEPS more, plus the scheduler's slack.
    assert elapsed < (1 + 5) * 0.01 + 0.5


def test_collection_is_off_only_while_waiting(
    loop: asyncio.AbstractEventLoop,
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under callgrind the wait is not counted: the requests come in pairs around it, and the
    # client's own work (the reader callback) runs with collection on.
    requests: list[int] = []
    monkeypatch.setattr(workloads, "_client_request", lambda code: requests.append(code) or 0)
    client, peer = pair
    peer.sendall(CHUNK)
    collecting: list[bool] = []

    def read() -> None:
        collecting.append(len(requests) % 2 == 0)
        client.recv(1 << 16)
        loop.remove_reader(client)
        loop.stop()

    loop.add_reader(client, read)
    loop.run_forever()
    assert set(requests) == {workloads.CALLGRIND_TOGGLE_COLLECT}
    assert len(requests) % 2 == 0 and requests
    assert collecting == [True]


# -- the rule, driven by the loop's own waits ---------------------------------------------------


class Waits:
    """A ``sleep`` for ``_settle`` that writes the next chunk of ``chunks`` (None: nothing)."""

    def __init__(self, peer: socket.socket, chunks: list[bytes | None]) -> None:
        self.peer = peer
        self.chunks = chunks
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        chunk = self.chunks[self.calls] if self.calls < len(self.chunks) else None
        self.calls += 1
        if chunk:
            self.peer.sendall(chunk)
            # The socketpair delivers at once; let the kernel publish it before the next look.
            time.sleep(0.0005)


@pytest.fixture
def select(pair: tuple[socket.socket, socket.socket]) -> Iterator[Callable[..., list]]:
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(pair[0], selectors.EVENT_READ)
    yield selector.select
    selector.close()


def NO_PEERS() -> workloads.Activity:
    return frozenset()


def _bytes(readiness: workloads.Readiness) -> int:
    return sum(pending for _fd, _mask, pending in readiness)


def test_the_wait_goes_on_while_the_reply_grows(
    pair: tuple[socket.socket, socket.socket], select: Callable[..., list]
) -> None:
    waits = Waits(pair[1], [CHUNK] * 5)
    assert _bytes(workloads._settle(select, None, waits, NO_PEERS)) == 5 * len(CHUNK)
    assert waits.calls == 6  # five that brought a chunk, one that brought nothing


def test_a_stalled_peer_ends_the_wait_after_one_unchanged_look(
    pair: tuple[socket.socket, socket.socket], select: Callable[..., list]
) -> None:
    waits = Waits(pair[1], [CHUNK, CHUNK, None, CHUNK])
    assert _bytes(workloads._settle(select, None, waits, NO_PEERS)) == 2 * len(CHUNK)
    assert waits.calls == 3


def test_the_wait_is_bounded(
    pair: tuple[socket.socket, socket.socket],
    select: Callable[..., list],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workloads, "SETTLE_STEPS", 7)
    waits = Waits(pair[1], [b"x"] * 100)
    assert _bytes(workloads._settle(select, None, waits, NO_PEERS)) == 7
    assert waits.calls == 7


def test_nothing_ready_returns_after_one_wait_when_the_loop_may_not_block(
    select: Callable[..., list],
    pair: tuple[socket.socket, socket.socket],
) -> None:
    waits = Waits(pair[1], [])
    started = time.monotonic()
    assert workloads._settle(select, 0, waits, NO_PEERS) == frozenset()
    assert (
        workloads._settle(select, 0.05, waits, NO_PEERS) == frozenset()
    )  # a timer is due: blocks to it
    assert waits.calls == 2
    assert time.monotonic() - started < 1.0


def test_a_listening_socket_is_ready_without_a_byte_count() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert workloads._readable_bytes(server.fileno()) == 0
