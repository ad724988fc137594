"""Development: a managed host's crash, shown once on the machine.

The manager remembers how a host process it started ended when it crashed
(its id, the exit code or signal, its logfile). The first process of the
machine that sees the crash shows it (a ProcessError with the end of the
logfile, or the "ended" line of the development page) and records the crashed
process's id in the record every process of the machine shares for the host
(:func:`js_host.runtime.development_record`, which also holds the reloader's mtimes); every later
check, in any worker, just lets the middleware start the host again.

:class:`~js_host.reloader.Reloader` calls :func:`show_crash_once` when its
check finds the host not started, and :func:`crash_seen` when a function call
of a request found the host gone. Both block on the manager.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .exceptions import ConnectionError, FunctionTimeout, ProcessError  # noqa: A004 - the spec's name
from .runtime import development_record, tail

if TYPE_CHECKING:
    from .host import JSHost

# Under the name users configure for the reloader's records, whichever module writes them.
logger = logging.getLogger("js_host.reloader")

#: Seconds to wait, after a call saw the host go, for the manager to notice that it crashed.
CRASH_NOTICE_TIMEOUT = 3.0
#: Lines of a crashed host's logfile in the ProcessError of a crash seen between requests.
CRASH_LOG_LINES = 20


def show_crash_once(host: JSHost, crashed: dict[str, Any], *, record: bool) -> None:
    """Raise a ProcessError for the crash ``crashed`` (the manager's description) unless a process
    has shown it already; ``record``: it is shown now."""
    if not claim_crash(host, crashed, record=record):
        return
    logfile = crashed.get("logfile") or host.logfile
    if logfile and not host.logfile:
        host.logfile = logfile  # for the page's tail
    raise ProcessError(
        f"The host for {host.config_file} exited unexpectedly ({crashed.get('exit', 'cause unknown')}) "
        f"since the last request. Inspect its logfile {logfile}, fix the cause and reload: the next "
        f"request starts the host again.\nLast lines of {logfile}:\n{tail(logfile, CRASH_LOG_LINES)}"
    )


def claim_crash(host: JSHost, crashed: dict[str, Any], *, record: bool = True) -> bool:
    """Record the crash as shown on this machine (unless not ``record``); False if a process
    had already shown it."""
    with development_record(host.config_file) as lock:
        if lock.record.get("crash_shown") == crashed.get("id"):
            return False
        if not record:
            return True
        lock.record["crash_shown"] = crashed.get("id")
    logger.error("%s exited unexpectedly (%s)", host.config_file, crashed.get("exit", "cause unknown"))
    return True


def crash_seen(host: JSHost, host_id: str | None) -> str | None:
    """How the host process ``host_id`` (the manager's id of the one this process was connected
    to) ended, once the manager has noticed, with that crash recorded as shown; None if it has
    not crashed (or the manager does not say: js-host 0.11, ``host_id`` None)."""
    manager = host.manager
    if manager is None or host_id is None:
        return None
    deadline = time.monotonic() + CRASH_NOTICE_TIMEOUT
    while True:
        try:
            data = manager.request_host_status(host.config_file)
        except (ConnectionError, FunctionTimeout):
            return None
        crashed = data.get("crashed")
        if not data.get("started"):
            if not isinstance(crashed, dict) or crashed.get("id") != host_id:
                return None
            claim_crash(host, crashed)
            return str(crashed.get("exit", "cause unknown"))
        if (data.get("host") or {}).get("id") != host_id or time.monotonic() >= deadline:
            return None  # restarted meanwhile, or alive: not a crash
        time.sleep(0.05)
