"""Who holds a loopback port: the owner of its listening socket, checked before a request goes out.

A host's port is free while the host is down (it died, or has not started yet), and
any local user may listen there; a client that connected to her would send her its
calls' data and take her answers for the host's (the proxy would even store them).
So before the first byte goes to a new connection to a loopback address (127.0.0.0/8,
``::1``, ``::ffff:127.x``), :meth:`OwnerCheck.check` looks up the listening socket in
``/proc/net/tcp`` (or ``tcp6``): the LISTEN entry (state ``0A``) for that address and
port, else for the wildcard address, as the kernel picks it; its ``uid`` column must be
this process's effective uid, root's (0), or one its setting lists (a host run as
another service user on purpose). Otherwise :class:`ForeignListener`: the connection is
closed by the caller, nothing sent.

Not checked, on purpose:

- other addresses: another user of this machine cannot bind another machine's address
  (a host elsewhere is the network's and TLS's business, see docs/SECURITY.md);
- unix sockets: the permissions of the socket's folder decide who can bind it;
- where ``/proc/net/tcp`` cannot be read, or lists no listener at all (not Linux, or a
  sandbox that hides it): nothing to look at, the connection is used as before.

The cost is paid once per new connection (kept-alive ones are reused unchecked): the
kernel lists every listener before any other socket, so the scan stops at the first
line in another state (a busy machine's table has thousands of connections: read
whole, it costs milliseconds); an IPv4 address's ``tcp6`` is read only when ``tcp``
has no listener bound to that very address.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import pwd
import struct
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, Callable, Union

from .conf import settings
from .exceptions import ConnectionError  # noqa: A004 - the spec's name

__all__ = ["HOSTS", "ForeignListener", "OwnerCheck", "listener_uids", "proves_itself"]

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_TABLES = {4: "/proc/net/tcp", 6: "/proc/net/tcp6"}
_LISTEN = b"0A"
_CHUNK = 16384  # bytes read at a time: ~100 lines, the listeners of most machines
_ANY4 = "00000000"
_ANY6 = "0" * 32
# Set while a request's answerer proves who it is by other means (proves_itself()).
_PROVEN = contextvars.ContextVar("js_host_peer_proves_itself", default=False)


class ForeignListener(ConnectionError):
    """Another local user holds the loopback port a request was to go to: nothing was sent."""


class OwnerCheck:
    """Which owners of a loopback listener this process sends requests to.

    ``setting`` names where more uids are listed (in the error), ``uids`` returns them
    (read at each new connection, so a setting changed later applies to the next one).
    """

    def __init__(self, setting: str, uids: Callable[[], Collection[int]] = tuple) -> None:
        self.setting = setting
        self.uids = uids

    def check(self, peer: Any) -> None:
        """Raise :class:`ForeignListener` when ``peer`` (``getpeername()`` of a new connection)
        is a loopback address whose listener another local user holds; else return."""
        if not isinstance(peer, tuple) or _PROVEN.get():
            # A unix socket (its folder's permissions decide who may bind it), or a peer that
            # proves itself.
            return
        address = _loopback(peer[0])
        if address is None:
            return
        owners = listener_uids(address, peer[1])
        if owners is None:
            return  # no /proc/net to look at (not Linux)
        allowed = (os.geteuid(), 0)
        foreign = [uid for uid in owners if uid not in allowed and uid not in self.uids()]
        if foreign or not owners:
            raise ForeignListener(self._message(address, peer[1], foreign[0] if foreign else None))

    def _message(self, address: Address, port: int, uid: int | None) -> str:
        where = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
        if uid is None:
            # It listened a moment ago (the connection was accepted) and is gone: not ours to trust.
            return (
                f"no listening socket for {where} is listed in /proc/net (it closed as js_host "
                "connected): try again once your host runs (nothing was sent to it)"
            )
        return (
            f"another local user holds {where} (uid {uid}, {_user_name(uid)}): stop that process, or "
            f"use another port; if your host runs as that user on purpose, add its uid to {self.setting} "
            "(nothing was sent to it)"
        )


@contextmanager
def proves_itself() -> Iterator[None]:
    """Within: new connections of this thread (or task) are not checked. For the development
    manager's exchange (:mod:`js_host.manager_auth`), whose challenge-response proves that the
    answer comes from the user's manager before anything secret is sent."""
    token = _PROVEN.set(True)
    try:
        yield
    finally:
        _PROVEN.reset(token)


def _loopback(host: str) -> Address | None:
    """The loopback address ``host`` (an IPv4-mapped one as IPv4); None for any other."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address if address.is_loopback else None


def listener_uids(address: Address, port: int) -> list[int] | None:
    """The uids of the listening sockets that take a connection to ``address:port``: those
    bound to that address, else those on the wildcard address (IPv4 sockets before IPv6 ones
    for an IPv4 address, as the kernel prefers them). [] when none is listed; None when
    ``/proc/net/tcp`` cannot be read or lists no listener at all."""
    suffix = f":{port:04X}"
    if address.version == 4:
        exact4, any4, seen = _scan(_TABLES[4], _hex4(address) + suffix, _ANY4 + suffix)
        if exact4:
            return exact4
        mapped = _hex6(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed))
        exact6, any6, seen6 = _scan(_TABLES[6], mapped + suffix, _ANY6 + suffix)
        groups, seen = (exact6, any4, any6), seen or seen6
    else:
        exact6, any6, seen = _scan(_TABLES[6], _hex6(address) + suffix, _ANY6 + suffix)
        groups = (exact6, any6)
    if not seen:
        return None  # unreadable, or no listener at all (ours would be there): nothing to go by
    return next((group for group in groups if group), [])


def _scan(path: str, exact: str, wildcard: str) -> tuple[list[int], list[int], bool | None]:
    """(uids listening on ``exact``, uids listening on ``wildcard``, whether any listener is
    listed) in one ``/proc/net`` table; (.., .., None) when it cannot be read."""
    exact_b, wildcard_b = exact.encode(), wildcard.encode()
    found: tuple[list[int], list[int]] = ([], [])
    seen = False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return [], [], None
    try:
        rest = os.read(fd, _CHUNK).partition(b"\n")[2]  # the header line
        while True:
            lines = rest.split(b"\n")
            rest = lines.pop()
            for line in lines:
                # "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid ..."
                fields = line.split(None, 8)
                if len(fields) < 8:
                    continue
                if fields[3] != _LISTEN:
                    # The kernel lists every listener first (tcp_seq_start: the listening hash,
                    # then the established one): all seen. The rest can be thousands of lines.
                    return found[0], found[1], seen
                seen = True
                if fields[1] == exact_b:
                    found[0].append(int(fields[7]))
                elif fields[1] == wildcard_b:
                    found[1].append(int(fields[7]))
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                return found[0], found[1], seen
            rest += chunk
    except (OSError, ValueError):
        return [], [], None
    finally:
        os.close(fd)


def _hex4(address: ipaddress.IPv4Address) -> str:
    # The kernel prints the address as a 32-bit number in host byte order.
    return f"{struct.unpack('=I', address.packed)[0]:08X}"


def _hex6(address: ipaddress.IPv6Address) -> str:
    # Four 32-bit words, each in host byte order.
    return "".join(f"{word:08X}" for word in struct.unpack("=4I", address.packed))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "no such user"


#: The client's check: its hosts run as this user, as root, or as a uid of HOST_UIDS.
HOSTS = OwnerCheck("HOST_UIDS", lambda: settings.HOST_UIDS)
