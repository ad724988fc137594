"""Where a request arrived: the local address of the connection gunicorn accepted.

gunicorn hands the app the accepted socket (``gunicorn.socket``). Its own address is not the
client's to choose, unlike SERVER_NAME and SERVER_PORT, which gunicorn takes from the request's
Host field for a unix socket. The metrics socket (``observe.py``) and the Host check
(``host_check.py``) go by it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def local_address(environ: dict[str, Any]) -> tuple[Address, int] | None:
    """The IP address and port the request's connection was accepted on; None for a unix
    socket, or when the server gave no socket (the app in-process, another WSGI server)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None
    try:
        local = sock.getsockname()
    except (OSError, AttributeError):
        return None
    if not isinstance(local, tuple):
        return None  # a unix socket: its path
    try:
        return ipaddress.ip_address(local[0].split("%", 1)[0]), local[1]
    except ValueError:
        return None
