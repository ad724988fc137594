'use strict';

// The settings of a pool of workers (pool.js), read from a config and the
// CLI's --workers, each checked with a ConfigError that names the value:
//   workers            number of worker processes, or 'auto' (one per CPU);
//                      unset or 0: no pool, the single-process host of js-host 0.11
//   maxCallsPerWorker  calls after which a worker is replaced (0: never)
//   maxWorkerMemory    a size ('512mb'): a worker whose RSS is over it after a
//                      call is replaced; also the worker's V8 heap limit, so
//                      that a call that exhausts it kills only its worker
//   maxQueue           calls that may wait for a worker; one more gets 503
//                      (default QUEUE_PER_WORKER per worker)

const os = require('node:os');
const { parseBytes } = require('./bytes');
const { ConfigError } = require('./config');

const QUEUE_PER_WORKER = 100;
const MB = 1024 * 1024;
// Below this a worker cannot even load Node's own modules.
const MIN_WORKER_MEMORY = 32 * MB;

/**
 * The number of workers asked for: `cli` (--workers) wins over the config's
 * `workers`, then `fallback` (the manager's hosts: 1). 0 or undefined: no pool.
 */
function workerCount(config, cli, fallback) {
  let value = cli;
  let where = '--workers';
  if (value === undefined) {
    value = config.workers;
    where = 'workers';
  }
  if (value === undefined || value === null) return fallback;
  if (value === 'auto') return os.availableParallelism();
  if (!Number.isInteger(value) || value < 0) {
    throw new ConfigError(`${where} must be a number of worker processes or "auto" (0: no pool), not ${JSON.stringify(value)}`);
  }
  return value;
}

/** The pool's settings for `size` workers, from `config`. */
function poolSettings(config, size) {
  const maxCallsPerWorker = config.maxCallsPerWorker === undefined ? 0 : config.maxCallsPerWorker;
  if (!Number.isInteger(maxCallsPerWorker) || maxCallsPerWorker < 0) {
    throw new ConfigError(`maxCallsPerWorker must be a number of calls (0: no limit), not ${JSON.stringify(maxCallsPerWorker)}`);
  }
  let maxWorkerMemory = 0;
  if (config.maxWorkerMemory !== undefined) {
    maxWorkerMemory = parseBytes(config.maxWorkerMemory);
    if (maxWorkerMemory === null || maxWorkerMemory < MIN_WORKER_MEMORY) {
      throw new ConfigError(
        `maxWorkerMemory must be a size of at least 32mb, such as '512mb', not ${JSON.stringify(config.maxWorkerMemory)}`,
      );
    }
  }
  const maxQueue = config.maxQueue === undefined ? QUEUE_PER_WORKER * size : config.maxQueue;
  if (!Number.isInteger(maxQueue) || maxQueue < 0) {
    throw new ConfigError(`maxQueue must be a number of calls (0: none wait), not ${JSON.stringify(maxQueue)}`);
  }
  return {
    size,
    maxCallsPerWorker,
    maxWorkerMemory,
    // The V8 heap limit of a worker, in MB (--max-old-space-size).
    heapLimitMb: maxWorkerMemory === 0 ? 0 : Math.floor(maxWorkerMemory / MB),
    maxQueue,
  };
}

module.exports = { QUEUE_PER_WORKER, workerCount, poolSettings };
