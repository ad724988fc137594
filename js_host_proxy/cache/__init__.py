"""The proxy's cache: stored entries, their keys, and the backends that hold them.

- :mod:`.keys`: the key of a call (namespace + function name + the body's sha1);
- :mod:`.entry`: the stored entry format (its times, then CacheControl's bytes);
- :mod:`.base`: the backend interface (bytes by key, a cross-process lock per key);
- :mod:`.memory`, :mod:`.file` (with :mod:`.file_folders`, :mod:`.file_lock`,
  :mod:`.file_purge`, :mod:`.file_size`), :mod:`.redis`: the backends;
- :mod:`.factory`: :func:`~.factory.open_cache`, the backend for a cache URL.

Importing this package imports none of them.
"""

from __future__ import annotations
