'use strict';

// What one client connection may cost a server: deadlines for receiving a
// request, for an idle kept-alive connection and for a client that does not
// take its answers, a bound on the requests it may pipeline unanswered, and
// one answer at a time: a pipelined request starts once the answer before it
// is in the kernel's hands.
//
// Node's own back-pressure does not bound a client that pipelines and never
// reads: it checks only when a request is parsed, after a whole read (up to
// 64 KiB: ~1500 small requests, each run and its answer buffered); it looks at
// the socket's user-space buffer, which stays empty while the kernel's socket
// buffers (megabytes on loopback) take the answers; and it resumes reading as
// soon as a queued answer moves to the socket. 40 such sockets grew a host by
// hundreds of MB a minute and kept its event loop busy for seconds.
//
// Counting requests does not bound bytes either: 16 pipelined calls for a 3 MB
// answer each, all run at once, held 48 MB a connection (10 sockets took a
// host from 58 MB to 548 MB; run as below, 119 MB). So a connection's calls
// run one after another: the next starts when the answer before it has
// 'finish'ed (its last byte written to the kernel), which keeps at most one
// unsent answer a connection in the process; one the client never takes is
// destroyed at sendTimeout.
// Node sends a connection's answers in request order anyway, so a pipelining
// client loses only the overlap of its calls' running times.

const { ConfigError } = require('./config');

const DEFAULTS = {
  // ms from the connection (or a kept-alive request's first byte) to the end of
  // the request head, then 408 and closed (Node's headersTimeout).
  headersTimeout: 10000,
  // ms to receive a whole request, head and body (Node's requestTimeout; 0: none).
  requestTimeout: 30000,
  // ms an idle kept-alive connection stays open (Node's keepAliveTimeout).
  keepAliveTimeout: 5000,
  // ms a connection may go without the client taking any of its answers (its
  // socket buffers full) before it is destroyed (0: never).
  sendTimeout: 30000,
  // Requests a connection may have unanswered, or send in one go (read in one
  // event-loop turn); one more and it is destroyed (a client that pipelines
  // and does not read its answers, or floods).
  maxPipelinedRequests: 16,
};

// How often Node checks headersTimeout/requestTimeout (its default is 30 s,
// which would let a slow head live 40 s with headersTimeout 10 s).
const CHECK_INTERVAL_MS = 1000;

const kPending = Symbol('js-host.pendingRequests');
const kTurn = Symbol('js-host.turn');
const kInTurn = Symbol('js-host.requestsInTurn');
const kSocket = Symbol('js-host.socket');
// The admitted requests waiting for the answer before them: [req, res, req, res, ...].
const kWaiting = Symbol('js-host.waitingRequests');
const kStart = Symbol('js-host.startWaiting');

// Event-loop turns, counted by one setImmediate per turn with requests: the
// kernel's socket buffers take megabytes of answers from a client that does
// not read them, so "unanswered" alone would let it make the host compute
// answers for seconds before its other clients get a turn.
let turn = 0;
let turnCounted = false;
function nextTurn() {
  turn += 1;
  turnCounted = false;
}

/** The limits of `config` (ConfigError for a bad value), defaults for the missing ones. */
function connectionLimits(config) {
  const limits = {};
  for (const [name, fallback] of Object.entries(DEFAULTS)) {
    const value = config[name] === undefined ? fallback : config[name];
    const positive = name === 'maxPipelinedRequests' || name === 'headersTimeout';
    if (!Number.isInteger(value) || value < (positive ? 1 : 0)) {
      const what = name === 'maxPipelinedRequests' ? 'a number of requests' : 'a number of milliseconds';
      throw new ConfigError(`${name} must be ${what}${positive ? ' (at least 1)' : ' (0 disables it)'}, not ${JSON.stringify(value)}`);
    }
    limits[name] = value;
  }
  if (limits.requestTimeout > 0 && limits.headersTimeout > limits.requestTimeout) {
    throw new ConfigError(`headersTimeout (${limits.headersTimeout}) must not exceed requestTimeout (${limits.requestTimeout})`);
  }
  return limits;
}

/** Options for http.createServer() that carry the limits. */
function serverOptions(limits) {
  return {
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    connectionsCheckingInterval: CHECK_INTERVAL_MS,
  };
}

/**
 * Set the limits Node does not take as options: the send deadline (socket
 * inactivity: with its buffers full, a socket neither reads nor writes).
 */
function watchConnections(server, limits, onStuck) {
  server.keepAliveTimeout = limits.keepAliveTimeout;
  if (limits.sendTimeout > 0) {
    server.timeout = limits.sendTimeout;
    server.on('timeout', (socket) => {
      // Quiet for other reasons (a call in flight: functionTimeout; an idle
      // kept-alive connection: keepAliveTimeout): left alone.
      if (socket.writableLength > 0) {
        onStuck(socket);
        socket.destroy();
      }
    });
  }
}

/**
 * Count `req` among its connection's unanswered requests: true when it may
 * start now; false when it is one too many (the socket destroyed), the socket
 * is gone, or an earlier answer of its connection is not sent yet: then
 * `start(req, res)` is called once that answer is (the same function for
 * every request of a server: no closure per request).
 */
function admit(req, res, limits, onTooMany, start) {
  const socket = req.socket;
  if (socket.destroyed) return false; // the rest of a read after a destroy()
  if (!turnCounted) {
    turnCounted = true;
    setImmediate(nextTurn);
  }
  if (socket[kTurn] !== turn) {
    socket[kTurn] = turn;
    socket[kInTurn] = 0;
  }
  socket[kInTurn] += 1;
  const pending = (socket[kPending] || 0) + 1;
  if (pending > limits.maxPipelinedRequests || socket[kInTurn] > limits.maxPipelinedRequests) {
    onTooMany(socket);
    socket.destroy();
    return false;
  }
  socket[kPending] = pending;
  res[kSocket] = socket;
  res.once('finish', onAnswered);
  if (pending === 1) return true;
  if (socket[kWaiting] === undefined) {
    socket[kWaiting] = [];
    socket[kStart] = start;
  }
  socket[kWaiting].push(req, res);
  return false;
}

// 'finish' of an answer: its last byte is in the kernel's socket buffer (Node
// emits it from the write's callback), so the next waiting request may run.
// Node emits the 'finish' of a connection's answers in request order.
function onAnswered() {
  const socket = this[kSocket];
  this[kSocket] = null;
  socket[kPending] -= 1;
  const waiting = socket[kWaiting];
  // A closed or closing socket's waiting requests are dropped with it (after an answer
  // with Connection: close, or a destroy()): no one takes their answers.
  if (waiting === undefined || waiting.length === 0 || socket.destroyed || !socket.writable) return;
  const req = waiting.shift();
  socket[kStart](req, waiting.shift());
}

module.exports = { DEFAULTS, connectionLimits, serverOptions, watchConnections, admit };
