'use strict';

// What a host reports about itself, for both kinds of host: GET /metrics (the names are
// the project's contract, see README "Metrics and logs") and the last errors shown in
// /status?errors (what an entry keeps: last_errors.js). Calls are counted where their
// answer is sent (server.js answeredCall(), or recordCall() from a route that answers
// several calls at once), so that every status is counted exactly once. With a pool
// (pool_host.js) the metrics also show its queue, its workers busy and idle, their
// restarts by cause and the heap each one reported.

const { monitorEventLoopDelay } = require('node:perf_hooks');
const { LAST_ERRORS, LastErrors } = require('./last_errors');
const { Registry } = require('./metrics');

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
// Names answered 404 counted under their own label, the others under OTHER_NAME: a
// client asking for made-up names must not grow the metrics without bound.
const MAX_UNKNOWN_NAMES = 100;
const OTHER_NAME = '(other)';
// An unknown name longer than this is counted as OTHER_NAME at once: the cap above counts
// names, and a batch job's name is bounded only by the body limit, so a few megabyte-long
// names would otherwise make the host's memory and /metrics grow by megabytes each.
const MAX_UNKNOWN_NAME_LENGTH = 100;
// The event-loop delay is sampled at this interval; Node's histogram holds the whole
// interval between two samples, from which the interval itself is taken off.
const LOOP_RESOLUTION_MS = 10;
// Its quantiles are of a window that a scrape starts again once it is this old.
const LOOP_WINDOW_MS = 60000;

class HostMetrics {
  /**
   * @param {object} [options]
   * @param {Function} [options.pool] returns the host's Pool (or null before it starts):
   *   its queue and workers are shown too
   * @param {Function} [options.isFunction] whether the host has a function of that name
   *   now; a name it has not (a client's, made up) takes one of the MAX_UNKNOWN_NAMES
   *   labels whatever the answer (404, or a pool's 413 or 503 before its workers are
   *   ready). Without it, only a 404's name does.
   * @param {boolean} [options.errorMessages] lastErrors keep each error's first line
   *   (the config's lastErrorMessages, last_errors.js)
   */
  constructor({ pool, isFunction = undefined, errorMessages = false } = {}) {
    this.isFunction = isFunction;
    const registry = new Registry();
    this.registry = registry;
    this.calls = registry.counter('js_host_calls_total', 'Function calls answered, by function and HTTP status', [
      'function',
      'status',
    ]);
    this.durations = registry.histogram(
      'js_host_call_duration_seconds',
      'Time from the request of a call to its answer, by function (404s left out)',
      ['function'],
      DURATION_BUCKETS,
    );
    if (pool !== undefined) this.addPool(pool);
    this.loopDelay = registry.gauge(
      'js_host_event_loop_delay_seconds',
      "Delay of the host process's event loop (a pool's master), quantiles over the last minute at most",
      ['quantile'],
    );
    registry.onCollect(() => this.collectLoopDelay());
    // name -> {label, calls: {status: series}, duration: series}: a call's count is two
    // property lookups, no label text built.
    this.functions = new Map();
    this.unknownNames = 0;
    this.errors = new LastErrors({ messages: errorMessages });
    this.monitor = null;
    this.windowStart = 0;
  }

  /** The last 5xx answers, oldest first: the "lastErrors" of /status?errors. */
  get lastErrors() {
    return this.errors.entries;
  }

  addPool(getPool) {
    const { registry } = this;
    const queue = registry.gauge('js_host_queue_length', 'Calls waiting for a worker');
    const workers = registry.gauge('js_host_workers', 'Ready workers running a call (busy) or waiting for one (idle)', ['state']);
    const restarts = registry.counter(
      'js_host_worker_restarts_total',
      'Workers replaced, by cause (as in /status workers.restarts)',
      ['cause'],
    );
    const heap = registry.gauge('js_host_worker_heap_used_bytes', 'V8 heap used, as each worker last reported it', ['worker']);
    registry.onCollect(() => {
      const pool = getPool();
      heap.reset();
      if (pool === null) {
        queue.set([], 0);
        workers.set(['busy'], 0);
        workers.set(['idle'], 0);
        return;
      }
      const stats = pool.stats();
      queue.set([], stats.queue);
      let busy = 0;
      let idle = 0;
      for (const worker of pool.workers) {
        if (worker.state === 'ready') {
          if (worker.call !== null) busy += 1;
          else if (!worker.draining) idle += 1;
        }
        if (worker.heapUsed !== null && worker.state !== 'gone') heap.set([String(worker.pid)], worker.heapUsed);
      }
      workers.set(['busy'], busy);
      workers.set(['idle'], idle);
      for (const cause of Object.keys(stats.restarts)) restarts.set([cause], stats.restarts[cause]);
    });
  }

  /** Start measuring the event loop's delay (once the host listens). */
  start() {
    if (this.monitor !== null) return;
    this.monitor = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.monitor.enable();
    this.windowStart = Date.now();
  }

  stop() {
    if (this.monitor !== null) this.monitor.disable();
  }

  /**
   * Count one answered call of `name` with `status`, `seconds` after its request came;
   * a 5xx (its answer `body`, its `requestId`) is kept in lastErrors.
   */
  recordCall(name, status, seconds, body, requestId) {
    const entry = this.functions.get(name) || this.addFunction(name, status);
    let series = entry.calls[status];
    if (series === undefined) {
      series = this.calls.get([entry.label, String(status)]);
      entry.calls[status] = series;
    }
    series.value += 1;
    if (status !== 404) {
      if (entry.duration === null) entry.duration = this.durations.get([entry.label]);
      this.durations.observeIn(entry.duration, seconds);
    }
    if (status >= 500) this.errors.add(name, status, body, requestId);
  }

  addFunction(name, status) {
    const known = this.isFunction === undefined ? status !== 404 : status !== 404 && this.isFunction(name);
    if (!known) {
      if (this.unknownNames >= MAX_UNKNOWN_NAMES || name.length > MAX_UNKNOWN_NAME_LENGTH) return this.functions.get(OTHER_NAME) || this.newEntry(OTHER_NAME);
      this.unknownNames += 1;
    }
    return this.newEntry(name);
  }

  newEntry(name) {
    const entry = { label: name, calls: Object.create(null), duration: null };
    this.functions.set(name, entry);
    return entry;
  }

  collectLoopDelay() {
    const { monitor } = this;
    if (monitor === null || monitor.count === 0) {
      this.loopDelay.set(['0.5'], NaN);
      this.loopDelay.set(['0.99'], NaN);
      return;
    }
    const resolutionNs = LOOP_RESOLUTION_MS * 1e6;
    this.loopDelay.set(['0.5'], Math.max(0, monitor.percentile(50) - resolutionNs) / 1e9);
    this.loopDelay.set(['0.99'], Math.max(0, monitor.percentile(99) - resolutionNs) / 1e9);
    const now = Date.now();
    if (now - this.windowStart >= LOOP_WINDOW_MS) {
      monitor.reset();
      this.windowStart = now;
    }
  }

  /** The text of GET /metrics. */
  render() {
    return this.registry.render();
  }
}

module.exports = { HostMetrics, DURATION_BUCKETS, LAST_ERRORS, MAX_UNKNOWN_NAMES, OTHER_NAME };
