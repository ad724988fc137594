'use strict';

// Workers of a pool (pool.js) that fail to start: the delay before the next
// start, doubled after each failure in a row; no replacement for recycling
// meanwhile (the old worker keeps serving); the end of a reload whose new
// worker failed (the old ones keep serving); and the end of the pool when
// workers keep failing to start while none is ready, rather than a loop of
// start-ups.

// Start failures in a row, with no worker ready, that end the pool.
const MAX_START_FAILURES = 3;
// Delay before starting a worker again after a failed start, doubled after
// each failure in a row, up to RESTART_DELAY_MAX_MS.
const RESTART_DELAY_MS = 500;
const RESTART_DELAY_MAX_MS = 30000;

class StartFailures {
  /** @param {object} pool the Pool whose workers' starts these are */
  constructor(pool) {
    this.pool = pool;
    this.inARow = 0;
    this.noStartBefore = 0;
  }

  /** A worker is ready: the next failure is the first in a row again. */
  reset() {
    this.inARow = 0;
  }

  /** Whether a replacement for recycling may start now (not while backing off). */
  mayReplace() {
    return Date.now() >= this.noStartBefore;
  }

  /** `worker` ended before it was ready: log why, then start another, end the reload or end the pool. */
  onFailure(worker) {
    const { pool } = this;
    const reason = worker.startFailure();
    pool.count('startFailure');
    this.inARow += 1;
    const delay = Math.min(RESTART_DELAY_MS * 2 ** (this.inARow - 1), RESTART_DELAY_MAX_MS);
    // No replacement for recycling starts before then (the old worker keeps serving).
    this.noStartBefore = Date.now() + delay;
    const old = worker.replaces;
    if (old !== null && old.state !== 'gone') old.retiring = false;
    // A worker that replaced nobody, or one that died meanwhile, leaves a place to fill.
    const refill = old === null || old.state === 'gone';
    if (pool.reloading !== null && pool.reloading.has(worker)) {
      pool.logger.error(`Host: reload failed, the workers keep serving the code they loaded: ${reason}`);
      pool.reloading.end(new Error(reason));
    } else if (pool.readyCount() === 0 && this.inARow >= MAX_START_FAILURES) {
      const err = new Error(reason);
      pool.logger.error(`Host: ${this.inARow} workers in a row failed to start, and none is ready: ${reason}`);
      if (!pool.started(err)) pool.onFatal(err);
      return;
    } else {
      pool.logger.error(`Host: a worker failed to start${refill ? ` (trying again in ${delay}ms)` : ''}: ${reason}`);
    }
    if (refill) {
      setTimeout(() => {
        if (!pool.stopping) pool.spawn(null);
      }, delay);
    }
  }
}

module.exports = { MAX_START_FAILURES, StartFailures };
