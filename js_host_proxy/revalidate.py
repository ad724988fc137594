"""Background refreshes of stale entries (stale-while-revalidate, RFC 5861 §3).

A request whose entry has expired but is within its stale-while-revalidate window is
answered from it at once (``X-Cache: STALE``) and hands the key to a
:class:`Revalidator`, which runs the refresh on a thread of its own: at most one
refresh per key at a time in a process (a key already queued or running is not
queued again). The refresh goes through the coalescer (``coalesce.py``) like a miss,
so across the workers of a machine and the machines sharing Redis one call reaches
the host and the others find the entry it stored.

The threads belong to the process that uses them: none is started before the first
refresh (so after gunicorn forks; a forked child starts its own), at most
``threads``, with at most ``max_pending`` keys queued or running; past that a key is
not refreshed now (its stale entry is still served, and a later request hands it in
again). :meth:`Revalidator.close` (``ProxyApp.close``, from gunicorn's
``worker_exit``) drops what is queued, so that nothing starts once the worker is
going, and waits a bounded time for the refreshes in flight. They run on daemon
threads: one still waiting for a host when the worker exits ends with it, and
stores nothing (an entry is written whole or not at all).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: The name of the refresh threads (seen in py-spy and thread dumps).
THREAD_NAME = "js-host-proxy-refresh"


class _State:
    """One process's queue and threads (a forked child makes its own)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.changed = threading.Condition()
        self.jobs: deque[tuple[str, Callable[[], object]]] = deque()
        self.pending: set[str] = set()  # keys queued or running
        self.threads: list[threading.Thread] = []
        self.closed = False


class Revalidator:
    """Runs refreshes in the background, one per key at a time, on at most ``threads`` threads."""

    def __init__(self, *, threads: int = 2, max_pending: int = 256) -> None:
        self.threads = threads
        self.max_pending = max_pending
        self._state: _State | None = None
        self._state_lock = threading.Lock()

    def pending(self, key: str) -> bool:
        """Whether a refresh of ``key`` is queued or running in this process."""
        state = self._state
        return state is not None and state.pid == os.getpid() and key in state.pending

    def submit(self, key: str, refresh: Callable[[], object]) -> bool:
        """Run ``refresh()`` in the background unless one for ``key`` is queued or running,
        the queue is full or the revalidator is closed; returns whether it was queued."""
        state = self._here()
        with state.changed:
            if state.closed or key in state.pending:
                return False
            if len(state.pending) >= self.max_pending:
                logger.info(
                    "not refreshing %s now: %d refreshes are queued or running; its stale entry is "
                    "served meanwhile",
                    key,
                    len(state.pending),
                )
                return False
            state.pending.add(key)
            state.jobs.append((key, refresh))
            if len(state.threads) < self.threads:
                thread = threading.Thread(target=self._run, args=(state,), name=THREAD_NAME, daemon=True)
                state.threads.append(thread)
                thread.start()
            state.changed.notify()
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Drop the queued refreshes and wait at most ``timeout`` seconds for those running."""
        state = self._state
        if state is None or state.pid != os.getpid():
            return
        with state.changed:
            state.closed = True
            for key, _refresh in state.jobs:
                state.pending.discard(key)
            state.jobs.clear()
            state.changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in state.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        running = sorted(state.pending)
        if running:
            logger.warning(
                "abandoning %d background refresh(es) still waiting for a host (%s): "
                "nothing of theirs is stored",
                len(running),
                ", ".join(running[:5]),
            )

    def _here(self) -> _State:
        state = self._state
        pid = os.getpid()
        if state is None or state.pid != pid:
            with self._state_lock:
                state = self._state
                if state is None or state.pid != pid:
                    state = self._state = _State(pid)  # the parent's threads are not ours
        return state

    def _run(self, state: _State) -> None:
        while True:
            with state.changed:
                while not state.jobs and not state.closed:
                    state.changed.wait()
                if state.closed:
                    return
                key, refresh = state.jobs.popleft()
            try:
                refresh()
            except Exception:  # a refresh must never take its thread down with it
                logger.exception("the background refresh of %s failed; its stale entry stays", key)
            finally:
                with state.changed:
                    state.pending.discard(key)
