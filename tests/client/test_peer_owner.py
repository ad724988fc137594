"""The owner of a loopback listener, read from /proc/net (js_host.peer_owner), against real
sockets of this process; the refusal of another user's is in tests/system/test_security_hosts.py."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from js_host import peer_owner
from js_host.conf import settings
from js_host.peer_owner import HOSTS, ForeignListener, OwnerCheck, listener_uids, proves_itself

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux's /proc/net only")


@contextmanager
def listening(family: socket.AddressFamily, address: str, *, v6only: bool = True) -> Iterator[int]:
    with socket.socket(family) as sock:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        sock.bind((address, 0))
        sock.listen()
        yield sock.getsockname()[1]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_the_listener_of_an_address_or_of_the_wildcard_is_found() -> None:
    me = os.geteuid()
    with listening(socket.AF_INET, "127.0.0.1") as port:
        assert listener_uids(ip("127.0.0.1"), port) == [me]
        assert listener_uids(ip("127.0.0.2"), port) == []  # bound to another address: not its listener
    with listening(socket.AF_INET, "0.0.0.0") as port:
        assert listener_uids(ip("127.0.0.5"), port) == [me]
    with listening(socket.AF_INET6, "::1") as port:
        assert listener_uids(ip("::1"), port) == [me]
    with listening(socket.AF_INET6, "::", v6only=False) as port:  # dual stack: takes IPv4 too
        assert listener_uids(ip("127.0.0.1"), port) == [me]
        assert listener_uids(ip("::1"), port) == [me]


def test_the_kernels_address_format() -> None:
    if sys.byteorder == "little":
        assert peer_owner._hex4(ip("127.0.0.1")) == "0100007F"
        assert peer_owner._hex6(ip("::1")) == "00000000" * 3 + "01000000"
        assert peer_owner._hex6(ip("::ffff:127.0.0.1")) == "0000000000000000FFFF00000100007F"


def test_no_proc_net_means_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_owner, "_TABLES", {4: "/nonexistent/tcp", 6: "/nonexistent/tcp6"})
    assert listener_uids(ip("127.0.0.1"), 9) is None
    OwnerCheck("X").check(("127.0.0.1", 9))  # nothing to look at: let through


def test_what_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    check = OwnerCheck("SETTING")
    with listening(socket.AF_INET, "127.0.0.1") as port:
        check.check(("127.0.0.1", port))  # ours
        check.check(("::ffff:127.0.0.1", port, 0, 0))  # the same, through an IPv6 socket
    check.check("/run/host.sock")  # a unix socket: its folder decides
    check.check(("10.1.2.3", 9009))  # another machine's address: nobody here can bind it
    with pytest.raises(ForeignListener) as info:  # nothing listens there (any more)
        check.check(("127.0.0.1", port))
    assert f"127.0.0.1:{port}" in str(info.value) and "nothing was sent" in str(info.value)
    with proves_itself():
        check.check(("127.0.0.1", port))  # the manager's exchange proves itself
    # Another owner: refused unless listed.
    monkeypatch.setattr(peer_owner, "listener_uids", lambda address, port: [4242])
    with pytest.raises(ForeignListener) as info:
        check.check(("127.0.0.1", 9009))
    message = str(info.value)
    assert "another local user holds 127.0.0.1:9009 (uid 4242, " in message and "SETTING" in message
    with pytest.raises(ForeignListener, match=r"\[::1\]:9009"):
        check.check(("::1", 9009, 0, 0))
    OwnerCheck("SETTING", lambda: (4242,)).check(("127.0.0.1", 9009))
    monkeypatch.setattr(peer_owner, "listener_uids", lambda address, port: [0])
    check.check(("127.0.0.1", 9009))  # root's


def test_the_clients_check_follows_host_uids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_owner, "listener_uids", lambda address, port: [4242])
    with pytest.raises(ForeignListener, match="HOST_UIDS"):
        HOSTS.check(("127.0.0.1", 9009))
    monkeypatch.setattr(settings, "HOST_UIDS", (4242,))
    HOSTS.check(("127.0.0.1", 9009))
