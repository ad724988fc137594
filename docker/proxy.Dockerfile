# The caching proxy (js_host_proxy) under gunicorn, configured by gunicorn.conf.py.
# Its health check is GET /health?ready (readiness): 200 while at least one host answers its /health.
# Build from the repository root:  docker build -f docker/proxy.Dockerfile -t js-host-proxy .
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY docker/requirements.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt
COPY setup.py pyproject.toml README.md ./
COPY js_host/ js_host/
COPY js_host_proxy/ js_host_proxy/
# Dependencies are pinned above; this installs js_host and js_host_proxy only.
RUN pip install --no-deps .
COPY gunicorn.conf.py ./

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin js-host \
 && mkdir -p /var/cache/js-host-proxy \
 && chown js-host /var/cache/js-host-proxy
USER 10001

# A file cache by default (one container); compose.yaml switches to the shared Redis.
ENV JS_HOST_PROXY_UPSTREAM=http://host:9009 \
    JS_HOST_PROXY_CACHE=file:///var/cache/js-host-proxy \
    JS_HOST_PROXY_BIND=0.0.0.0:9010
EXPOSE 9010

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9010/health?ready', timeout=3)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py"]
