"""Running one piece of work on several threads at once, for the tests of
concurrent calls."""

from __future__ import annotations

import threading
from typing import Callable


def run_on_threads(work: Callable[[int], object], count: int, timeout: float) -> None:
    """Run ``work(0)`` .. ``work(count - 1)``, each on a thread of its own, all at
    once; then wait for each up to ``timeout`` seconds (a thread still running
    after that is left, and the test's assertions on its results fail)."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
