'use strict';

// The master's pool of workers (worker_process.js): which worker runs which
// call, the bounded queue of calls waiting for one, the deadline of each call,
// and the life cycle of the workers:
// - one call at a time per worker: a call that must be stopped (its deadline)
//   is stopped by killing its worker, and takes no other call with it;
// - a worker that dies (crash, exit, out of memory, killed at a deadline)
//   fails only its call in flight, and is replaced;
// - a worker to retire (maxCallsPerWorker, maxWorkerMemory, a reload) keeps
//   serving until its replacement is ready, then is stopped once idle: no call
//   waits for a start-up because of it;
// - a reload replaces the workers one by one with workers of a new
//   generation (they load the config again); a new worker that fails to start
//   ends the reload, and the old ones keep serving;
// - workers that keep failing to start while none is ready end the pool
//   (`onFatal`), rather than a loop of start-ups.

const { WorkerProcess } = require('./worker_process');

// Start failures in a row, with no worker ready, that end the pool.
const MAX_START_FAILURES = 3;
// Delay before starting a worker again after a failed start, doubled after
// each failure in a row, up to RESTART_DELAY_MAX_MS.
const RESTART_DELAY_MS = 500;
const RESTART_DELAY_MAX_MS = 30000;
// Calls taken from the queue before its array is compacted.
const COMPACT_QUEUE_AT = 1024;

const CAUSES = {
  timeout: 'was stopped at the functionTimeout',
  uncaughtException: 'threw an uncaught exception',
  unhandledRejection: 'left a promise rejection unhandled',
  exit: 'exited',
  outOfMemory: 'ran out of memory',
  signal: 'was killed',
  disconnected: 'closed its channel to the host',
};

class Pool {
  /**
   * @param {object} options
   * @param {string} options.configFile loaded by every worker
   * @param {number} options.port the host's, passed to the workers' config
   * @param {object} options.settings from pool_settings.poolSettings()
   * @param {number} options.functionTimeout ms (0: no deadline)
   * @param {object} options.logger the host's
   * @param {string|null} options.logfile where the host logs (named in error messages)
   * @param {Function} options.onFatal called with an Error when the pool cannot run
   * @param {boolean} [options.sourceMaps] the workers' default for the config's sourceMaps
   */
  constructor({ configFile, port, settings, functionTimeout, logger, logfile, onFatal, sourceMaps = false }) {
    this.configFile = configFile;
    this.port = port;
    this.settings = settings;
    this.functionTimeout = functionTimeout;
    this.logger = logger;
    this.logfile = logfile;
    this.onFatal = onFatal;
    this.sourceMaps = sourceMaps;
    this.workers = new Set();
    this.idle = []; // ready workers without a call (the last one used first: it is warm)
    this.queue = [];
    this.queueHead = 0;
    this.generation = 1;
    // The code of the newest ready worker: {generation, report, names, codeVersion, loadedAt}.
    this.current = null;
    this.restarts = {};
    this.startFailures = 0;
    this.noStartBefore = 0;
    this.nextCallId = 0;
    this.reloading = null; // {generation, callbacks}
    this.stopping = false;
    this.stopCallbacks = null;
    this.startCallback = null;
  }

  /** Start the workers; `callback(err)` once one is ready, or with the error that ends the pool. */
  start(callback) {
    this.startCallback = callback;
    for (let i = 0; i < this.settings.size; i++) this.spawn(null);
  }

  spawn(replaces) {
    const worker = new WorkerProcess(this, {
      configFile: this.configFile,
      port: this.port,
      generation: this.generation,
      heapLimitMb: this.settings.heapLimitMb,
      logFields: this.logger.wantsFields,
      sourceMaps: this.sourceMaps,
    });
    worker.replaces = replaces;
    this.workers.add(worker);
    return worker;
  }

  /** Run `call` ({name, body, deliver(status, body, worker)}) now or queued; false if the queue is full. */
  dispatch(call) {
    call.id = ++this.nextCallId;
    const worker = this.takeIdle();
    if (worker !== undefined) {
      this.run(worker, call);
      return true;
    }
    if (this.queue.length - this.queueHead >= this.settings.maxQueue) return false;
    this.queue.push(call);
    return true;
  }

