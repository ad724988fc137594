"""Where a host or a manager listens, and the requests both clients send there.

``JSHost`` and ``JSHostManager`` share these: the URL a config's ``address``
and ``port`` give (IPv6 addresses in brackets), one request to such a URL, and
the parsing of a ``GET /status`` answer.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

from .exceptions import ConfigError
from .transport import Response, pool

#: The address and port a config file gets when it names none (js-host's defaults).
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9009


def format_url(address: str, port: int) -> str:
    """``http://<address>:<port>``, with an IPv6 address in brackets (RFC 3986, section 3.2.2)."""
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"http://{address}:{port}"


def config_url(config: dict[str, Any]) -> str:
    """The URL a config (a status's ``config``) listens at."""
    return format_url(str(config.get("address", DEFAULT_ADDRESS)), int(config.get("port", DEFAULT_PORT)))


def split_url(url: str) -> tuple[str, int, str]:
    """(host name, port, path prefix without a trailing slash) of an ``http://`` URL."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as err:
        raise ConfigError(
            f"{url!r} is not a valid URL ({err}). Write IPv6 addresses in brackets: 'http://[::1]:9009'."
        ) from err
    return parts.hostname or DEFAULT_ADDRESS, port or 80, parts.path.rstrip("/")


def is_loopback(address: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (as js_host/node/lib/security.js decides)."""
    name = address.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def request(
    url: str, method: str, path: str, body: bytes = b"", *, headers: bytes = b"", timeout: float | None
) -> Response:
    """Send one request to ``url`` + ``path`` (see :meth:`js_host.transport.Pool.request`)."""
    address, port, prefix = split_url(url)
    return pool.request(address, port, method, prefix + path, body, headers=headers, timeout=timeout)


def parse_status(response: Response, url: str) -> tuple[dict[str, Any] | None, str]:
    """The status that ``GET url`` answered: (the status, "") or (None, why it is not one)."""
    if response.status != 200:
        return None, f"GET {url} answered {response.status}: {response.text.strip()[:500]}"
    try:
        status = json.loads(response.body)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        return None, f"GET {url} answered something else than a status: {response.text[:200]!r}"
    return status, ""
