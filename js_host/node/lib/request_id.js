'use strict';

// The request id that follows one call through the client, the proxy and the host's log
// (X-Request-Id): a client's id is kept when it is a short token, anything else is
// replaced by a new random one (32 lowercase hex digits), so that a log line never
// carries what a client chose to put there beyond that alphabet.

const crypto = require('node:crypto');

const REQUEST_ID_HEADER = 'X-Request-Id';
const VALID = /^[A-Za-z0-9._:-]{1,128}$/;

// Random bytes taken from one buffer filled at a time: one system call per 256 ids.
const ID_BYTES = 16;
const POOL_BYTES = ID_BYTES * 256;
let pool = null;
let offset = POOL_BYTES;

/** A new request id: 32 lowercase hex digits. */
function newRequestId() {
  if (offset === POOL_BYTES) {
    pool = crypto.randomBytes(POOL_BYTES);
    offset = 0;
  }
  const id = pool.toString('hex', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return id;
}

/** The id to use for a request whose X-Request-Id is `given` (undefined: absent). */
function requestIdFrom(given) {
  return given !== undefined && VALID.test(given) ? given : newRequestId();
}

module.exports = { REQUEST_ID_HEADER, newRequestId, requestIdFrom };
