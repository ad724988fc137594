'use strict';

// Checks that keep browsers and other users away from a development server.
// - Host header (DNS rebinding): a server bound to loopback only answers
//   requests addressed to a loopback name, so that a web page on evil.example
//   resolving to 127.0.0.1 cannot call it.
// - Challenge-response on the manager secret (manager only): another local
//   user can neither ask the manager to spawn processes nor learn anything
//   replayable by posing as the manager (runtime.js keeps the secret in a 0700
//   directory). Scheme "JSHost-HMAC" (announced as AUTH_NAME in the manager's
//   status; the Python side is js_host/manager_auth.py):
//   1. client -> any request with `X-JS-Host-Challenge: <cnonce>`, no secret;
//   2. manager -> 401 `WWW-Authenticate: JSHost-HMAC nonce="<snonce>",
//      proof="<mac(proof, cnonce, snonce)>"`: the client checks the proof
//      before it sends anything derived from the secret;
//   3. client -> the request with `Authorization: JSHost-HMAC nonce="<snonce>",
//      mac="<mac(request, snonce, method, target, sha256(body))>"`: the manager
//      accepts a snonce once, within NONCE_LIFETIME_MS;
//   4. manager -> the answer with `Authentication-Info: nextnonce="<snonce2>",
//      mac="<mac(response, snonce, status, sha256(body), snonce2)>"` (RFC 7615),
//      so that a relay cannot change it either; the client may sign its next
//      request with snonce2 right away (one round trip instead of two), and
//      starts over at 1. when that gets a 401.
//   mac(label, ...fields) = HMAC-SHA256(secret, netstrings of label and
//   fields): a distinct label per message and length-prefixed fields, so that
//   no MAC can stand for another message.

const crypto = require('node:crypto');

function isLoopbackAddress(address) {
  const name = String(address).toLowerCase();
  return (
    name === 'localhost' ||
    name === '::1' ||
    name === '[::1]' ||
    name === '::ffff:127.0.0.1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)
  );
}

/** The hostname of a Host header value: "Foo:80" -> "foo", "[::1]:80" -> "[::1]". */
function hostname(hostHeader) {
  const value = hostHeader.trim().toLowerCase();
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    return end === -1 ? value : value.slice(0, end + 1);
  }
  const colon = value.indexOf(':');
  return colon === -1 ? value : value.slice(0, colon);
}

/**
 * A predicate for Host header values, or null when no check applies: bound
 * to a non-loopback address (e.g. 0.0.0.0 in a container) without an
 * `allowedHosts` list.
 */
function createHostCheck(address, allowedHosts) {
  const extra = Array.isArray(allowedHosts) ? allowedHosts.map((name) => String(name).toLowerCase()) : [];
  if (!isLoopbackAddress(address) && extra.length === 0) return null;
  const allowed = new Set(['localhost', '[::1]', ...extra]);
  return function isAllowedHost(hostHeader) {
    const name = hostname(hostHeader);
    return allowed.has(name) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
  };
}

const AUTH_SCHEME = 'JSHost-HMAC';
const AUTH_NAME = 'js-host-hmac-1';
const CHALLENGE_HEADER = 'x-js-host-challenge';
const LABELS = {
  proof: 'js-host manager proof',
  request: 'js-host client request',
  response: 'js-host manager response',
};
// The client sends its authenticated request right after the challenge.
const NONCE_LIFETIME_MS = 10000;
// Nonces issued and not yet used: a flood of challenges evicts the oldest
// instead of growing the manager's memory.
const MAX_OUTSTANDING_NONCES = 1024;
const NONCE_PATTERN = /^[0-9a-f]{32,128}$/;

/** HMAC-SHA256 (hex) of the netstrings `<bytes>:<field>,` of label and fields. */
function authMac(secret, label, ...fields) {
  let message = `${Buffer.byteLength(label)}:${label},`;
  for (const field of fields) {
    const text = String(field);
    message += `${Buffer.byteLength(text)}:${text},`;
  }
  return crypto.createHmac('sha256', secret).update(message).digest('hex');
}

function sha256Hex(body) {
  return crypto.createHash('sha256').update(body).digest('hex');
}

function managerProof(secret, clientNonce, serverNonce) {
  return authMac(secret, LABELS.proof, clientNonce, serverNonce);
}

function requestMac(secret, serverNonce, method, target, body) {
  return authMac(secret, LABELS.request, serverNonce, method, target, sha256Hex(body));
}

function responseMac(secret, serverNonce, status, body, nextNonce) {
  return authMac(secret, LABELS.response, serverNonce, String(status), sha256Hex(body), nextNonce);
}

/** Constant-time comparison of two hex strings (false when the lengths differ). */
function safeEqualHex(given, expected) {
  const a = Buffer.from(typeof given === 'string' ? given : '', 'utf8');
  const b = Buffer.from(expected, 'utf8');
  if (a.length !== b.length) {
    crypto.timingSafeEqual(b, b);
    return false;
  }
  return crypto.timingSafeEqual(a, b);
}

/**
 * The scheme and parameters of a `Scheme k="v", k2=v2` header value (RFC 9110,
 * section 11.4), or null when it is not of that form.
 */
function parseAuthParams(value) {
  if (typeof value !== 'string') return null;
  const match = /^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s+(.*))?$/.exec(value);
  if (match === null) return null;
  const params = Object.create(null);
  const rest = match[2] || '';
  const param = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"([^"\\]*)"|([^\s,"]*))\s*(?:,|$)/y;
  let index = 0;
  while (index < rest.length) {
    param.lastIndex = index;
    const found = param.exec(rest);
    if (found === null || param.lastIndex === index) return null;
    params[found[1].toLowerCase()] = found[2] !== undefined ? found[2] : found[3];
    index = param.lastIndex;
  }
  return { scheme: match[1], params };
}

/** Server nonces: issued for a challenge, each accepted once within its lifetime. */
class NonceStore {
  constructor({ lifetimeMs = NONCE_LIFETIME_MS, max = MAX_OUTSTANDING_NONCES, now = Date.now } = {}) {
    this.lifetimeMs = lifetimeMs;
    this.max = max;
    this.now = now;
    this.expiries = new Map(); // nonce -> expiry; insertion order is expiry order
  }

  get size() {
    return this.expiries.size;
  }

  issue() {
    this.sweep();
    while (this.expiries.size >= this.max) this.expiries.delete(this.expiries.keys().next().value);
    const nonce = crypto.randomBytes(32).toString('hex');
    this.expiries.set(nonce, this.now() + this.lifetimeMs);
    return nonce;
  }

  /** True once for a nonce issued within its lifetime; it is forgotten either way. */
  consume(nonce) {
    if (typeof nonce !== 'string') return false;
    const expiry = this.expiries.get(nonce);
    if (expiry === undefined) return false;
    this.expiries.delete(nonce);
    return expiry > this.now();
  }

  sweep() {
    const now = this.now();
    for (const [nonce, expiry] of this.expiries) {
      if (expiry > now) break;
      this.expiries.delete(nonce);
    }
  }
}

module.exports = {
  AUTH_NAME,
  AUTH_SCHEME,
  CHALLENGE_HEADER,
  NONCE_PATTERN,
  NonceStore,
  isLoopbackAddress,
  createHostCheck,
  hostname,
  managerProof,
  parseAuthParams,
  requestMac,
  responseMac,
  safeEqualHex,
};
