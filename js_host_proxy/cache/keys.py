"""The key scheme: a call's key is namespace + code version + function name + the body's sha1.

- The namespace (``JS_HOST_PROXY_NAMESPACE``) is for what code cannot know (a data
  version); its length comes first, so that no namespace is a prefix of another's keys.
- The code version is the one the host reports (``JS-Host-Code-Version``, see
  :mod:`js_host_proxy.versions`): a digest of its config and every module it loaded,
  so a deploy of new JavaScript never meets the old code's entries. A host that
  reports none (npm js-host 0.11) gets :func:`unversioned`, a stable marker.
- Not the upstream's address: every upstream running the same code shares entries.

Keys of one (namespace, version) pair share a prefix (:func:`prefix`), so that
a backend can purge a namespace, or a version within it, by prefix. What a purge
names is a :class:`Selection` of keys.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: What a version may look like; anything else a host sends is hashed into that form.
_VERSION = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
#: The marker of the hosts that report no version (npm js-host 0.11).
UNVERSIONED = "unversioned"


def cache_key(namespace: str, version: str, name: str, digest: str) -> str:
    """The key of a call: namespace, code version, function name and the body's sha1."""
    return f"{prefix(namespace, version)}{name}:{digest}"


def prefix(namespace: str, version: str | None = None) -> str:
    """What every key of ``namespace`` (and ``version``, when given) starts with, and no
    other key."""
    head = f"{len(namespace)}:{namespace}:"
    return head if version is None else f"{head}{version}:"


def split_key(key: str) -> tuple[str, str, str, str]:
    """The inverse of :func:`cache_key`: (namespace, version, name, digest).

    Raises ValueError for a string that is not a key."""
    length, rest = key.split(":", 1)
    namespace, rest = rest[: int(length)], rest[int(length) + 1 :]
    version, rest = rest.split(":", 1)
    name, digest = rest.rsplit(":", 1)
    return namespace, version, name, digest


def matches(key: str, namespace: str | None, version: str | None, function: str | None) -> bool:
    """Whether ``key`` is of ``namespace``, ``version`` and ``function`` (each: any when None)."""
    try:
        ns, ver, name, _ = split_key(key)
    except ValueError:
        return False
    return (
        (namespace is None or ns == namespace)
        and (version is None or ver == version)
        and (function is None or name == function)
    )


@dataclass(frozen=True)
class Selection:
    """The keys of ``namespace``, code ``version`` and ``function`` (each: any when None;
    all given ones at once): what a purge names."""

    namespace: str | None = None
    version: str | None = None
    function: str | None = None

    def __contains__(self, key: str) -> bool:
        return matches(key, self.namespace, self.version, self.function)


def clean_version(reported: str | None, unversioned: str) -> str:
    """The version to key on for what a host reported (``None``: it reports none).

    Versions are folder names in the file cache and parts of keys, so anything but
    ``[A-Za-z0-9_-]{1,64}`` is replaced by a digest of it (still one per value)."""
    if reported is None or not reported.strip():
        return unversioned
    reported = reported.strip()
    if _VERSION.match(reported):
        return reported
    return "x" + hashlib.sha1(reported.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def unversioned(upstreams: tuple[str, ...] | list[str]) -> str:
    """The version marker of hosts that report none: stable, and one per set of upstreams,
    so that two projects' proxies (each in front of its own hosts) never share entries."""
    identity = "\n".join(sorted(u.rstrip("/") for u in upstreams))
    return f"{UNVERSIONED}-{hashlib.sha1(identity.encode()).hexdigest()[:12]}"
