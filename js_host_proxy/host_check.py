"""The Host check against DNS rebinding: on loopback, only requests addressed to a loopback name.

A web page on evil.example can make its name resolve to 127.0.0.1: the user's browser then
sends the page's requests to the proxy on loopback, with ``Host: evil.example``, and lets the
page read the answers (to the browser they come from the page's own origin). So a request that
reached the proxy on a loopback address must carry a loopback Host name (``localhost``,
``127.x.x.x``, ``[::1]``, with any port) or one of ``JS_HOST_PROXY_ALLOWED_HOSTS``; anything
else is a 403 naming that setting, answered before anything is forwarded or looked up. The
names are those the Node host and manager accept (``js_host/node/lib/security.js``,
``createHostCheck``): the proxy drops the client's Host when it forwards a call, so the host's
own check never sees it. A request without a Host field (HTTP/1.0) passes, as there.

Where the request arrived is the local address of the connection gunicorn accepted
(``accepted_socket.py``, as for the metrics socket), which no client can forge. No check
where it is not a loopback address:

- a unix socket: a browser cannot connect to one, and a front server (nginx) forwards its
  clients' own Host there, names the proxy cannot know;
- an address off loopback (``0.0.0.0`` reached on another address): every client that can
  reach it may call the proxy directly anyway (docs/SECURITY.md counts them all untrusted),
  under whatever names the network gives it; a page that rebinds a name to it gains nothing;
- no socket known (the app in-process, another WSGI server): nothing says where it arrived.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from js_host.exceptions import ConfigError
from js_host_proxy.accepted_socket import local_address
from js_host_proxy.replies import Reply, text_reply

SETTING = "JS_HOST_PROXY_ALLOWED_HOSTS"
_LOOPBACK_NAMES = frozenset({"localhost", "[::1]"})
_LOOPBACK_IPV4 = re.compile(r"127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")


def host_name(value: str) -> str:
    """The name of a Host field value, as security.js's ``hostname()``: "Foo:80" -> "foo",
    "[::1]:80" -> "[::1]"."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value if end == -1 else value[: end + 1]
    return value.partition(":")[0]


def allowed_hosts(raw: str) -> tuple[str, ...]:
    """The names of ``JS_HOST_PROXY_ALLOWED_HOSTS`` (comma-separated, any case), or a
    ConfigError for one with a port or a path: the check compares names only."""
    names = tuple(name.strip().lower() for name in raw.split(",") if name.strip())
    for name in names:
        if host_name(name) != name or "/" in name or " " in name:
            raise ConfigError(
                f"{SETTING}: {name!r} is not a host name; list names without a port or a scheme, "
                "separated by commas (e.g. app.example,[fd00::7])"
            )
    return names


def on_loopback(environ: dict[str, Any]) -> bool:
    """Whether the request's connection was accepted on a loopback address (see the module doc)."""
    local = local_address(environ)
    if local is None:
        return False  # a unix socket, or no socket known
    address = local[0]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv6 socket reached on 127.0.0.1
    return address.is_loopback


class HostCheck:
    """The check, with the names ``allowed`` besides the loopback ones (lower case, no port)."""

    def __init__(self, allowed: tuple[str, ...] = ()) -> None:
        self.allowed = _LOOPBACK_NAMES | frozenset(allowed)
        # Clients send the same Host every time: the last allowed one is known at a glance.
        self._last_allowed: str | None = None

    def is_allowed(self, host: str) -> bool:
        name = host_name(host)
        return name in self.allowed or _LOOPBACK_IPV4.fullmatch(name) is not None

    def refusal(self, environ: dict[str, Any]) -> Reply | None:
        """The 403 for a request on loopback addressed to another name, else None."""
        host = environ.get("HTTP_HOST")
        if host is None or host == self._last_allowed:
            return None
        if self.is_allowed(host):
            self._last_allowed = host
            return None
        if not on_loopback(environ):
            return None
        return text_reply(
            403,
            "js-host-proxy: on loopback this proxy only answers requests addressed to localhost, "
            f"127.x.x.x or [::1] (protection against DNS rebinding), not to Host {host[:100]!r}. "
            f"Add the name to {SETTING} to allow it.",
        )
