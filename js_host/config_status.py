"""A config file's status, read by running ``node <bin> <config> --config`` (no host needed).

This is how the client learns a host's (or, with ``--manager``, a manager's)
address and port. Starting node costs ~70 ms, so results are cached per node
binary, js-host binary (and its mtime), config path and the config file's mtime
and size: in memory, and in the runtime dir so that a restarted Python process
connects without spawning node. The cache can only be stale when a module that
the config file requires changes its address or port: callers that cannot reach
the address re-read with ``fresh=True``. The functions a host runs are always
taken from its live ``/status``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
import threading
from typing import Any

from . import verbosity
from .exceptions import ConfigError
from .log import emit
from .private_dir import PrivateDir
from .runtime import open_runtime_dir

logger = logging.getLogger(__name__)

CACHE_DIRNAME = "config-status"

_lock = threading.Lock()
_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
_read_by_node: set[tuple[Any, ...]] = set()  # keys this process has read with node itself


def node_env() -> dict[str, str]:
    """The environment of every node process the client spawns.

    js-host 0.11 prints a deprecation warning on Node 20, which its own manager
    takes for a failed start: NODE_NO_WARNINGS silences it.
    """
    return {**os.environ, "NODE_NO_WARNINGS": "1"}


def read_config_status(
    path_to_node: str, bin_path: str, config_file: str, *, manager: bool = False, fresh: bool = False
) -> dict[str, Any]:
    """The status JSON that ``config_file`` would report (a copy; cached unless ``fresh``)."""
    try:
        info = os.stat(config_file)
        bin_mtime = os.stat(bin_path).st_mtime_ns
    except OSError as err:
        raise ConfigError(f"Cannot read {err.filename!r}: {err}") from err
    key = (path_to_node, bin_path, bin_mtime, config_file, info.st_mtime_ns, info.st_size, manager)
    with _lock:
        cached = _cache.get(key)
        if fresh and key not in _read_by_node:
            cached = None
    if cached is None and not fresh:
        cached = _read_disk_cache(key)
    if cached is None:
        cached = _run_config(path_to_node, bin_path, config_file, manager)
        _write_disk_cache(key, cached)
        with _lock:
            _read_by_node.add(key)
    with _lock:
        _cache[key] = cached
    return json.loads(json.dumps(cached))  # callers may modify their copy


def _disk_cache_name(key: tuple[Any, ...]) -> str:
    return f"{hashlib.sha1(json.dumps(key).encode()).hexdigest()}.json"


def _open_cache_dir() -> PrivateDir:
    """``<runtime dir>/config-status``, once it is checked to be private.

    A status read from disk decides where calls go: a runtime dir that another
    local user could write to (e.g. a pre-created /tmp/js-host-<uid>, or a link)
    is refused with a ConfigError, and files are opened relative to the checked
    directory without following links.
    """
    with open_runtime_dir() as runtime:
        return runtime.subdir(CACHE_DIRNAME)


def _read_disk_cache(key: tuple[Any, ...]) -> dict[str, Any] | None:
    name = _disk_cache_name(key)
    try:
        with _open_cache_dir() as cache:
            fd = cache.open_private_file(name)
    except FileNotFoundError:
        return None
    except (OSError, ConfigError) as err:
        logger.debug("Not reading the cached config status %s: %s", name, err)
        return None
    with open(fd, encoding="utf-8") as fh:
        try:
            status = json.load(fh)
        except (OSError, ValueError):
            return None
    return status if isinstance(status, dict) and isinstance(status.get("config"), dict) else None


def _write_disk_cache(key: tuple[Any, ...], status: dict[str, Any]) -> None:
    # Best effort: the cache only saves a node start.
    try:
        with _open_cache_dir() as cache:
            cache.write_atomic(_disk_cache_name(key), json.dumps(status).encode(), prefix=".tmp-")
    except (OSError, ConfigError) as err:
        logger.debug("Cannot cache the config status: %s", err)


def _run_config(path_to_node: str, bin_path: str, config_file: str, manager: bool) -> dict[str, Any]:
    cmd = [path_to_node, bin_path, config_file, "--config"]
    if manager:
        cmd.append("--manager")
    emit(logger, verbosity.VERBOSE, "Reading config file %s", config_file)
    # Output goes to files, never to a pipe that nobody reads.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            code = subprocess.call(
                cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=node_env(),
                cwd=os.path.dirname(config_file),
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ConfigError(f"Cannot read config file {config_file!r} with {cmd}: {error}") from error
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    status = None
    if code == 0:
        try:
            status = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            status = None
    if not isinstance(status, dict) or not isinstance(status.get("config"), dict):
        raise ConfigError(
            f"Config file {config_file!r} could not be loaded by {bin_path!r} (exit status {code}):\n"
            f"{(stderr or stdout).strip()}\nFix the error above; `{' '.join(cmd)}` shows the same error."
        )
    if stderr.strip():
        logger.debug("%s wrote to stderr: %s", " ".join(cmd), stderr.strip())
    return status


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _read_by_node.clear()
