"""Starting what bench/compare.py measures: installing it first, then the floor, the
host, the proxy, nginx, the 2015 stack's driver and the in-process engines, each as a
call factory by subject name."""

from __future__ import annotations

import itertools
import json
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from support import BENCH, NODE_ENV
from support.client import FLOOR_ECHO, LARGE, SMALL, function_on, host_cmd, host_config, raw_client, serialize
from support.install import LEGACY_BIN, LEGACY_PYTHON, ensure_legacy, ensure_nginx, pip_install
from support.processes import NodeServer, free_port, fresh_log, stop_group
from support.proxies import start_nginx, start_proxy
from support.runs import MakeCall

from . import names
from .results import Results

DATA = {"50 B": SMALL, "100 KB": LARGE}
ECHO_JS = "function echo(data) { return JSON.stringify(data); }"

#: A call factory: make(payload name) -> a function returning a per-thread call.
Maker = Callable[[str], MakeCall]


def install(allow: bool) -> tuple[dict[str, str | None], str | None]:
    """What is missing (subject -> the reason, or None when it is there), and why there
    can be no chart (None: there can); installs it first when ``allow``."""
    missing = {
        names.EXECJS: pip_install("execjs", "PyExecJS", allow),
        names.RACER: pip_install("py_mini_racer", "mini-racer", allow),
        names.LEGACY: ensure_legacy(allow),
        names.NGINX_HIT: ensure_nginx(allow),
    }
    missing[names.NGINX_MISS] = missing[names.NGINX_HIT]
    return missing, pip_install("matplotlib", "matplotlib", allow)


_unique = itertools.count()
_run = uuid.uuid4().hex[:8]


def function_maker(url: str, *, miss: bool = False, local_cache: int = 0) -> Maker:
    """Function.call against ``url``; with ``miss``, every call's data differs (a cache miss);
    with ``local_cache`` bytes, answered from the process's local cache after the first."""
    function = function_on(url, local_cache=local_cache)

    def make(payload: str) -> MakeCall:
        data = DATA[payload]
        if miss:
            return lambda: lambda: function.call(**data, n=f"{_run}-{next(_unique)}")
        return lambda: lambda: function.call(**data)

    return make


def stale_maker(url: str) -> Maker:
    """Function.call of ``held`` against a proxy whose entries are stale 1 ms after they are
    stored and served for an hour while refreshed: the first call of each payload stores it,
    every later one is answered stale while that payload's refresh is held at the host."""
    function = function_on(url, name="held")

    def make(payload: str) -> MakeCall:
        data = DATA[payload]
        function.call(**data)
        return lambda: lambda: function.call(**data)

    return make


def floor_maker(port: int) -> Maker:
    def make(payload: str) -> MakeCall:
        body = serialize(DATA[payload]).encode()
        return lambda: raw_client(port, body)

    return make


def execjs_maker() -> Maker:
    import execjs

    context = execjs.compile(ECHO_JS)

    def make(payload: str) -> MakeCall:
        data = DATA[payload]
        return lambda: lambda: context.call("echo", data)

    return make


def racer_maker() -> Maker:
    from py_mini_racer import MiniRacer

    def make(payload: str) -> MakeCall:
        data = DATA[payload]

        def one() -> Callable[[], object]:
            context = MiniRacer()  # one V8 context per thread
            context.eval(ECHO_JS)
            return lambda: context.call("echo", data)

        return one

    return make


