"""The key scheme: a call's key is its namespace, function name and the body's sha1.

Not the upstream's address, so every upstream shares the entries. The
namespace's length comes first, so that no namespace is a prefix of another's
keys (a namespace can be purged on its own).
"""

from __future__ import annotations


def cache_key(namespace: str, name: str, digest: str) -> str:
    """The key of a call: namespace, function name and the body's sha1."""
    return f"{namespace_prefix(namespace)}{name}:{digest}"


def namespace_prefix(namespace: str) -> str:
    """What every key of ``namespace`` starts with (and no key of another namespace)."""
    return f"{len(namespace)}:{namespace}:"


def split_key(key: str) -> tuple[str, str, str]:
    """The inverse of :func:`cache_key`: (namespace, name, digest)."""
    length, rest = key.split(":", 1)
    namespace, rest = rest[: int(length)], rest[int(length) + 1 :]
    name, digest = rest.rsplit(":", 1)
    return namespace, name, digest
