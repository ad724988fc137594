'use strict';

// A rolling reload of a pool's workers (pool.js; SIGHUP, or a manager's
// /host/restart): workers of a new generation load the config again and
// replace the running ones one at a time, each old one retired once its
// replacement is ready (it finishes its call first, so no call fails). A
// reload asked for during another one joins it, for the newer generation. A
// new worker that fails to start ends the reload (start_failures.js), and the
// old workers keep serving.

class RollingReload {
  /** @param {object} pool the Pool, its generation already the new one */
  constructor(pool) {
    this.pool = pool;
    this.generation = pool.generation;
    this.callbacks = []; // each called with null once all are replaced, or the Error that ended it
  }

  /** Whether `worker` is of the generation this reload starts. */
  has(worker) {
    return worker.generation === this.generation;
  }

  /** Replace the next worker of an older generation; done when none is left. */
  next() {
    const { pool, generation } = this;
    // One replacement at a time.
    for (const worker of pool.workers) {
      if (worker.generation === generation && worker.state === 'starting') return;
    }
    for (const worker of pool.workers) {
      if (worker.generation < generation && !worker.retiring && !worker.draining && worker.state === 'ready') {
        pool.retire(worker, 'reload', `generation ${generation}`, true);
        return;
      }
    }
    this.end(null);
  }

  /** The reload is over: `err` null once all are replaced, else why a new worker failed. */
  end(err) {
    const { pool } = this;
    pool.reloading = null;
    if (err === null) pool.logger.info(`Host: reload done (code version ${pool.current === null ? 'none' : pool.current.codeVersion})`);
    for (const callback of this.callbacks) callback(err);
  }
}

module.exports = { RollingReload };
