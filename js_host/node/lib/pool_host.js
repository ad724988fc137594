'use strict';

// The host in pool mode (`workers: N`): the master process. It owns the port
// and answers as the single-process host does (host.js), with the same
// request parsing and limits (server.js), but runs no user function: each call
// goes, its body unparsed, to a worker of the pool (pool.js). It adds:
//   GET /health  -> 200 {"status": "ready", ...} once a worker is ready, else 503
//   /status      -> 0.11's shape, the config as the serving workers loaded it,
//                   plus "workers": {size, ready, busy, queue, restarts, loadedAt, codeVersion}
//   503 + Retry-After when maxQueue calls already wait for a worker
//   GET /metrics -> also the queue and the workers (host_metrics.js)
//   POST /batch: each job dispatched to the pool like a single call (batch_pool.js)
// Every answer carries the code version of the worker that made it (or of the
// newest ready workers, for the master's own answers).

const { maxBatchJobsOf } = require('./batch');
const { runInPool } = require('./batch_pool');
const { BodyReader } = require('./body_reader');
const { functionTimeoutOf, routeHost, sendMetrics, sendStatusWithErrors } = require('./host');
const { HostMetrics } = require('./host_metrics');
const { lastErrorMessagesOf } = require('./last_errors');
const { Pool } = require('./pool');
const { poolSettings } = require('./pool_settings');
const { BaseServer, JSON_TYPE, TEXT } = require('./server');
const version = require('./version');

// Seconds a client is asked to wait when the queue is full.
const RETRY_AFTER_S = '1';
// On close, calls in flight may take their functionTimeout and this much more.
const CLOSE_GRACE_MS = 2000;

/** A call read by the master: its body goes to a worker as it came. */
class PoolCall extends BodyReader {
  constructor(host, req, res, name) {
    super(host, req, res);
    this.host = host;
    this.name = name;
    this.body = '';
    this.requestId = res.jsHostRequestId;
    this.id = 0;
    this.worker = null;
    this.timer = undefined;
  }

  acceptBody(body) {
    if (body.length > 0) this.body = body.toString('utf8');
    if (!this.host.pool.dispatch(this)) this.host.sendBusy(this);
    return false;
  }

  deliver(status, body, worker) {
    this.host.sendAnswer(this, status, body, worker);
  }
}

class PoolHost extends BaseServer {
  static defaults = {
    functions: null,
    ...BaseServer.defaults,
  };

  /**
   * @param {object} config the user's config (loaded here only for the settings: the workers run it)
   * @param {object} options
   * @param {string} options.configFile the file every worker loads
   * @param {number} options.workers the number of workers
   * @param {string|null} [options.logfile] named in the errors of crashed calls
   * @param {boolean} [options.sourceMaps] the workers' default for the config's sourceMaps (config.js)
   * @param {Function} [options.onFatal] called with an Error when no worker can start any more
   */
  constructor(config, options) {
    super(config, options);
    this.name = 'Host';
    this.functionTimeout = functionTimeoutOf(this.config);
    this.maxBatchJobs = maxBatchJobsOf(this.config);
    this.retryAfter = RETRY_AFTER_S;
    this.settings = poolSettings(this.config, options.workers);
    this.configFile = options.configFile;
    this.logfile = options.logfile || null;
    this.sourceMaps = options.sourceMaps === true;
    this.onFatal = options.onFatal || (() => {});
    this.pool = null; // made once listening: the workers get the real port
    // A name is a function's once the serving workers have it (before: any name is the client's).
    const isFunction = (name) => this.pool !== null && this.pool.current !== null && this.pool.current.names.has(name);
    this.metrics = new HostMetrics({ pool: () => this.pool, isFunction, errorMessages: lastErrorMessagesOf(this.config) });
  }

  /** The user's modules the serving workers loaded, with their mtimes (see code_version.js). */
  get loadedFiles() {
    return this.pool !== null && this.pool.current !== null ? this.pool.current.report.loadedFiles : undefined;
  }

  get codeVersion() {
    return this.pool !== null && this.pool.current !== null ? this.pool.current.codeVersion : undefined;
  }

