"""What /proc says about the processes the system tests start: their children,
their memory, and the TCP sockets they listen on or are connected with (from
/proc/net/tcp{,6}).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import process_stats


def children(pid: int) -> set[int]:
    """Direct children of ``pid``."""
    return {child for child, fields in process_stats().items() if int(fields[1]) == pid}


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for fd in entries:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _decode_address(hex_address: str) -> tuple[str, int]:
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
    return ip, int(port, 16)


def _tcp_sockets() -> Iterator[list[str]]:
    """The fields of each row of the kernel's TCP socket tables (IPv4, then IPv6):
    [1] local address, [2] remote address, [3] state, [9] inode. A table the
    kernel does not have (no IPv6) is skipped."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            yield line.split()


def listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state owned by ``pids``."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = []
    for fields in _tcp_sockets():
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in owner:  # 0A = TCP_LISTEN
            ip, port = _decode_address(local)
            found.append((owner[inode], ip, port))
    return found


def pid_listening_on(port: int) -> int | None:
    """The PID of the process listening on 127.0.0.1:``port`` (or ::1), if any."""
    wanted = {
        fields[9] for fields in _tcp_sockets() if fields[3] == "0A" and _decode_address(fields[1])[1] == port
    }
    if not wanted:
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _socket_inodes(int(entry.name)) & wanted:
            return int(entry.name)
    return None


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def connected_to(pid: int, port: int) -> bool:
    """Does ``pid`` hold an established TCP connection to a loopback ``port``?"""
    inodes = _socket_inodes(pid)
    # 01 = TCP_ESTABLISHED
    return any(
        fields[3] == "01" and fields[9] in inodes and _decode_address(fields[2])[1] == port
        for fields in _tcp_sockets()
    )
