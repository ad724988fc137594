"""What the slow-client tests share: a server's address, and good calls made while an
attacker's sockets hold connections (tests/system/test_slow_clients.py, test_slow_readers.py)."""

from __future__ import annotations

import threading
from typing import Any

import requests

from tests.support.proxy import call_path


def address(base: str) -> tuple[str, int]:
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def good_calls(base: str, count: int, threads: int = 5) -> list[Any]:
    """``count`` calls from ``threads`` threads, half on kept-alive sessions, each with a 3 s
    client timeout; the responses (or the exceptions)."""
    results: list[Any] = []
    lock = threading.Lock()

    def run(t: int) -> None:
        with requests.Session() as session:
            for n in range(count // threads):
                client = session if n % 2 else requests
                path, body = call_path("echo", {"good": t * 1000 + n})
                try:
                    answer = client.post(
                        base + path, data=body, headers={"Content-Type": "application/json"}, timeout=3
                    )
                    outcome: Any = (answer.status_code, answer.json())
                except Exception as err:  # reported in the assertion
                    outcome = err
                with lock:
                    results.append(outcome)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return results
