'use strict';

// What the host and the manager share: config with defaults (checked by
// server_config.js), /status, a plain node:http server (no middleware chain)
// with per-connection limits (connections.js), JSON bodies with a size limit
// (body_reader.js), one send() for every response (it also writes the request
// log line), the Host header check, and a graceful close.

const http = require('node:http');
const { performance } = require('node:perf_hooks');
const { readBody, sendTooLarge, tooLarge } = require('./body_reader');
const { withDefaults, serializableConfig } = require('./config');
const { admit, connectionLimits, serverOptions, watchConnections } = require('./connections');
const { logSafe } = require('./log_safe');
const { REQUEST_ID_HEADER, requestIdFrom } = require('./request_id');
const { createHostCheck } = require('./security');
const { checkServerConfig, createLogger, PROTOCOL_VERSION } = require('./server_config');
const version = require('./version');

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
// The version of the code that answered (a host's; see code_version.js).
const CODE_VERSION_HEADER = 'JS-Host-Code-Version';

class BaseServer {
  /**
   * @param {object} config the user's config (not modified)
   * @param {object} [options]
   * @param {Logger} [options.logger] defaults to one built from config.logger/silent
   * @param {number} [options.port] overrides config.port (the CLI's --port)
   */
  constructor(config, { logger, port } = {}) {
    this.config = withDefaults(config || {}, this.constructor.defaults);
    if (port !== undefined) this.config.port = port;
    this.logger = logger || createLogger(this.config);
    this.name = this.constructor.name;
    // A host's HostMetrics (host_metrics.js): the calls send() answers are counted there.
    this.metrics = null;

    const { bodyLimit, protocolVersion } = checkServerConfig(this.config);
    this.bodyLimit = bodyLimit;
    this.protocolVersion = protocolVersion;

    // Read, not defaulted into the config: /status shows what js-host 0.11 shows.
    this.limits = connectionLimits(this.config);

    this.hostCheck = createHostCheck(this.config.address, this.config.allowedHosts);
    this.lastAllowedHost = null;
    this.closing = false;
    this.statusBody = null;
    // Whether this event-loop turn has sent an answer yet: see send().
    this.answeredThisTurn = false;
    this.endTurn = () => {
      this.answeredThisTurn = false;
      this.logger.flushFile();
    };
    this.server = http.createServer(serverOptions(this.limits), (req, res) => this.handle(req, res));
    // A pipelined request, once the answer before it is sent (connections.js admit()).
    this.serveWaiting = (req, res) => this.serve(req, res);
    watchConnections(this.server, this.limits, (socket) =>
      this.logger.warn(
        `${this.name}: closed a connection from ${socket.remoteAddress}:${socket.remotePort}: ` +
          `it took none of its answers for ${this.limits.sendTimeout}ms (sendTimeout)`,
      ),
    );
    this.onTooMany = (socket) =>
      this.logger.warn(
        `${this.name}: closed a connection from ${socket.remoteAddress}:${socket.remotePort}: it sent more than ` +
          `${this.limits.maxPipelinedRequests} requests without reading the answers (maxPipelinedRequests)`,
      );
    this.server.on('checkContinue', (req, res) => this.checkContinue(req, res));
  }

  static defaults = {
    address: '127.0.0.1',
    // A string, as in js-host 0.11: /status shows "port": "9009" unless set.
    port: '9009',
    logger: null,
    silent: false,
    outputOnListen: true,
    requestDataLimit: '10mb',
  };

  getStatus() {
    // js-host 0.11's keys first, in its order.
    return { type: this.name, version: this.protocolVersion, config: this.serializableConfig(), packageVersion: version };
  }

  serializableConfig() {
    return serializableConfig(this.config);
  }

  /** The /status body, computed once (and again after a change). */
  statusJson() {
    if (this.statusBody === null) this.statusBody = JSON.stringify(this.getStatus());
    return this.statusBody;
  }

  getAddress() {
    return `${this.config.address}:${this.config.port}`;
  }

  getUrl() {
    return `http://${this.getAddress()}`;
  }

  /** Listen; `callback(err)` once listening (port 0 -> the real port in config). */
  listen(callback) {
    const onError = (err) => {
      this.server.removeListener('listening', onListening);
      callback(err);
    };
    const onListening = () => {
      this.server.removeListener('error', onError);
      if (String(this.config.port) === '0') this.config.port = this.server.address().port;
      this.statusBody = null;
      callback(null);
    };
    this.server.once('error', onError);
    this.server.once('listening', onListening);
    this.server.listen(Number(this.config.port), this.config.address);
  }

  /**
   * Stop accepting connections, let in-flight requests finish, then call
   * `callback`. Idle keep-alive connections are closed at once; busy ones
   * after their response (send() adds `Connection: close`).
   */
  close(callback) {
    if (this.closing) return;
    this.closing = true;
    this.logger.info(`${this.name}: closing`);
    this.server.close(() => callback && callback());
    this.server.closeIdleConnections();
  }

  handle(req, res) {
    if (admit(req, res, this.limits, this.onTooMany, this.serveWaiting)) this.serve(req, res);
  }

  /** Serve an admitted request: the Host check, then route(); its time counts from here. */
  serve(req, res) {
    res.jsHostStart = performance.now();
    if (this.hostCheck !== null) {
      const host = rawHeader(req, 'host');
      // Clients send the same Host header every time: remember the last good one.
      if (host !== undefined && host !== this.lastAllowedHost) {
        if (!this.hostCheck(host)) {
          this.send(
            req,
            res,
            403,
            `Forbidden: this ${this.name} only answers requests addressed to localhost, 127.x.x.x or [::1] ` +
              `(protection against DNS rebinding), not to Host ${JSON.stringify(host)}. ` +
              'Add the name to the config\'s "allowedHosts" list to allow it.',
          );
          return;
        }
        this.lastAllowedHost = host;
      }
    }
    this.route(req, res);
  }

