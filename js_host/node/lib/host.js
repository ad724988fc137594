'use strict';

// The host: serves the functions of a host.config.js.
//   GET  /status          -> {"type": "Host", "version", "config": {...}}
//   POST /function/<name> -> 200 output | 500 error stack | 404 unknown name
//                            | 504 functionTimeout | 400 bad JSON | 413 too large
//   GET  /health          -> 200 {"status": "ready"} (a pool answers 503 until a worker is)
//   GET  /metrics         -> Prometheus text (host_metrics.js)
//   POST /batch           -> 200 {"results": [...]}: many calls in one request (batch.js)
// The pool's master (pool_host.js) answers the same, running the calls in workers.
// Every answer carries the version of the code (JS-Host-Code-Version, and
// "codeVersion" in /status): see code_version.js; a function's answers carry their
// request id (X-Request-Id, see request_id.js); /status?errors adds the "lastErrors".

const { isBatchUrl, maxBatchJobsOf, routeBatch, runInProcess } = require('./batch');
const { ConfigError } = require('./config');
const { FunctionCall } = require('./call');
const { codeVersion } = require('./code_version');
const { HostMetrics } = require('./host_metrics');
const { lastErrorMessagesOf } = require('./last_errors');
const { CONTENT_TYPE: METRICS_TYPE } = require('./metrics');
const { BaseServer, JSON_TYPE, unknownFunction } = require('./server');

const FUNCTION_PREFIX = '/function/';

class Host extends BaseServer {
  static defaults = {
    functions: null,
    ...BaseServer.defaults,
  };

  constructor(config, options) {
    super(config, options);
    // The config's modules are loaded by now (extendHost may load more: counted too, below).
    const { functions, cacheControl = {} } = this.config;
    const functionTimeout = functionTimeoutOf(this.config);
    if (cacheControl === null || typeof cacheControl !== 'object') {
      throw new ConfigError('cacheControl must be an object: {<function name>: "<Cache-Control value>"}');
    }
    this.functionTimeout = functionTimeout;
    this.cacheControl = cacheControl;
    this.maxBatchJobs = maxBatchJobsOf(this.config);
    // A Map: names such as "__proto__" or "toString" are never found by accident.
    this.functions = new Map();
    if (functions !== null && functions !== undefined) {
      if (typeof functions !== 'object') throw new ConfigError('functions must be an object of {name: function}');
      for (const name of Object.keys(functions)) this.addFunction(name, functions[name]);
    }
    if (typeof this.config.extendHost === 'function') {
      try {
        this.config.extendHost(this);
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        throw new ConfigError(`extendHost(host) failed: ${String(err && err.message).split('\n')[0]}`);
      }
    }
    this.codeVersion = options && options.codeVersion !== undefined ? options.codeVersion : codeVersion();
    this.metrics = new HostMetrics({
      isFunction: (name) => this.functions.has(name),
      errorMessages: lastErrorMessagesOf(this.config),
    });
  }

  getStatus() {
    return { ...super.getStatus(), codeVersion: this.codeVersion };
  }

  listen(callback) {
    this.metrics.start();
    super.listen(callback);
  }

  close(callback) {
    this.metrics.stop();
    super.close(callback);
  }

  sendStatus(req, res) {
    sendStatusWithErrors(this, req, res);
  }

  sendMetrics(req, res) {
    sendMetrics(this, req, res);
  }

  /** Add a function (also usable from config.extendHost(host)). */
  addFunction(name, fn) {
    if (typeof name !== 'string' || name === '') throw new ConfigError(`"${name}" is not a valid function name`);
    if (typeof fn !== 'function') throw new ConfigError(`Function handlers must be functions: "${name}" is ${typeof fn}`);
    if (this.functions.has(name)) {
      throw new ConfigError(`A function has already been defined with the name "${name}"`);
    }
    const header = Object.prototype.hasOwnProperty.call(this.cacheControl, name) ? this.cacheControl[name] : fn.cacheControl;
    const entry = { name, fn, cacheControl: typeof header === 'string' ? header : undefined };
    this.functions.set(name, entry);
    this.statusBody = null;
    return entry;
  }

  serializableConfig() {
    const config = super.serializableConfig();
    if (config.functions) config.functions = Array.from(this.functions.keys());
    return config;
  }

  route(req, res) {
    routeHost(this, req, res);
  }

  /** Ready once listening (a pool overrides this). */
  sendHealth(req, res) {
    this.sendJson(req, res, 200, { status: 'ready' });
  }

