'use strict';

// Checks that keep browsers and other users away from a development server.
// - Host header (DNS rebinding): a server bound to loopback only answers
//   requests addressed to a loopback name, so that a web page on evil.example
//   resolving to 127.0.0.1 cannot call it.
// - Bearer secret (manager only): another local user cannot ask the manager to
//   spawn processes (runtime.js keeps the secret in a 0700 directory).

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

/** Constant-time check of an `Authorization: Bearer <secret>` header. */
function createBearerCheck(secret) {
  const expected = Buffer.from(`Bearer ${secret}`);
  return function isAuthorized(header) {
    const given = Buffer.from(typeof header === 'string' ? header : '');
    if (given.length !== expected.length) {
      crypto.timingSafeEqual(expected, expected);
      return false;
    }
    return crypto.timingSafeEqual(given, expected);
  };
}

module.exports = { isLoopbackAddress, createHostCheck, createBearerCheck, hostname };