  getStatus() {
    const current = this.pool === null ? null : this.pool.current;
    // The config as the serving workers see it (extendHost's functions
    // included), with the port the master listens on.
    const config = current === null ? this.serializableConfig() : { ...current.report.config, port: this.config.port };
    return {
      type: this.name,
      version: this.protocolVersion,
      config,
      packageVersion: version,
      codeVersion: current === null ? null : current.codeVersion,
      workers: this.pool === null ? null : this.pool.stats(),
    };
  }

  // Not cached: the workers section changes with every call.
  statusJson() {
    return JSON.stringify(this.getStatus());
  }

  /** Listen, then start the workers; `callback(err)` once one is ready (err.workerStart: none could). */
  listen(callback) {
    this.metrics.start();
    super.listen((err) => {
      if (err) {
        callback(err);
        return;
      }
      this.pool = new Pool({
        configFile: this.configFile,
        port: this.config.port,
        settings: this.settings,
        functionTimeout: this.functionTimeout,
        logger: this.logger,
        logfile: this.logfile,
        sourceMaps: this.sourceMaps,
        onFatal: this.onFatal,
      });
      this.pool.start((startError) => {
        if (startError) startError.workerStart = true;
        callback(startError || null);
      });
    });
  }

  /** Load the config again in new workers, one by one; `callback(err)` when done. */
  reload(callback) {
    if (this.pool === null || this.closing) {
      callback(new Error('the host is not serving'));
      return;
    }
    this.pool.reload(callback);
  }

  /** Stop accepting, let the calls in flight finish (bounded), then stop the workers. */
  close(callback) {
    if (this.closing) return;
    this.metrics.stop();
    const bound = setTimeout(() => this.server.closeAllConnections(), this.functionTimeout + CLOSE_GRACE_MS);
    super.close(() => {
      clearTimeout(bound);
      if (this.pool === null) callback();
      else this.pool.stop(callback);
    });
  }

  route(req, res) {
    routeHost(this, req, res);
  }

  /** `name`, or undefined (404) when the serving workers do not have it. */
  findFunction(name) {
    // Before the first worker is ready the names are not known: its worker answers 404.
    const current = this.pool === null ? null : this.pool.current;
    return current !== null && !current.names.has(name) ? undefined : name;
  }

  startCall(req, res, name) {
    this.readJson(req, new PoolCall(this, req, res, name));
  }

  sendStatus(req, res) {
    sendStatusWithErrors(this, req, res);
  }

  sendMetrics(req, res) {
    sendMetrics(this, req, res);
  }

  sendHealth(req, res) {
    const ready = this.pool === null ? 0 : this.pool.readyCount();
    const status = this.closing ? 'stopping' : ready > 0 ? 'ready' : 'starting';
    const body = { status, workers: { size: this.settings.size, ready } };
    this.send(req, res, status === 'ready' ? 200 : 503, JSON.stringify(body), JSON_TYPE);
  }

  /** Run the jobs of a POST /batch on the pool (see batch_pool.js). */
  runJobs(batch, jobs) {
    runInPool(this, batch, jobs);
  }

  /** The Cache-Control (200s only) and code version of an answer of function `name` made by `worker`. */
  answerHeaders(name, status, worker) {
    let cacheControl;
    let codeVersion = this.codeVersion;
    if (worker !== null && worker.report !== null) {
      codeVersion = worker.report.codeVersion;
      const headers = worker.report.cacheControl;
      if (status === 200 && Object.prototype.hasOwnProperty.call(headers, name)) cacheControl = headers[name];
    }
    return { cacheControl, codeVersion };
  }

  sendAnswer(call, status, body, worker) {
    const { cacheControl, codeVersion } = this.answerHeaders(call.name, status, worker);
    if (worker !== null) call.res.jsHostWorker = worker.pid;
    this.send(call.req, call.res, status, body, TEXT, cacheControl, codeVersion);
  }

  /** Why a call of `name` gets 503: maxQueue calls already wait for a worker. */
  busyMessage(name) {
    return (
      `Service unavailable: all ${this.settings.size} workers are busy and ${this.settings.maxQueue} calls ` +
      `already wait (maxQueue); function "${name}" was not run. Retry later, or raise workers or maxQueue.`
    );
  }

  /** 503 with Retry-After: maxQueue calls already wait for a worker. */
  sendBusy(call) {
    call.res.setHeader('Retry-After', RETRY_AFTER_S);
    this.send(call.req, call.res, 503, this.busyMessage(call.name));
  }
}

module.exports = { PoolHost };
