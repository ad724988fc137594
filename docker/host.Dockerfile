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

HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:' + (process.env.JS_HOST_PORT || 9009) + '/status', (res) => process.exit(res.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]

# The config reads JS_HOST_ADDRESS and JS_HOST_PORT. SIGTERM stops the host.
CMD ["node", "/opt/js-host/bin/js-host.js", "/app/host.config.js"]