  /** The function `name` (its entry), or undefined: 404. */
  findFunction(name) {
    return this.functions.get(name);
  }

  /** Run a call of the function found by findFunction(). */
  startCall(req, res, entry) {
    this.readJson(req, new FunctionCall(this, entry, req, res));
  }

  /** Run the jobs of a POST /batch (see batch.js). */
  runJobs(batch, jobs) {
    runInProcess(this, batch, jobs);
  }
}

/** The function name in a /function/<name>[?query] URL, or null when malformed. */
function functionName(url) {
  const query = url.indexOf('?', FUNCTION_PREFIX.length);
  const name = query === -1 ? url.slice(FUNCTION_PREFIX.length) : url.slice(FUNCTION_PREFIX.length, query);
  if (!name.includes('%')) return name;
  try {
    return decodeURIComponent(name);
  } catch {
    return null;
  }
}

/** config.functionTimeout in ms (30000 if unset), or a ConfigError. */
function functionTimeoutOf(config) {
  const { functionTimeout = 30000 } = config;
  if (!Number.isFinite(functionTimeout) || functionTimeout < 0) {
    throw new ConfigError(`functionTimeout must be a number of milliseconds (0 disables it), not ${JSON.stringify(functionTimeout)}`);
  }
  return functionTimeout;
}

/**
 * A host's routes, with workers or without: /function/<name> (server.findFunction,
 * then server.startCall), /batch (batch.js, then server.runJobs), /status
 * (server.sendStatus), /health (server.sendHealth), else 404.
 */
function routeHost(server, req, res) {
  const url = req.url;
  if (url.startsWith(FUNCTION_PREFIX)) {
    routeFunction(server, req, res, url);
  } else if (isBatchUrl(url)) {
    routeBatch(server, req, res);
  } else if (url === '/status' || url.startsWith('/status?')) {
    if (req.method === 'GET' || req.method === 'HEAD') server.sendStatus(req, res);
    else server.send(req, res, 405, 'Method not allowed: use GET /status');
  } else if (url === '/health' || url.startsWith('/health?')) {
    if (req.method === 'GET' || req.method === 'HEAD') server.sendHealth(req, res);
    else server.send(req, res, 405, 'Method not allowed: use GET /health');
  } else if (url === '/metrics' || url.startsWith('/metrics?')) {
    if (req.method === 'GET' || req.method === 'HEAD') server.sendMetrics(req, res);
    else server.send(req, res, 405, 'Method not allowed: use GET /metrics');
  } else {
    server.notFound(req, res);
  }
}

// A call's answer is counted (res.jsHostCall: see server.js send()) from here on: 404s and
// every answer of a POST to a function, 400/413 included.
function routeFunction(server, req, res, url) {
  server.useRequestId(req, res);
  const name = functionName(url);
  if (name === null) {
    server.send(req, res, 400, `Bad request: malformed function name in ${url}`);
    return;
  }
  const found = server.findFunction(name);
  if (found === undefined) {
    res.jsHostCall = name;
    server.send(req, res, 404, unknownFunction(name));
    return;
  }
  if (req.method !== 'POST') {
    server.send(req, res, 405, `Method not allowed: call functions with POST ${FUNCTION_PREFIX}${name}`);
    return;
  }
  res.jsHostCall = name;
  server.startCall(req, res, found);
}

/**
 * /status: the bare one exactly as computed once (0.11's shape: the 2015 clients
 * compare it with the config's status line); `GET /status?errors` appends the
 * host's last errors, without their texts unless the config opts in (last_errors.js):
 * any local user can ask the host's port. The proxy forwards only the bare /status.
 */
function sendStatusWithErrors(server, req, res) {
  const json = server.statusJson();
  if (!wantsErrors(req.url)) {
    server.send(req, res, 200, json, JSON_TYPE);
    return;
  }
  const body = `${json.slice(0, -1)},"lastErrors":${JSON.stringify(server.metrics.lastErrors)}}`;
  server.send(req, res, 200, body, JSON_TYPE);
}

/** Whether a /status URL asks for the last errors: `?errors` among its parameters. */
function wantsErrors(url) {
  const query = url.indexOf('?');
  return query !== -1 && new URLSearchParams(url.slice(query + 1)).has('errors');
}

function sendMetrics(server, req, res) {
  server.send(req, res, 200, server.metrics.render(), METRICS_TYPE);
}

module.exports = { Host, functionTimeoutOf, routeHost, sendMetrics, sendStatusWithErrors };
