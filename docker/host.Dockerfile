# The js-host running the example's functions (React SSR, Markdown).
# Build from the repository root:  docker build -f docker/host.Dockerfile -t js-host-host .
FROM node:20.18.1-bookworm-slim

ENV NODE_ENV=production \
    NODE_NO_WARNINGS=1 \
    JS_HOST_ADDRESS=0.0.0.0 \
    JS_HOST_PORT=9009

# The bundled host (no npm dependencies of its own).
COPY js_host/node/ /opt/js-host/

# The config file and the npm packages its functions require.
WORKDIR /app
COPY example/package.json example/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY example/host.config.js ./
COPY example/components/ ./components/

# The node image's unprivileged user `node`.
USER 1000
EXPOSE 9009

# GET /health: 200 once a worker is ready to take a call, 503 while none is.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:' + (process.env.JS_HOST_PORT || 9009) + '/health', (res) => process.exit(res.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]

# The config reads JS_HOST_ADDRESS and JS_HOST_PORT. `--workers auto`: one worker process
# per CPU the container may run on (give a number instead under a CPU quota, e.g. compose's
# `cpus:`); a call that loops or crashes fails alone and its worker is replaced.
# SIGTERM stops the host; SIGHUP reloads the config, worker by worker.
CMD ["node", "/opt/js-host/bin/js-host.js", "/app/host.config.js", "--workers", "auto"]
