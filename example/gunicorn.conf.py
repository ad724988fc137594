"""gunicorn settings for the example app (not the proxy: that is ../gunicorn.conf.py).

    gunicorn -c example/gunicorn.conf.py example.wsgi:application

Each setting can be changed from the environment (EXAMPLE_*).
"""

import os


def _env(name, default):
    value = os.environ.get(name, "").strip()
    return value if value else default


# The app: the Flask example wrapped in JSHostMiddleware (see wsgi.py).
wsgi_app = "example.wsgi:application"

# ---------------------------------------------------------------------------------------
# Server socket
# ---------------------------------------------------------------------------------------
bind = [_env("EXAMPLE_BIND", "127.0.0.1:" + _env("EXAMPLE_PORT", "8000"))]

# ---------------------------------------------------------------------------------------
# Workers: each process connects to the host (or proxy) once, through the middleware
# ---------------------------------------------------------------------------------------
workers = int(_env("EXAMPLE_WORKERS", "2"))
worker_class = _env("EXAMPLE_WORKER_CLASS", "gthread")
threads = int(_env("EXAMPLE_THREADS", "4"))
timeout = int(_env("EXAMPLE_TIMEOUT", "60"))
graceful_timeout = int(_env("EXAMPLE_GRACEFUL_TIMEOUT", "10"))

# ---------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------
accesslog = _env("EXAMPLE_ACCESS_LOG", "-")
errorlog = "-"
proc_name = "js-host-example"
