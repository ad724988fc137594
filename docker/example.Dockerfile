# The example Flask app under gunicorn, wrapped in JSHostMiddleware and calling
# its functions through the proxy. Build from the repository root:
#   docker build -f docker/example.Dockerfile -t js-host-example .
# No Node.js here: with JS_HOST_URL_OVERRIDE set, js_host learns the host's
# functions from GET <URL_OVERRIDE>/status (the proxy forwards it).
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY docker/requirements.txt docker/requirements-example.txt /tmp/
RUN pip install --requirement /tmp/requirements.txt --requirement /tmp/requirements-example.txt
COPY setup.py pyproject.toml README.md ./
COPY js_host/ js_host/
COPY js_host_proxy/ js_host_proxy/
# Dependencies are pinned above; this installs js_host and js_host_proxy only.
RUN pip install --no-deps .
COPY example/ example/

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin js-host
USER 10001

ENV JS_HOST_URL_OVERRIDE=http://proxy:9010
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]

ENV EXAMPLE_BIND=0.0.0.0:8000
CMD ["gunicorn", "-c", "example/gunicorn.conf.py"]
