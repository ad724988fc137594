'use strict';

// Reading a request's JSON body: a BodyReader holds one request's state (its
// chunks, its size against the server's requestDataLimit), and the same three
// listeners serve every request. An oversized body gets 413 once it is drained
// (tooLarge()), a bad one gets 400, a good one reaches the reader's
// onBody(data); acceptBody(bytes) sees the raw bytes first (the manager checks
// a request's MAC over them; a pool sends them to a worker, which parses them
// with the same parseObject()).

const kReader = Symbol('js-host.reader');
const EMPTY = Buffer.alloc(0);
// How long to keep reading (and discarding) an oversized body before the 413.
const DRAIN_AFTER_413_MS = 5000;

/** A request body being read; subclasses implement onBody(data). */
class BodyReader {
  constructor(server, req, res) {
    this.server = server;
    this.req = req;
    this.res = res;
    this.first = null;
    this.chunks = null;
    this.size = 0;
    this.failed = false;
    this.drainTimer = null;
  }

  /**
   * The whole body, before it is parsed: false if this method took the
   * request over (the manager answers here when the MAC over the bytes is
   * wrong; a pool hands the bytes to a worker, which parses them).
   */
  // eslint-disable-next-line no-unused-vars
  acceptBody(body) {
    return true;
  }

  // eslint-disable-next-line no-unused-vars
  onBody(data) {}
}

/** Read `req`'s body into `reader`: its state lives there, no closure per request. */
function readBody(req, reader) {
  req[kReader] = reader;
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
}

// The 'data'/'end'/'error' listeners of every request (`this` is the request).
function onData(chunk) {
  const reader = this[kReader];
  if (reader.failed) return;
  reader.size += chunk.length;
  if (reader.size > reader.server.bodyLimit) {
    tooLarge(reader);
  } else if (reader.first === null) {
    reader.first = chunk;
  } else {
    if (reader.chunks === null) reader.chunks = [reader.first];
    reader.chunks.push(chunk);
  }
}

function onEnd() {
  const reader = this[kReader];
  if (reader.drainTimer !== null) {
    clearTimeout(reader.drainTimer);
    sendTooLarge(reader.server, this, reader.res);
    return;
  }
  if (reader.failed) return;
  const { server, res } = reader;
  let data;
  if (reader.size === 0) {
    if (!reader.acceptBody(EMPTY)) return;
    data = {};
  } else {
    const body = reader.chunks === null ? reader.first : Buffer.concat(reader.chunks, reader.size);
    reader.first = reader.chunks = null;
    if (!reader.acceptBody(body)) return;
    data = parseObject(body.toString('utf8'));
    if (data instanceof BadBody) {
      server.send(this, res, 400, data.message);
      return;
    }
  }
  reader.onBody(data);
}

/**
 * The body is over requestDataLimit: buffer nothing more, and answer 413
 * once the client has sent it all (read and discarded), so that the client
 * reads the answer instead of a reset; one that keeps sending for more than
 * DRAIN_AFTER_413_MS gets the answer then, and the connection is closed.
 */
function tooLarge(reader) {
  reader.failed = true;
  reader.first = reader.chunks = null;
  reader.drainTimer = setTimeout(() => {
    const { res } = reader;
    sendTooLarge(reader.server, reader.req, res);
    if (res.writableFinished) res.socket?.destroy();
    else res.once('finish', () => res.socket?.destroy());
  }, DRAIN_AFTER_413_MS);
}

/** The 413 of a body over `server`'s requestDataLimit (unless an answer was sent already). */
function sendTooLarge(server, req, res) {
  if (res.headersSent) return;
  server.send(req, res, 413, `Payload too large: the body is over the requestDataLimit of ${server.config.requestDataLimit}`);
}

/** Why a body is refused (400): returned, not thrown, by parseObject(). */
class BadBody {
  constructor(message) {
    this.message = message;
  }
}

/** The JSON object in `text` ('' is {}), or a BadBody saying what is wrong. */
function parseObject(text) {
  if (text === '') return {};
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return new BadBody(`Bad request: the body is not valid JSON (${err.message})`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return new BadBody('Bad request: the body must be a JSON object');
  }
  return data;
}

function onError() {
  this[kReader].failed = true;
}

module.exports = { BadBody, BodyReader, parseObject, readBody, sendTooLarge, tooLarge };
