'use strict';

// POST /batch: many function calls in one request (a page's renders in one
// round trip). The body:
//   {"jobs": [{"function": "<name>", "hash": "<sha1 hex>", "body": "<the call's JSON body, as a string>"}, ...]}
// The answer, 200 whenever the batch itself is well formed, one result per job in
// the jobs' order, each what POST /function/<name> would have answered:
//   {"results": [{"status": 200, "headers": {"cache-control": ..., "js-host-code-version": ...}, "body": "..."}, ...]}
// A failing job (500, 504, 404, 400, 503) fails only its own result. Batch-level
// errors: 400 (not JSON, no jobs list, a malformed job, more than maxBatchJobs jobs),
// 413 over requestDataLimit (the whole batch's body, read as a single call's).
//
// The jobs run concurrently: in one process (host.js) every job starts at once,
// as concurrent requests would; on a pool (pool_host.js) each job is dispatched
// like a single call, at most as many batch jobs at once (over all batches) as there
// are workers (batch_pool.js), so that a batch uses every worker without filling the
// queue other clients wait in. Once a batch's client has closed the connection before
// its answer, none of its jobs not yet started is started.

const { performance } = require('node:perf_hooks');
const { BadBody, BodyReader, parseObject } = require('./body_reader');
const { FunctionCall } = require('./call');
const { ConfigError } = require('./config');
const { JSON_TYPE, unknownFunction } = require('./server');

const BATCH_PATH = '/batch';
const DEFAULT_MAX_BATCH_JOBS = 100;
// A job's function name, at most: a single call's name is bounded by the URL (Node's header
// limit, 16 KiB), a batch's only by the body limit; no function has a longer name, and a
// long one costs memory in every log line, 404 answer and metrics label it reaches.
const MAX_FUNCTION_NAME = 256;

/** config.maxBatchJobs (default 100), or a ConfigError. */
function maxBatchJobsOf(config) {
  const { maxBatchJobs = DEFAULT_MAX_BATCH_JOBS } = config;
  if (!Number.isInteger(maxBatchJobs) || maxBatchJobs < 1) {
    throw new ConfigError(`maxBatchJobs must be a positive number of jobs, not ${JSON.stringify(maxBatchJobs)}`);
  }
  return maxBatchJobs;
}

function isBatchUrl(url) {
  return url === BATCH_PATH || url.startsWith(`${BATCH_PATH}?`);
}

/** /batch, routed by host.js's routeHost() for both kinds of host. */
function routeBatch(server, req, res) {
  if (req.method !== 'POST') {
    server.send(req, res, 405, `Method not allowed: send batches with POST ${BATCH_PATH}`);
    return;
  }
  server.useRequestId(req, res); // one id for the batch: echoed, and in each job's log line
  server.readJson(req, new Batch(server, req, res));
}

/** The jobs of a parsed body, or a BadBody saying what is wrong. */
function parseJobs(data, maxBatchJobs) {
  const { jobs } = data;
  if (!Array.isArray(jobs)) {
    return new BadBody('Bad request: a batch is {"jobs": [{"function": "<name>", "hash": "<sha1>", "body": "<JSON text>"}, ...]}');
  }
  if (jobs.length > maxBatchJobs) {
    return new BadBody(
      `Bad request: the batch has ${jobs.length} jobs, more than the host's maxBatchJobs of ${maxBatchJobs}: ` +
        'split it into several batches (or raise maxBatchJobs in the config)',
    );
  }
  for (let i = 0; i < jobs.length; i++) {
    const job = jobs[i];
    const problem =
      job === null || typeof job !== 'object' || Array.isArray(job)
        ? 'is not an object'
        : typeof job.function !== 'string' || job.function === ''
          ? 'has no "function" name'
          : job.function.length > MAX_FUNCTION_NAME
            ? `has a "function" name longer than ${MAX_FUNCTION_NAME} characters`
          : job.body !== undefined && typeof job.body !== 'string'
            ? 'has a "body" that is not a string (it is the JSON text of the call\'s data)'
            : job.hash !== undefined && typeof job.hash !== 'string'
              ? 'has a "hash" that is not a string'
              : null;
    if (problem !== null) return new BadBody(`Bad request: job ${i} of the batch ${problem}`);
  }
  return jobs;
}

