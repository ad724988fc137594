"""gunicorn's logger, with JSON lines when ``JS_HOST_PROXY_LOG_FORMAT=json`` (``logs.py``).

    logger_class = "js_host_proxy.gunicorn_logger.ProxyLogger"   # gunicorn_settings.py

gunicorn (re)creates its handlers in ``setup`` (at start, and on SIGHUP/USR1): the
formatter is put on them each time. With the text format it is gunicorn's own logger
(a wrong value is refused by ``ProxyConfig.from_env`` in ``on_starting``).
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger

from js_host_proxy.logs import JsonFormatter


class ProxyLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if os.environ.get("JS_HOST_PROXY_LOG_FORMAT", "").strip().lower() == "json":
            formatter = JsonFormatter()
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(formatter)