class Legacy:
    """The 2015 stack, driven by bench/compare_legacy.py in bench/.venv-legacy; the host
    it spawns outlives each run (for the warm start), and stop() stops it."""

    def __init__(self, tmp: Path) -> None:
        self.workdir = tmp / "legacy"
        self.workdir.mkdir()
        self.config = host_config(self.workdir, free_port())
        self.host_pid: int | None = None

    def run(self, **opts: Any) -> dict[str, Any]:
        """compare_legacy.py with ``opts``: the JSON object on its last line."""
        options = {"workdir": str(self.workdir), "config": str(self.config), "bin": str(LEGACY_BIN)}
        options.update(small=SMALL, large=LARGE, **opts)
        cmd = [str(LEGACY_PYTHON), str(BENCH / "compare_legacy.py"), json.dumps(options)]
        try:
            done = subprocess.run(
                cmd, cwd=self.workdir, env=NODE_ENV, capture_output=True, text=True, timeout=180
            )
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
            self._note_host(out.splitlines())
            raise RuntimeError(f"the 2015 stack did not finish within 180 s ({' '.join(cmd[:2])})") from None
        lines = done.stdout.strip().splitlines()
        self._note_host(lines)
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"the 2015 stack failed: {done.stderr.strip()[-400:]}")
        return json.loads(lines[-1])

    def _note_host(self, lines: list[str]) -> None:
        for line in lines:
            try:
                self.host_pid = json.loads(line).get("pid") or self.host_pid
            except ValueError:
                continue

    def stop(self) -> None:
        if self.host_pid:
            stop_group(self.host_pid)
            self.host_pid = None


@dataclass
class Subjects:
    """What is measured, started: a call factory by subject name, the processes to
    stop at the end, the 2015 stack's driver once it is used."""

    tmp: Path
    logdir: Path
    makers: dict[str, Maker] = field(default_factory=dict)
    started: list[Any] = field(default_factory=list)
    legacy: Legacy | None = None

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.stop()
        if self.legacy:
            self.legacy.stop()


def start(subjects: Subjects, results: Results, missing: dict[str, str | None]) -> None:
    """The floor, the host and the proxy in front of it, nginx, the in-process engines;
    what fails to start is recorded in ``results`` and left out."""
    floor = NodeServer(["node", str(FLOOR_ECHO)], fresh_log(subjects.logdir, "floor"))
    subjects.started.append(floor)
    host = NodeServer(host_cmd(), fresh_log(subjects.logdir, "host"))
    subjects.started.append(host)
    # log_level=info: start_proxy waits for the workers' "Booting worker" lines.
    cache = f"file://{subjects.tmp}/proxy-cache"
    proxy, proxy_url = start_proxy(subjects.tmp, host.url, cache=cache, log_level="info")
    subjects.started.append(proxy)
    stale, stale_url = start_proxy(
        subjects.tmp,
        host.url,
        cache=f"file://{subjects.tmp}/stale-cache",
        ttl="0.001",
        stale_while_revalidate="3600",
        log_level="info",
    )
    subjects.started.append(stale)
    # The proxy's worker (gunicorn.conf.py) around an app that answers a constant: the floor
    # of any answer the proxy gives.
    gunicorn_floor, gunicorn_floor_url = start_proxy(
        subjects.tmp, host.url, app="proxy_floor_app:app", log_level="info"
    )
    subjects.started.append(gunicorn_floor)
    subjects.makers.update(
        {
            names.FLOOR: floor_maker(floor.port),
            names.DIRECT: function_maker(host.url),
            names.LOCAL_HIT: function_maker(host.url, local_cache=1 << 20),
            names.PROXY_HIT: function_maker(proxy_url),
            names.PROXY_MISS: function_maker(proxy_url, miss=True),
            names.PROXY_STALE: stale_maker(stale_url),
            names.GUNICORN_FLOOR: function_maker(gunicorn_floor_url),
        }
    )
    if not missing[names.NGINX_HIT]:
        try:
            # As root the whole of nginx runs as nobody (setpriv), not only its workers.
            nginx, nginx_url, _ = start_nginx(subjects.tmp, host.url, all_as_nobody=True)
            subjects.started.append(nginx)
            subjects.makers[names.NGINX_HIT] = function_maker(nginx_url)
            subjects.makers[names.NGINX_MISS] = function_maker(nginx_url, miss=True)
        except Exception as err:
            for name in (names.NGINX_HIT, names.NGINX_MISS):
                results.fail(name, f"nginx did not start: {err}")
    if not missing[names.EXECJS]:
        subjects.makers[names.EXECJS] = execjs_maker()
    if not missing[names.RACER]:
        subjects.makers[names.RACER] = racer_maker()