  /** An idle worker (one whose channel closed since it became idle is skipped), or undefined. */
  takeIdle() {
    let worker = this.idle.pop();
    while (worker !== undefined && !worker.idle) worker = this.idle.pop();
    return worker;
  }

  run(worker, call) {
    call.worker = worker;
    if (this.functionTimeout > 0) call.timer = setTimeout(onDeadline, this.functionTimeout, this, call);
    worker.run(call);
  }

  /** `worker` is free: give it the next call waiting, else make it idle. */
  next(worker) {
    if (this.queueHead < this.queue.length) {
      const call = this.queue[this.queueHead];
      this.queue[this.queueHead] = undefined;
      this.queueHead += 1;
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      } else if (this.queueHead >= COMPACT_QUEUE_AT) {
        // A queue that never empties under load must not grow an array for ever.
        this.queue = this.queue.slice(this.queueHead);
        this.queueHead = 0;
      }
      this.run(worker, call);
    } else {
      this.idle.push(worker);
    }
  }

  onReady(worker) {
    this.startFailures = 0;
    if (this.current === null || worker.generation >= this.current.generation) {
      const { report } = worker;
      if (this.current === null || this.current.codeVersion !== report.codeVersion || this.current.generation !== worker.generation) {
        this.current = {
          generation: worker.generation,
          report,
          names: new Set(report.functions),
          codeVersion: report.codeVersion,
          loadedAt: new Date().toISOString(),
        };
      }
    }
    this.logger.info(`Host: worker ${worker.pid} ready (code version ${worker.report.codeVersion})`, this.fieldsOf(worker, null));
    if (worker.replaces !== null) this.drain(worker.replaces);
    if (this.startCallback !== null) {
      const callback = this.startCallback;
      this.startCallback = null;
      callback(null);
    }
    if (this.stopping) {
      worker.stop();
      return;
    }
    this.next(worker);
    if (this.reloading !== null && worker.generation === this.reloading.generation) this.reloadNext();
  }

  onAnswer(worker, id, status, body, rss) {
    const call = worker.call;
    if (call === null || call.id !== id) return; // answered at its deadline already
    worker.call = null;
    worker.calls += 1;
    if (call.timer !== undefined) clearTimeout(call.timer);
    call.deliver(status, body, worker);
    if (worker.state !== 'ready') return;
    if (!worker.retiring && !worker.draining) {
      const { maxCallsPerWorker, maxWorkerMemory } = this.settings;
      if (maxCallsPerWorker > 0 && worker.calls >= maxCallsPerWorker) {
        this.retire(worker, 'maxCallsPerWorker', `after ${worker.calls} calls`);
      } else if (maxWorkerMemory > 0 && rss > maxWorkerMemory) {
        this.retire(worker, 'maxWorkerMemory', `its RSS of ${Math.round(rss / 1048576)}MB is over maxWorkerMemory`);
      }
    }
    if (worker.draining) worker.stop();
    else this.next(worker);
  }

  /** A worker's log line: `fields` those of a call's line (JSON logs), or undefined. */
  onLog(worker, level, message, fields) {
    const write = level === 'error' || level === 'warn' ? level : 'info';
    if (!this.logger.wantsFields) {
      this.logger[write](message);
      return;
    }
    const withWorker = fields !== null && typeof fields === 'object' ? fields : {};
    withWorker.worker = worker.pid;
    this.logger[write](message, withWorker);
  }

  /** The fields of the JSON log lines about `worker` (and its call, when it runs one). */
  fieldsOf(worker, call = worker.call, status = undefined) {
    if (!this.logger.wantsFields) return undefined;
    if (call === null) return { worker: worker.pid };
    return { function: call.name, request_id: call.requestId === undefined ? null : call.requestId, status, worker: worker.pid };
  }

  onCrashReport(worker, cause, stack) {
    const what = worker.call === null ? '' : ` while running function "${worker.call.name}"`;
    this.logger.error(`Host: worker ${worker.pid} ${CAUSES[cause] || cause}${what}: ${stack}`, this.fieldsOf(worker));
    worker.crashMessage = String(stack).split('\n')[0];
  }

  /**
   * Start a replacement for `worker`; it serves until the replacement is ready.
   * Recycling waits after a failed start (the worker is retired after a later
   * call); a reload, asked for, does not.
   */
  retire(worker, cause, why, now = false) {
    if (!now && Date.now() < this.noStartBefore) return;
    worker.retiring = true;
    this.count(cause);
    this.logger.info(`Host: replacing worker ${worker.pid} (${cause}: ${why})`, this.fieldsOf(worker, null));
    this.spawn(worker);
  }

  /** `worker` takes no new call, and is stopped once idle. */
  drain(worker) {
    if (worker.state === 'gone') return;
    worker.draining = true;
    const index = this.idle.indexOf(worker);
    if (index !== -1) this.idle.splice(index, 1);
    if (worker.call === null && worker.state !== 'starting') worker.stop();
  }

  count(cause) {
    this.restarts[cause] = (this.restarts[cause] || 0) + 1;
  }

  onGone(worker, wasReady) {
    this.workers.delete(worker);
    const index = this.idle.indexOf(worker);
    if (index !== -1) this.idle.splice(index, 1);
    if (this.stopping) {
      this.failCall(worker, 'the host is stopping');
      this.checkStopped();
      return;
    }
    if (!wasReady) {
      this.onStartFailure(worker);
      return;
    }
    const expected = worker.cause === 'stopped';
    if (!expected) {
      this.count(worker.cause);
      const detail = worker.cause === 'exit' || worker.cause === 'signal' ? ` (${worker.detail})` : '';
      this.logger.error(`Host: worker ${worker.pid} ${CAUSES[worker.cause] || worker.cause}${detail}; starting another`, this.fieldsOf(worker));
      if (worker.call !== null && worker.undelivered === worker.call) this.rerun(worker);
      else this.failCall(worker, this.describeDeath(worker));
      // A worker being retired already has its replacement starting.
      if (!worker.retiring) this.spawn(null);
    }
  }

  /** The call sent to `worker` never reached it: first in line for another worker. */
  rerun(worker) {
    const call = worker.call;
    worker.call = null;
    if (call.timer !== undefined) clearTimeout(call.timer);
    const other = this.takeIdle();
    if (other !== undefined) {
      this.run(other, call);
    } else if (this.queueHead > 0) {
      this.queueHead -= 1;
      this.queue[this.queueHead] = call;
    } else {
      this.queue.unshift(call);
    }
  }

  /** The 500 of the call `worker` was running when it died. */
  failCall(worker, reason) {
    const call = worker.call;
    if (call === null) return;
    worker.call = null;
    if (call.timer !== undefined) clearTimeout(call.timer);
    call.deliver(500, `Function "${call.name}" failed: ${reason}`, worker);
  }

  describeDeath(worker) {
    let what = CAUSES[worker.cause] || worker.cause;
    if (worker.cause === 'exit') what += ` with ${worker.detail} (process.exit() in a function?)`;
    else if (worker.cause === 'signal') what += ` by ${worker.detail}`;
    else if (worker.cause === 'outOfMemory') what += ` (its heap limit is maxWorkerMemory, ${this.settings.maxWorkerMemory / 1048576}MB)`;
    if (worker.crashMessage) what += `: ${worker.crashMessage}`;
    const where = this.logfile ? `the host's logfile ${this.logfile}` : "the host's log";
    return `the worker running it ${what}. It was replaced; the details are in ${where}.`;
  }

  onStartFailure(worker) {
    const reason = worker.startFailure();
    this.count('startFailure');
    this.startFailures += 1;
    const delay = Math.min(RESTART_DELAY_MS * 2 ** (this.startFailures - 1), RESTART_DELAY_MAX_MS);
    // No replacement for recycling starts before then (the old worker keeps serving).
    this.noStartBefore = Date.now() + delay;
    const old = worker.replaces;
    if (old !== null && old.state !== 'gone') old.retiring = false;
    // A worker that replaced nobody, or one that died meanwhile, leaves a place to fill.
    const refill = old === null || old.state === 'gone';
    if (this.reloading !== null && worker.generation === this.reloading.generation) {
      this.logger.error(`Host: reload failed, the workers keep serving the code they loaded: ${reason}`);
      this.endReload(new Error(reason));
    } else if (this.readyCount() === 0 && this.startFailures >= MAX_START_FAILURES) {
      const err = new Error(reason);
      this.logger.error(`Host: ${this.startFailures} workers in a row failed to start, and none is ready: ${reason}`);
      if (this.startCallback !== null) {
        const callback = this.startCallback;
        this.startCallback = null;
        callback(err);
      } else {
        this.onFatal(err);
      }
      return;
    } else {
      this.logger.error(`Host: a worker failed to start${refill ? ` (trying again in ${delay}ms)` : ''}: ${reason}`);
    }
    if (refill) {
      setTimeout(() => {
        if (!this.stopping) this.spawn(null);
      }, delay);
    }
  }

  readyCount() {
    let ready = 0;
    for (const worker of this.workers) if (worker.state === 'ready' && !worker.draining) ready += 1;
    return ready;
  }

  /**
   * Load the config again in new workers, replacing the running ones one by
   * one; `callback(err)` once all are replaced, or the first new one failed.
   */
  reload(callback) {
    this.generation += 1;
    if (this.reloading === null) this.reloading = { generation: this.generation, callbacks: [] };
    this.reloading.generation = this.generation;
    this.reloading.callbacks.push(callback);
    this.logger.info(`Host: reloading ${this.configFile} (worker generation ${this.generation})`);
    this.reloadNext();
  }

  reloadNext() {
    const { generation } = this.reloading;
    // One replacement at a time.
    for (const worker of this.workers) {
      if (worker.generation === generation && worker.state === 'starting') return;
    }
    for (const worker of this.workers) {
      if (worker.generation < generation && !worker.retiring && !worker.draining && worker.state === 'ready') {
        this.retire(worker, 'reload', `generation ${generation}`, true);
        return;
      }
    }
    this.endReload(null);
  }

  endReload(err) {
    const { callbacks } = this.reloading;
    this.reloading = null;
    if (err === null) this.logger.info(`Host: reload done (code version ${this.current === null ? 'none' : this.current.codeVersion})`);
    for (const callback of callbacks) callback(err);
  }

  /** The workers section of /status. */
  stats() {
    let ready = 0;
    let busy = 0;
    for (const worker of this.workers) {
      if (worker.state !== 'ready') continue;
      if (!worker.draining) ready += 1;
      if (worker.call !== null) busy += 1;
    }
    return {
      size: this.settings.size,
      ready,
      busy,
      queue: this.queue.length - this.queueHead,
      restarts: { ...this.restarts },
      loadedAt: this.current === null ? null : this.current.loadedAt,
      codeVersion: this.current === null ? null : this.current.codeVersion,
    };
  }

  /** Stop every worker (calls still queued get 503 first); `callback` once all exited. */
  stop(callback) {
    this.stopping = true;
    while (this.queueHead < this.queue.length) {
      const call = this.queue[this.queueHead];
      this.queueHead += 1;
      call.deliver(503, `Function "${call.name}" was not run: the host is stopping`, null);
    }
    this.queue.length = 0;
    this.queueHead = 0;
    this.stopCallbacks = this.stopCallbacks || [];
    this.stopCallbacks.push(callback);
    for (const worker of this.workers) worker.stop();
    this.checkStopped();
  }

  checkStopped() {
    if (this.workers.size > 0 || this.stopCallbacks === null) return;
    const callbacks = this.stopCallbacks;
    this.stopCallbacks = [];
    for (const callback of callbacks) callback();
  }
}

// A call past its deadline: 504 now, and its worker killed (whatever it is
// doing) and replaced.
function onDeadline(pool, call) {
  const worker = call.worker;
  if (worker.call !== call) return;
  worker.call = null;
  const message =
    `Function "${call.name}" did not complete within the functionTimeout of ${pool.functionTimeout}ms ` +
    '(its worker was stopped and replaced)';
  pool.logger.error(`Host: ${message}`, pool.fieldsOf(worker, call, 504));
  call.deliver(504, `Gateway timeout: ${message}`, worker);
  worker.kill('timeout');
}

module.exports = { Pool, MAX_START_FAILURES };
