#!/usr/bin/env bash
# Run the whole stack on this machine, with the embedded defaults:
#
#   js-host (example/host.config.js)  127.0.0.1:$JS_HOST_PORT        (9009)
#   caching proxy under gunicorn       127.0.0.1:$JS_HOST_PROXY_PORT  (9010)
#   example Flask app under gunicorn   127.0.0.1:$EXAMPLE_PORT        (8000)
#
# The app calls its functions through the proxy (JS_HOST_URL_OVERRIDE), the
# proxy forwards cache misses to the host and keeps answers in a file cache in
# a temporary directory. Ctrl-C (SIGINT) or SIGTERM stops everything: each
# child runs in its own process group, which is sent SIGTERM, then SIGKILL.
#
# Other settings: JS_HOST_BIN (the host's js-host.js), EXAMPLE_WORKERS (2),
# JS_HOST_RUN_DIR (where logs and the cache go; default: a new temp dir,
# removed at exit).
# shellcheck disable=SC2329  # stop_all and on_signal are called by the traps
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

JS_HOST_PORT=${JS_HOST_PORT:-9009}
JS_HOST_PROXY_PORT=${JS_HOST_PROXY_PORT:-9010}
EXAMPLE_PORT=${EXAMPLE_PORT:-8000}
EXAMPLE_WORKERS=${EXAMPLE_WORKERS:-2}
JS_HOST_BIN=${JS_HOST_BIN:-$ROOT/js_host/node/bin/js-host.js}
PYTHON=${PYTHON:-python3}

say() { printf 'run: %s\n' "$*"; }
die() { printf 'run: %s\n' "$*" >&2; exit 1; }

[ -f "$JS_HOST_BIN" ] || die "no js-host at $JS_HOST_BIN: run \`make install\` or set JS_HOST_BIN"
[ -d example/node_modules ] || die "example/node_modules is missing: run \`make install\` (npm install --prefix example)"
command -v node >/dev/null || die "node is required (https://nodejs.org)"
"$PYTHON" -c 'import gunicorn, flask, js_host_proxy' 2>/dev/null \
  || die "gunicorn, flask or js_host_proxy cannot be imported by $PYTHON: run \`make install\`"

# A port already in use: say which one and how to pick another. SO_REUSEADDR, as node and
# gunicorn bind: the connections of a stack just stopped (TIME_WAIT) do not count, a listener does.
check_port() {  # <port> <env var>
  if ! "$PYTHON" - "$1" <<'EOF'
import socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    sock.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
  then
    die "port $1 on 127.0.0.1 is already in use: stop what uses it, or choose another port, e.g. $2=$(( $1 + 100 )) make run"
  fi
}
check_port "$JS_HOST_PORT" JS_HOST_PORT
check_port "$JS_HOST_PROXY_PORT" JS_HOST_PROXY_PORT
check_port "$EXAMPLE_PORT" EXAMPLE_PORT

if [ -n "${JS_HOST_RUN_DIR:-}" ]; then
  RUN_DIR=$JS_HOST_RUN_DIR
  KEEP_RUN_DIR=1
  mkdir -p "$RUN_DIR"
else
  RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/js-host-run.XXXXXX")
  KEEP_RUN_DIR=0
fi

# Job control: every background job gets its own process group (pgid = its pid),
# so a stop signal reaches a child's whole tree and nothing else.
set -m
PIDS=()
NAMES=()

stop_all() {
  trap - INT TERM EXIT
  set +e
  local i pid
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
    pid=${PIDS[$i]}
    kill -0 "$pid" 2>/dev/null && { say "stopping ${NAMES[$i]} (pid $pid)"; kill -TERM -- "-$pid" 2>/dev/null; }
  done
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
    pid=${PIDS[$i]}
    for _ in $(seq 50); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  [ "$KEEP_RUN_DIR" = 1 ] || rm -rf "$RUN_DIR"
}

on_signal() {
  say "$1 received"
  stop_all
  exit 0
}
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM
trap 'stop_all' EXIT

start() {  # <name> <logfile> <command...>
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 </dev/null &
  PIDS+=($!)
  NAMES+=("$name")
  say "started $name (pid $!), log: $log"
}

# Poll a URL until it answers 200; fail with the end of the log if the process died.
wait_ready() {  # <name> <url> <logfile>
  local name=$1 url=$2 log=$3 pid=${PIDS[-1]}
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log" >&2
      die "$name exited during start-up (log: $log)"
    fi
    if "$PYTHON" - "$url" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as res:
    sys.exit(0 if res.status == 200 else 1)
EOF
    then
      say "$name is ready at $url"
      return 0
    fi
    sleep 0.1
  done
  tail -n 30 "$log" >&2
  die "$name did not answer at $url within 30 s (log: $log)"
}

# The host's config reads JS_HOST_PORT, so its reported status matches the port.
export JS_HOST_PORT NODE_NO_WARNINGS=1

start host "$RUN_DIR/host.log" node "$JS_HOST_BIN" example/host.config.js --port "$JS_HOST_PORT"
wait_ready host "http://127.0.0.1:$JS_HOST_PORT/status" "$RUN_DIR/host.log"

mkdir -p "$RUN_DIR/proxy-cache"
start proxy "$RUN_DIR/proxy.log" env \
  JS_HOST_PROXY_UPSTREAM="http://127.0.0.1:$JS_HOST_PORT" \
  JS_HOST_PROXY_CACHE="file://$RUN_DIR/proxy-cache" \
  JS_HOST_PROXY_BIND="127.0.0.1:$JS_HOST_PROXY_PORT" \
  JS_HOST_PROXY_WORKERS="${JS_HOST_PROXY_WORKERS:-2}" \
  "$PYTHON" -m gunicorn -c gunicorn.conf.py
wait_ready proxy "http://127.0.0.1:$JS_HOST_PROXY_PORT/status" "$RUN_DIR/proxy.log"

start example "$RUN_DIR/example.log" env \
  JS_HOST_URL_OVERRIDE="http://127.0.0.1:$JS_HOST_PROXY_PORT" \
  JS_HOST_BIN_PATH="$JS_HOST_BIN" \
  EXAMPLE_BIND="127.0.0.1:$EXAMPLE_PORT" EXAMPLE_WORKERS="$EXAMPLE_WORKERS" \
  "$PYTHON" -m gunicorn -c example/gunicorn.conf.py
wait_ready example "http://127.0.0.1:$EXAMPLE_PORT/health" "$RUN_DIR/example.log"

say "open http://127.0.0.1:$EXAMPLE_PORT/  (Ctrl-C stops everything; logs in $RUN_DIR)"

# Wait until a signal arrives or a child exits by itself (then stop the rest).
set +e
wait -n
code=$?
for i in "${!PIDS[@]}"; do
  kill -0 "${PIDS[$i]}" 2>/dev/null || say "${NAMES[$i]} exited (status $code); log: $RUN_DIR/${NAMES[$i]}.log"
done
[ "$KEEP_RUN_DIR" = 1 ] || tail -n 20 "$RUN_DIR"/*.log >&2
exit 1
