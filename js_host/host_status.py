"""``HostStatus``: where a host listens and what it reports, found without connecting to it.

A :class:`~js_host.host.JSHost` answers its status questions (the spec's
``get_status()``, ``get_url()``, ``request_status()``, ``is_running()``) with
one of these. The status comes from one of three places:

- a managed host: what the manager reported when it started the host (nothing
  is started to find out: a host the manager does not run is "not started");
- through ``URL_OVERRIDE``: the live ``GET <URL_OVERRIDE>/status`` (neither
  node nor the config file need to be on this machine);
- else: the config file's status, read with node (see :mod:`js_host.config_status`).
"""

from __future__ import annotations

import socket
from typing import Any

from .conf import Paths
from .config_status import read_config_status
from .endpoint import config_url, parse_status, request, split_url
from .exceptions import ConnectionError, FunctionTimeout, JSHostError, UnexpectedResponse  # noqa: A004
from .managed_host import ManagedHost

#: Seconds to wait for an answer to GET /status.
STATUS_TIMEOUT = 10.0


class HostStatus:
    """The status of the host that runs ``paths.config_file`` (see the module docstring)."""

    expected_type_name = "Host"

    def __init__(self, paths: Paths, *, url_override: str | None, managed: ManagedHost | None) -> None:
        self.config_file, self.path_to_node, self.bin_path = paths
        self.url_override = url_override
        self.managed = managed

    def name(self) -> str:
        """A description for messages (starts nothing: a managed host not running is "not started")."""
        try:
            url = self.url()
        except JSHostError:
            url = "not started" if self.managed is not None else "?"
        return f"Host [{url}] ({self.config_file})"

    def config_status(self, *, fresh: bool = False) -> dict[str, Any]:
        """The status the config file describes (``--config``), without any process."""
        return read_config_status(self.path_to_node, self.bin_path, self.config_file, fresh=fresh)

    def status(self) -> dict[str, Any]:
        """The host's status; a managed host that the manager does not run raises ConnectionError."""
        if self.managed is not None:
            status = self.managed.status or self.managed.running_status()
            if status is None:
                raise ConnectionError(
                    f"The managed host for {self.config_file} is not started: host.connect() or "
                    "host.start() starts it."
                )
            return status
        if self.url_override:
            status, reason = self.request()
            if status is None:
                raise ConnectionError(self.cannot_connect_message(reason))
            return status
        return self.config_status()

    def url(self) -> str:
        """The host's root URL; a managed host that is not started raises ConnectionError."""
        if self.url_override:
            return self.url_override
        return config_url(self.status()["config"])

    def request(self, timeout: float | None = None) -> tuple[dict[str, Any] | None, str]:
        """GET /status: (the status, "") or (None, why there is none)."""
        try:
            url = self.url()
            response = request(url, "GET", "/status", timeout=STATUS_TIMEOUT if timeout is None else timeout)
        except (ConnectionError, FunctionTimeout, UnexpectedResponse) as err:
            return None, str(err)
        return parse_status(response, f"{url}/status")

    def is_running(self) -> bool:
        """True if the host answers its GET /status; a managed host must also be one that the
        manager runs (nothing is started to find out)."""
        if self.managed is not None and self.managed.running_status() is None:
            return False
        status = self.request()[0]
        return status is not None and status.get("type") == self.expected_type_name

    def cannot_connect_message(self, reason: str = "") -> str:
        """Why a ConnectionError was raised, and what to do about it."""
        if self.managed is not None:
            return f"Cannot connect to the managed {self.name()}; see its logfile {self.managed.logfile}"
        if self.url_override:
            return (
                f"Cannot connect to the host through URL_OVERRIDE {self.url_override}; check that the host "
                f"(and the proxy in front of it, if any) runs and can be reached from here. {reason}"
            )
        url = self.url()
        if something_listens(url):
            # Starting the host there would fail with EADDRINUSE: say who is in the way instead.
            port = split_url(url)[1]
            return (
                f"Something else holds {url}: it accepts connections but is not a js-host host "
                f"answering GET /status ({reason or 'no answer'}). Stop the program listening there "
                f"(`ss -ltnp 'sport = :{port}'` names it), or give the host another `port` in "
                f"{self.config_file}."
            )
        return (
            f"Cannot connect to a host at {url}. Start it with "
            f"`{self.path_to_node} {self.bin_path} {self.config_file}`, or set USE_MANAGER=True in "
            "development."
        )


def something_listens(url: str) -> bool:
    """True if a connection to ``url``'s address is accepted (by whatever listens there)."""
    address, port, _ = split_url(url)
    try:
        socket.create_connection((address.strip("[]"), port), timeout=1.0).close()
    except OSError:
        return False
    return True
