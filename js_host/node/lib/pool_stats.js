'use strict';

// What a pool (pool.js) tells of itself: the workers section of /status (also
// read by host_metrics.js for /metrics), and how many workers are ready to
// take calls (GET /health, and whether failed starts end the pool).

/** The workers section of /status: {size, ready, busy, queue, restarts, loadedAt, codeVersion}. */
function poolStats(pool) {
  let ready = 0;
  let busy = 0;
  for (const worker of pool.workers) {
    if (worker.state !== 'ready') continue;
    if (!worker.draining) ready += 1;
    if (worker.call !== null) busy += 1;
  }
  return {
    size: pool.settings.size,
    ready,
    busy,
    queue: pool.queue.length,
    restarts: { ...pool.restarts },
    loadedAt: pool.current === null ? null : pool.current.loadedAt,
    codeVersion: pool.current === null ? null : pool.current.codeVersion,
  };
}

/** The workers ready to take calls (those being retired once idle not counted). */
function readyCount(pool) {
  let ready = 0;
  for (const worker of pool.workers) if (worker.state === 'ready' && !worker.draining) ready += 1;
  return ready;
}

module.exports = { poolStats, readyCount };