/** One POST /batch: its jobs, their results, the answer once every job has one. */
class Batch extends BodyReader {
  constructor(server, req, res) {
    super(server, req, res);
    this.results = null;
    this.pending = 0;
    // True once the connection has closed before the answer: the client has given up on
    // the batch, so its jobs not yet started are not started (it would read none of them).
    this.closed = false;
    res.on('close', () => {
      if (!res.writableFinished) this.closed = true;
    });
  }

  onBody(data) {
    const { server } = this;
    const jobs = parseJobs(data, server.maxBatchJobs);
    if (jobs instanceof BadBody) {
      server.send(this.req, this.res, 400, jobs.message);
      return;
    }
    this.results = new Array(jobs.length);
    this.pending = jobs.length;
    if (jobs.length === 0) {
      this.answer();
      return;
    }
    server.runJobs(this, jobs);
  }

  /** Job `index` has its answer: the single call's status, body and header fields. */
  finish(index, name, status, body, headers, started) {
    if (this.results[index] !== undefined) return;
    this.results[index] = { status, headers, body };
    const ms = performance.now() - started;
    // Logged and counted as the single call would be: a page's renders show either way.
    this.server.recordAnswer(`${BATCH_PATH} job ${index} ${name}`, name, status, ms, this.res.jsHostRequestId, null, body);
    this.pending -= 1;
    if (this.pending === 0) this.answer();
  }

  answer() {
    this.server.send(this.req, this.res, 200, JSON.stringify({ results: this.results }), JSON_TYPE);
  }
}

/** The header fields of a job's result (those the single call's answer carries). */
function resultHeaders(cacheControl, codeVersion, retryAfter) {
  const headers = {};
  if (cacheControl !== undefined) headers['cache-control'] = cacheControl;
  if (codeVersion !== undefined) headers['js-host-code-version'] = codeVersion;
  if (retryAfter !== undefined) headers['retry-after'] = retryAfter;
  return headers;
}

/** A job run in this process (host.js): a FunctionCall whose answer goes to its batch. */
class BatchCall extends FunctionCall {
  constructor(host, entry, batch, index) {
    super(host, entry, batch.req, null);
    // The batch's request id, in the lines the call logs itself ("calling", "completed").
    this.requestId = batch.res.jsHostRequestId;
    this.batch = batch;
    this.index = index;
    this.started = performance.now();
  }

  // As in a pool's worker: no req/res of its own (the batch's are not the call's).
  context() {
    return { name: this.entry.name, host: this.host };
  }

  answer(status, body, cacheControl) {
    const headers = resultHeaders(cacheControl, this.host.codeVersion);
    this.batch.finish(this.index, this.entry.name, status, body, headers, this.started);
  }
}

/** Run every job of `batch` in this process (the single-process host), all at once. */
function runInProcess(host, batch, jobs) {
  for (let i = 0; i < jobs.length; i++) {
    if (batch.closed) return; // its client has gone: start nothing more
    const { function: name, body = '' } = jobs[i];
    const started = performance.now();
    const entry = host.findFunction(name);
    if (entry === undefined) {
      batch.finish(i, name, 404, unknownFunction(name), resultHeaders(undefined, host.codeVersion), started);
      continue;
    }
    const data = parseObject(body);
    if (data instanceof BadBody) {
      batch.finish(i, name, 400, data.message, resultHeaders(undefined, host.codeVersion), started);
      continue;
    }
    new BatchCall(host, entry, batch, i).run(data);
  }
}

module.exports = { isBatchUrl, maxBatchJobsOf, resultHeaders, routeBatch, runInProcess };
