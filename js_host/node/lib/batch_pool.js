'use strict';

// The jobs of a POST /batch (batch.js) on a pool (pool_host.js): each job is
// dispatched like a single call (pool.dispatch()), at most as many batch jobs
// at once, over all the host's batches, as there are workers (BatchSlots), so
// that a batch uses every worker without filling the queue other clients wait
// in; each job's result is what the single call would have answered (404 for
// a name the serving workers lack, 503 when the queue is full). Once a batch's
// client has closed the connection, none of its jobs not yet started is started.

const { performance } = require('node:perf_hooks');
const { resultHeaders } = require('./batch');
const { unknownFunction } = require('./server');

/** A job on a pool, as pool.dispatch() takes a call: {name, body, deliver(status, body, worker)}. */
class PoolJob {
  constructor(runner, index, name, body) {
    this.runner = runner;
    this.index = index;
    this.name = name;
    this.body = body;
    // The batch's request id: the worker writes it in the call's log lines.
    this.requestId = runner.batch.res.jsHostRequestId;
    this.id = 0;
    this.worker = null;
    this.timer = undefined;
    this.started = performance.now();
  }

  deliver(status, body, worker) {
    const { host, batch } = this.runner;
    const { cacheControl, codeVersion } = host.answerHeaders(this.name, status, worker);
    batch.finish(this.index, this.name, status, body, resultHeaders(cacheControl, codeVersion), this.started);
    // Once the pool has freed this job's worker (it does so after deliver() returns): the next
    // job then takes it, or queues behind the calls already waiting, as a new call would.
    queueMicrotask(() => this.runner.jobDone());
  }
}

/**
 * The host-wide share of batch work on a pool: at most `size` (the number of workers) batch
 * jobs dispatched at once, over all batches, handed out round-robin to the batches waiting.
 * One batch alone still uses every worker; several batches share them and never hold more
 * than the workers, so the pool's queue (maxQueue) stays for single calls: a call arriving
 * while batches run queues, and takes the first worker a batch job frees (the pool serves its
 * queue before the batch's next job is dispatched). Without this, a few batches of slow jobs
 * kept every worker and every queue slot, and everyone else got 503s until they were done.
 */
class BatchSlots {
  constructor(host) {
    this.host = host;
    this.inFlight = 0;
    this.waiting = []; // runners with jobs left, in the order they get the next free slot
  }

  /** `runner` has jobs to dispatch: give it slots as they are free. */
  want(runner) {
    if (!runner.waiting) {
      runner.waiting = true;
      this.waiting.push(runner);
    }
    this.pump();
  }

  /** A batch job has its answer and its worker is free again. */
  release() {
    this.inFlight -= 1;
    this.pump();
  }

  pump() {
    const size = this.host.settings.size;
    while (this.inFlight < size && this.waiting.length > 0) {
      const runner = this.waiting.shift();
      runner.waiting = false;
      if (!runner.dispatchOne()) continue; // finished, or its client has gone: it drops out
      this.inFlight += 1;
      if (runner.hasMore()) {
        runner.waiting = true;
        this.waiting.push(runner); // behind the other batches: round-robin
      }
    }
  }
}

// One BatchSlots per pool host, made on its first batch (pool_host.js knows nothing of it).
const slotsOfHost = new WeakMap();

function slotsOf(host) {
  let slots = slotsOfHost.get(host);
  if (slots === undefined) {
    slots = new BatchSlots(host);
    slotsOfHost.set(host, slots);
  }
  return slots;
}

/** Feeds a batch's jobs to a pool as BatchSlots gives it room; stops once its client has gone. */
class PoolRunner {
  constructor(host, batch, jobs) {
    this.host = host;
    this.batch = batch;
    this.jobs = jobs;
    this.nextIndex = 0;
    this.waiting = false;
    this.slots = slotsOf(host);
  }

  start() {
    this.slots.want(this);
  }

  hasMore() {
    return !this.batch.closed && this.nextIndex < this.jobs.length;
  }

  /** Dispatch the next job that can run (answering those that cannot); false if none did. */
  dispatchOne() {
    while (this.hasMore()) {
      const index = this.nextIndex++;
      const { function: name, body = '' } = this.jobs[index];
      const job = new PoolJob(this, index, name, body);
      if (this.host.findFunction(name) === undefined) {
        const headers = resultHeaders(undefined, this.host.codeVersion);
        this.batch.finish(index, name, 404, unknownFunction(name), headers, job.started);
        continue; // the slot is still free: take the next job
      }
      if (!this.host.pool.dispatch(job)) {
        const headers = resultHeaders(undefined, this.host.codeVersion, this.host.retryAfter);
        this.batch.finish(index, name, 503, this.host.busyMessage(name), headers, job.started);
        continue;
      }
      return true;
    }
    return false;
  }

  /** A job of this batch has its answer (its worker is freed once deliver() returns). */
  jobDone() {
    this.slots.release();
    if (this.hasMore()) this.slots.want(this);
  }
}

/** Run every job of `batch` on the pool of `host` (pool_host.js). */
function runInPool(host, batch, jobs) {
  new PoolRunner(host, batch, jobs).start();
}

module.exports = { runInPool };
