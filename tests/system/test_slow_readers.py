"""Clients that never read their answers, against the proxy (real gunicorn, 2 workers x 8 threads).

An attacker's sockets, each with a 4 KiB receive buffer, ask for a large cached answer and read
none of it: a thread sending it would wait on the socket until the send deadline, and 40 such
sockets held every thread. Meanwhile good clients must get their answers, the attacker's
connections are closed at the send deadline (``JS_HOST_PROXY_SEND_TIMEOUT``), and past a worker's
budget of answers not taken (``JS_HOST_PROXY_MAX_UNSENT``) the ones that waited longest are closed.

Loopback only, bounded in time by pytest-timeout and generous client timeouts.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.support.proxy import Server, Upstream, call_path
from tests.support.slow_clients import address, good_calls
from tests.support.waiting import wait_for

#: More than the kernel's buffers take for a socket that reads nothing (about 3 MB on loopback).
BIG = 6_000_000
CUT = "did not take its answer within 10 s (JS_HOST_PROXY_SEND_TIMEOUT)"
OVER = "of answers not taken (JS_HOST_PROXY_MAX_UNSENT)"


def cache_the_big_answer(base: str) -> bytes:
    """The request for ``BIG`` bytes, after one call has stored its answer (both workers share
    the file cache: the stuck sockets' calls are hits)."""
    path, body = call_path("big", {"n": BIG})
    answer = requests.post(base + path, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200 and len(answer.content) == BIG
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@contextmanager
def stuck_readers(base: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` sockets with a 4 KiB receive buffer, each asking for the big answer (cached
    first) and reading nothing; closed on the way out."""
    request = cache_the_big_answer(base)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
            sock.connect(address(base))
            sock.sendall(request)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def read_to_end(sock: socket.socket, silence: float) -> int | None:
    """The bytes ``sock`` receives until the server closes it; None when it stays open, silent
    for ``silence`` seconds (its whole answer taken, or still waiting)."""
    sock.settimeout(silence)
    got = 0
    try:
        while chunk := sock.recv(1 << 20):
            got += len(chunk)
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


def check_good_calls(base: str, count: int) -> None:
    """``count`` good calls, every one answered (within good_calls' 3 s client timeout)."""
    results = good_calls(base, count)
    assert len(results) == count
    assert all(isinstance(r, tuple) and r[0] == 200 and "good" in r[1]["echo"] for r in results), results


@pytest.fixture
def proxy(
    start_gunicorn: Callable[..., tuple[str, Server]], upstream: Upstream
) -> Callable[..., tuple[str, Server]]:
    """``proxy(**settings)``: gunicorn with 2 workers x 8 threads in front of the upstream."""
    return lambda **settings: start_gunicorn(upstream=upstream.url, **settings)


@pytest.mark.timeout(90)
def test_readers_that_never_read_hold_no_thread_and_are_cut_at_the_send_deadline(
    proxy: Callable[..., tuple[str, Server]],
) -> None:
    # 40 sockets held every thread that sent an answer itself. The budget is out of the way
    # here: every stuck answer waits for the deadline.
    base, server = proxy(send_timeout=10, max_unsent=512 * 1024 * 1024)
    with stuck_readers(base, 40) as socks:
        time.sleep(1.5)  # every stuck request arrived and was answered
        check_good_calls(base, 50)
        # The good calls ran while the stuck sockets were held (the deadline is 10 s away).
        assert CUT not in server.log
        assert wait_for(lambda: server.log.count(CUT) == 40, 30)
        # Each got what the kernel's buffers held, then the end of the connection.
        received = [read_to_end(sock, 5) for sock in socks]
        assert all(r is not None and r < BIG for r in received), received
    assert "Traceback" not in server.log


@pytest.mark.timeout(90)
def test_answers_not_taken_past_the_budget_close_the_longest_waiting(
    proxy: Callable[..., tuple[str, Server]],
) -> None:
    base, server = proxy(send_timeout=60, max_unsent=16 * 1024 * 1024)  # two 6 MB answers a worker
    with stuck_readers(base, 12) as socks:
        # At most 4 held by the 2 workers: the other 8 connections closed, the oldest first.
        assert wait_for(lambda: server.log.count(OVER) >= 8, 30)
        check_good_calls(base, 20)
        cut = [r for r in (read_to_end(sock, 2) for sock in socks) if r is not None]
        assert len(cut) >= 8 and all(r < BIG for r in cut), cut
    assert "Traceback" not in server.log