  // eslint-disable-next-line no-unused-vars
  route(req, res) {
    this.notFound(req, res);
  }

  notFound(req, res) {
    this.send(req, res, 404, `Not found: ${req.method} ${req.url}`);
  }

  sendStatus(req, res) {
    this.send(req, res, 200, this.statusJson(), JSON_TYPE);
  }

  /**
   * Read a JSON object body, then `reader.onBody(data)`. Bad bodies are
   * answered here: invalid JSON or not an object -> 400, over requestDataLimit
   * -> 413. An empty body is {}. `reader` is a BodyReader: the request's state
   * lives in it, so that no closure is created per request.
   */
  readJson(req, reader) {
    readBody(req, reader);
    const declared = rawHeader(req, 'content-length');
    if (declared !== undefined && Number(declared) > this.bodyLimit) tooLarge(reader);
  }

  // `Expect: 100-continue` (curl sends it for big bodies): refuse an oversized
  // body before the client sends it.
  checkContinue(req, res) {
    const declared = rawHeader(req, 'content-length');
    if (declared !== undefined && Number(declared) > this.bodyLimit) {
      res.jsHostStart = performance.now();
      sendTooLarge(this, req, res);
      return;
    }
    res.writeContinue();
    this.handle(req, res);
  }

  /**
   * The request id of the answer to `req` (X-Request-Id: the client's when valid, else a
   * new one): send() echoes it and writes it in the request's log line. Called for every
   * function call (host.js routeFunction) and by any route that wants the same.
   */
  useRequestId(req, res) {
    if (res.jsHostRequestId === undefined) res.jsHostRequestId = requestIdFrom(rawHeader(req, 'x-request-id'));
    return res.jsHostRequestId;
  }

  /**
   * Every response goes through here: headers, body, and the log line. The answer of a
   * function call (`res.jsHostCall`, its name: set by host.js routeFunction) is also
   * counted in the metrics, once, whatever its status.
   * `codeVersion`: of the code that answered (a pool's worker), by default the server's.
   */
  send(req, res, status, body, type = TEXT, cacheControl = undefined, codeVersion = this.codeVersion) {
    if (res.headersSent) {
      this.logger.error(`${this.name}: ${req.method} ${logSafe(req.url)}: response already sent, cannot send ${status}`);
      return;
    }
    const headers = ['Content-Type', type, 'Content-Length', Buffer.byteLength(body)];
    if (cacheControl !== undefined) headers.push('Cache-Control', cacheControl);
    if (codeVersion !== undefined) headers.push(CODE_VERSION_HEADER, codeVersion);
    const requestId = res.jsHostRequestId;
    if (requestId !== undefined) headers.push(REQUEST_ID_HEADER, requestId);
    if (this.closing) headers.push('Connection', 'close');
    const ms = performance.now() - res.jsHostStart;
    if (res.jsHostCall === undefined) {
      const id = requestId === undefined ? '' : ` request_id=${requestId}`;
      this.logger.info(`${this.name}: ${req.method} ${logSafe(req.url)} ${status} ${ms.toFixed(2)}ms${id}`);
    } else {
      this.answeredCall(req, res, status, ms, body);
    }
    // The first answer of an event-loop turn leaves after the logfile has its lines: a client
    // that waits for each answer finds them there when the answer arrives. The lines of the
    // turn's other answers (under concurrent load) are written at the end of the turn, in one
    // write: two writes a turn, however many answers it sends. The console keeps its batches.
    if (!this.answeredThisTurn && this.logger.hasFile()) {
      this.answeredThisTurn = true;
      this.logger.flushFile();
      setImmediate(this.endTurn);
    }
    res.writeHead(status, headers);
    res.end(body);
  }

  sendJson(req, res, status, value) {
    this.send(req, res, status, JSON.stringify(value), JSON_TYPE);
  }

  /** The log line and the count of a function call's answer (`ms` since serve() took its request). */
  answeredCall(req, res, status, ms, body) {
    const worker = res.jsHostWorker ?? null;
    this.recordAnswer(`${req.method} ${req.url}`, res.jsHostCall, status, ms, res.jsHostRequestId, worker, body);
  }

  /**
   * The log line (`what`, then the status, time and request id) and the count of one
   * function's answer: a single call's (answeredCall) or a batch job's (batch.js), alike.
   */
  recordAnswer(what, name, status, ms, requestId, worker, body) {
    const { logger } = this;
    const fields = logger.wantsFields
      ? { function: name, status, duration_ms: Math.round(ms * 100) / 100, request_id: requestId, worker }
      : undefined;
    // The text line names the request id; a JSON line has it as a field.
    const id = logger.json ? '' : ` request_id=${requestId}`;
    logger.info(`${this.name}: ${logSafe(what)} ${status} ${ms.toFixed(2)}ms${id}`, fields);
    if (this.metrics !== null) this.metrics.recordCall(name, status, ms / 1000, body, requestId);
  }
}

/** A request header by lower-case name, read without building req.headers. */
function rawHeader(req, name) {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i];
    if (key.length === name.length && key.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}

/** The answer to a call of a name no function has (404): the same wherever it is found out. */
function unknownFunction(name) {
  return `Not found. Unknown function "${logSafe(name)}"`;
}

module.exports = { BaseServer, CODE_VERSION_HEADER, JSON_TYPE, PROTOCOL_VERSION, rawHeader, TEXT, unknownFunction };
