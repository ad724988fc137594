'use strict';

// What the host and the manager share: config with defaults, /status, a plain
// node:http server (no middleware chain) with per-connection limits
// (connections.js), JSON bodies with a size limit, one send() for every
// response (it also writes the request log line), the Host header check, and a
// graceful close.

const http = require('node:http');
const { performance } = require('node:perf_hooks');
const { readBody } = require('./body_reader');
const { parseBytes } = require('./bytes');
const { ConfigError, withDefaults, serializableConfig } = require('./config');
const { admit, connectionLimits, serverOptions, watchConnections } = require('./connections');
const { FORMATS, Logger, createSilent } = require('./logger');
const { REQUEST_ID_HEADER, requestIdFrom } = require('./request_id');
const { createHostCheck } = require('./security');
const version = require('./version');

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
// The version of the code that answered (a host's; see code_version.js).
const CODE_VERSION_HEADER = 'JS-Host-Code-Version';

// The js-host protocol this server speaks, announced as /status's "version": the 2015
// Python clients refuse a host whose version is not theirs (js-host 0.1.x wants 0.11,
// 0.2.0 wants 0.12; npm's 0.11 and 0.12 speak the same wire protocol). A config's
// `protocolVersion` announces the other one; "packageVersion" says which release runs.
const PROTOCOL_VERSION = '0.11.7';
const PROTOCOL_VERSION_PATTERN = /^0\.1[12]\.\d+$/;

// How long to keep reading (and discarding) an oversized body before the 413.
const DRAIN_AFTER_413_MS = 5000;

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

    this.bodyLimit = parseBytes(this.config.requestDataLimit);
    if (this.bodyLimit === null) {
      throw new ConfigError(
        `requestDataLimit must be a size such as '10mb' or a number of bytes, not ${JSON.stringify(this.config.requestDataLimit)}`,
      );
    }
    if (typeof this.config.address !== 'string' || this.config.address === '') {
      throw new ConfigError(`address must be a string such as '127.0.0.1', not ${JSON.stringify(this.config.address)}`);
    }
    const portNumber = Number(this.config.port);
    if (!Number.isInteger(portNumber) || portNumber < 0 || portNumber > 65535 || String(this.config.port).trim() === '') {
      throw new ConfigError(`port must be a number from 0 to 65535, not ${JSON.stringify(this.config.port)}`);
    }
    const protocol = this.config.protocolVersion;
    if (protocol !== undefined && !(typeof protocol === 'string' && PROTOCOL_VERSION_PATTERN.test(protocol))) {
      throw new ConfigError(
        `protocolVersion must be a js-host version whose protocol this host speaks, '0.11.x' or '0.12.x', not ${JSON.stringify(protocol)}`,
      );
    }
    this.protocolVersion = protocol === undefined ? PROTOCOL_VERSION : protocol;
    if (this.config.allowedHosts !== undefined && !Array.isArray(this.config.allowedHosts)) {
      throw new ConfigError('allowedHosts must be a list of host names');
    }

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
    if (!admit(req, res, this.limits, this.onTooMany)) return;
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
    if (declared !== undefined && Number(declared) > this.bodyLimit) this.tooLarge(reader);
  }

  /**
   * The body is over requestDataLimit: buffer nothing more, and answer 413
   * once the client has sent it all (read and discarded), so that the client
   * reads the answer instead of a reset; one that keeps sending for more than
   * DRAIN_AFTER_413_MS gets the answer then, and the connection is closed.
   */
  tooLarge(reader) {
    reader.failed = true;
    reader.first = reader.chunks = null;
    reader.drainTimer = setTimeout(() => {
      const { res } = reader;
      this.sendTooLarge(reader.req, res);
      if (res.writableFinished) res.socket?.destroy();
      else res.once('finish', () => res.socket?.destroy());
    }, DRAIN_AFTER_413_MS);
  }

  sendTooLarge(req, res) {
    if (res.headersSent) return;
    this.send(req, res, 413, `Payload too large: the body is over the requestDataLimit of ${this.config.requestDataLimit}`);
  }

  // `Expect: 100-continue` (curl sends it for big bodies): refuse an oversized
  // body before the client sends it.
  checkContinue(req, res) {
    const declared = rawHeader(req, 'content-length');
    if (declared !== undefined && Number(declared) > this.bodyLimit) {
      res.jsHostStart = performance.now();
      this.sendTooLarge(req, res);
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

  /** The log line and the count of a function call's answer (`ms` since its request arrived). */
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
    if (this.metrics !== null) this.metrics.recordCall(name, status, ms / 1000, body);
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

/** The logger a config asks for: its own `logger`, none (`silent`) or the console. */
function createLogger(config, options = {}) {
  const format = options.format !== undefined ? options.format : config.logFormat === undefined ? 'text' : config.logFormat;
  if (!FORMATS.has(format)) {
    throw new ConfigError(`logFormat must be 'text' (js-host 0.11's lines) or 'json' (one object a line), not ${JSON.stringify(format)}`);
  }
  const withFormat = { ...options, format };
  if (config.logger) return new Logger({ ...withFormat, custom: config.logger });
  if (config.silent) return createSilent(withFormat);
  return new Logger(withFormat);
}

/** The answer to a call of a name no function has (404): the same wherever it is found out. */
function unknownFunction(name) {
  return `Not found. Unknown function "${logSafe(name)}"`;
}

// Control characters (C0, DEL, C1) and the line/paragraph separators U+2028/U+2029.
// eslint-disable-next-line no-control-regex
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * Client text (a URL, a batch job's function name) made safe for a log line or an answer:
 * every control character is written as \xNN (\uNNNN for U+2028/2029), so a name holding
 * "\n2026-...Z - error: ..." or ANSI escapes cannot forge or recolour a line of the text log.
 * Every log line that carries client text goes through this one function.
 */
function logSafe(text) {
  const s = String(text);
  UNSAFE_TEXT.lastIndex = 0;
  if (!UNSAFE_TEXT.test(s)) return s;
  return s.replace(UNSAFE_TEXT, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${code.toString(16).padStart(2, '0')}`;
  });
}

module.exports = { BaseServer, CODE_VERSION_HEADER, createLogger, JSON_TYPE, logSafe, PROTOCOL_VERSION, rawHeader, TEXT, unknownFunction };
