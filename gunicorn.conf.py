"""gunicorn settings for js-host-proxy: the file operators edit.

``gunicorn -c gunicorn.conf.py`` (or ``js-host-proxy serve --gunicorn-conf gunicorn.conf.py``)
reads it. The defaults, their environment variables and the server hooks live in the package
(``js_host_proxy/gunicorn_settings.py``, also what ``js-host-proxy serve`` uses without
``--gunicorn-conf``); set a value below the import to change it, e.g. ``threads = 32``.
"""

from js_host_proxy.gunicorn_settings import *  # noqa: F403 (every setting and hook)
