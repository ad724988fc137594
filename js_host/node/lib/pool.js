'use strict';

// The master's pool of workers (worker_process.js): which worker runs which
// call, the bounded queue of calls waiting for one (call_queue.js), the
// deadline of each call, and the life cycle of the workers:
// - one call at a time per worker: a call that must be stopped (its deadline)
//   is stopped by killing its worker, and takes no other call with it;
// - a worker that dies (crash, exit, out of memory, killed at a deadline)
//   fails only its call in flight, and is replaced;
// - a worker to retire (maxCallsPerWorker, maxWorkerMemory, a reload) keeps
//   serving until its replacement is ready, then is stopped once idle: no call
//   waits for a start-up because of it;
// - a reload replaces the workers one by one with workers of a new
//   generation (they load the config again); a new worker that fails to start
//   ends the reload, and the old ones keep serving (pool_reload.js);
// - workers that keep failing to start while none is ready end the pool
//   (`onFatal`), rather than a loop of start-ups (start_failures.js).
// Its log lines and words for a death: pool_log.js; what it tells of itself: pool_stats.js.

const { CallQueue } = require('./call_queue');
const { causeText, describeDeath, fieldsOf, writeWorkerLine } = require('./pool_log');
const { poolStats, readyCount } = require('./pool_stats');
const { RollingReload } = require('./pool_reload');
const { MAX_START_FAILURES, StartFailures } = require('./start_failures');
const { WorkerProcess } = require('./worker_process');

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
    this.settings = settings;
    this.functionTimeout = functionTimeout;
    this.logger = logger;
    this.logfile = logfile;
    this.onFatal = onFatal;
    // What every worker is forked with (spawn() adds its generation).
    this.workerOptions = { configFile, port, heapLimitMb: settings.heapLimitMb, logFields: logger.wantsFields, sourceMaps };
    this.workers = new Set();
    this.idle = []; // ready workers without a call (the last one used first: it is warm)
    this.queue = new CallQueue();
    this.generation = 1;
    // The code of the newest ready worker: {generation, report, names, codeVersion, loadedAt}.
    this.current = null;
    this.restarts = {};
    this.startFailures = new StartFailures(this);
    this.nextCallId = 0;
    this.reloading = null; // the RollingReload under way
    this.stopping = false;
    this.stopCallbacks = null;
    this.startCallback = null;
  }

  /** Start the workers; `callback(err)` once one is ready, or with the error that ends the pool. */
  start(callback) {
    this.startCallback = callback;
    for (let i = 0; i < this.settings.size; i++) this.spawn(null);
  }

  /** The start's callback, called once (false when it was already). */
  started(err) {
    if (this.startCallback === null) return false;
    const callback = this.startCallback;
    this.startCallback = null;
    callback(err);
    return true;
  }

  spawn(replaces) {
    const worker = new WorkerProcess(this, { ...this.workerOptions, generation: this.generation });
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
    if (this.queue.length >= this.settings.maxQueue) return false;
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
    const call = this.queue.shift();
    if (call !== undefined) this.run(worker, call);
    else this.idle.push(worker);
  }

  onReady(worker) {
    this.startFailures.reset();
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
    this.logger.info(`Host: worker ${worker.pid} ready (code version ${worker.report.codeVersion})`, fieldsOf(this.logger, worker, null));
    if (worker.replaces !== null) this.drain(worker.replaces);
    this.started(null);
    if (this.stopping) {
      worker.stop();
      return;
    }
    this.next(worker);
    if (this.reloading !== null && this.reloading.has(worker)) this.reloading.next();
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
    writeWorkerLine(this.logger, worker, level, message, fields);
  }

  onCrashReport(worker, cause, stack) {
    const what = worker.call === null ? '' : ` while running function "${worker.call.name}"`;
    this.logger.error(`Host: worker ${worker.pid} ${causeText(cause)}${what}: ${stack}`, fieldsOf(this.logger, worker));
    worker.crashMessage = String(stack).split('\n')[0];
  }

  /**
   * Start a replacement for `worker`; it serves until the replacement is ready.
   * Recycling waits after a failed start (the worker is retired after a later
   * call); a reload, asked for, does not.
   */
  retire(worker, cause, why, now = false) {
    if (!now && !this.startFailures.mayReplace()) return;
    worker.retiring = true;
    this.count(cause);
    this.logger.info(`Host: replacing worker ${worker.pid} (${cause}: ${why})`, fieldsOf(this.logger, worker, null));
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
      this.startFailures.onFailure(worker);
      return;
    }
    const expected = worker.cause === 'stopped';
    if (!expected) {
      this.count(worker.cause);
      const detail = worker.cause === 'exit' || worker.cause === 'signal' ? ` (${worker.detail})` : '';
      this.logger.error(`Host: worker ${worker.pid} ${causeText(worker.cause)}${detail}; starting another`, fieldsOf(this.logger, worker));
      if (worker.call !== null && worker.undelivered === worker.call) this.rerun(worker);
      else this.failCall(worker, describeDeath(worker, this.settings.maxWorkerMemory, this.logfile));
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
    if (other !== undefined) this.run(other, call);
    else this.queue.unshift(call);
  }

  /** The 500 of the call `worker` was running when it died. */
  failCall(worker, reason) {
    const call = worker.call;
    if (call === null) return;
    worker.call = null;
    if (call.timer !== undefined) clearTimeout(call.timer);
    call.deliver(500, `Function "${call.name}" failed: ${reason}`, worker);
  }

  /** The workers ready to take calls. */
  readyCount() {
    return readyCount(this);
  }

  /**
   * Load the config again in new workers, replacing the running ones one by
   * one; `callback(err)` once all are replaced, or the first new one failed.
   */
  reload(callback) {
    this.generation += 1;
    if (this.reloading === null) this.reloading = new RollingReload(this);
    this.reloading.generation = this.generation;
    this.reloading.callbacks.push(callback);
    this.logger.info(`Host: reloading ${this.workerOptions.configFile} (worker generation ${this.generation})`);
    this.reloading.next();
  }

  /** The workers section of /status (pool_stats.js). */
  stats() {
    return poolStats(this);
  }

  /** Stop every worker (calls still queued get 503 first); `callback` once all exited. */
  stop(callback) {
    this.stopping = true;
    for (const call of this.queue.takeAll()) {
      call.deliver(503, `Function "${call.name}" was not run: the host is stopping`, null);
    }
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
  pool.logger.error(`Host: ${message}`, fieldsOf(pool.logger, worker, call, 504));
  call.deliver(504, `Gateway timeout: ${message}`, worker);
  worker.kill('timeout');
}

module.exports = { Pool, MAX_START_FAILURES };
