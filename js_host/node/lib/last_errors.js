'use strict';

// What a host keeps of its last 5xx answers, the "lastErrors" of GET /status?errors.
// Every local user can reach the host's port (docs/SECURITY.md), and an error's text
// often holds the caller's data (the input a function choked on, quoted in its
// message), so an entry says which call failed and how, never what it said: its time,
// function, status, request id (the whole error is in the host's logfile, logged with
// the call's lines) and kind: the error's class (its name as its stack begins), or
// what the host made of the call ('timeout', 'worker died', ...). The first line of
// the text is kept as well only when the config asks for it (lastErrorMessages: true).

const { ConfigError } = require('./config');

// The newest ones, last.
const LAST_ERRORS = 10;
const ERROR_MESSAGE_CHARS = 500;

// The answers the host makes itself, by the words they begin with. A function's own 500
// could begin with the same words only by a stack it wrote itself: a wrong kind, no text.
const HOST_ANSWERS = [
  // pool.js failCall(), with pool_log.js describeDeath()
  { status: 500, kind: 'worker died', start: /^Function ".*" failed: the worker running it / },
  // pool.js stop() and onGone() while stopping
  { status: 500, kind: 'host stopping', start: /^Function ".*" failed: the host is stopping$/ },
  { status: 503, kind: 'host stopping', start: /^Function ".*" was not run: the host is stopping$/ },
  // pool_host.js busyMessage()
  { status: 503, kind: 'queue full', start: /^Service unavailable: all \d+ workers are busy / },
];
// A stack's first line is `<name>: <message>` (or the name alone): the name of a class, with
// Node's error code in brackets (`TypeError [ERR_INVALID_ARG_TYPE]`). Only a name shaped so
// is taken; anything else (a stack the function rewrote) could be data, and is no kind.
const ERROR_NAME = /^([A-Za-z_$][\w$]{0,63}(?: \[[\w$]{1,64}\])?)(?::|$)/;

class LastErrors {
  /** @param {object} [options] @param {boolean} [options.messages] keep each error's first line too */
  constructor({ messages = false } = {}) {
    this.messages = messages;
    this.entries = [];
  }

  /** Keep the 5xx answer `body` to a call of `name` (request id `requestId`), dropping the oldest. */
  add(name, status, body, requestId) {
    const text = String(body);
    const newline = text.indexOf('\n');
    const firstLine = newline === -1 ? text : text.slice(0, newline);
    const entry = {
      time: new Date().toISOString(),
      function: name,
      status,
      requestId: requestId === undefined ? null : requestId,
      kind: errorKind(status, firstLine),
    };
    if (this.messages) entry.message = firstLine.slice(0, ERROR_MESSAGE_CHARS);
    this.entries.push(entry);
    if (this.entries.length > LAST_ERRORS) this.entries.shift();
  }
}

/** The kind of a 5xx answer whose first line is `firstLine`, or null when it cannot be told without its text. */
function errorKind(status, firstLine) {
  if (status === 504) return 'timeout'; // the only 504: functionTimeout (call.js, pool.js)
  for (const answer of HOST_ANSWERS) {
    if (answer.status === status && answer.start.test(firstLine)) return answer.kind;
  }
  if (status !== 500) return null;
  const name = ERROR_NAME.exec(firstLine);
  return name === null ? null : name[1];
}

/** The config's lastErrorMessages (false unless set), or a ConfigError. */
function lastErrorMessagesOf(config) {
  const { lastErrorMessages = false } = config;
  if (typeof lastErrorMessages !== 'boolean') {
    throw new ConfigError(
      'lastErrorMessages must be true (/status?errors shows the first line of each error, to anyone who can reach ' +
        `the port) or false (the default: the messages only in the logfile), not ${JSON.stringify(lastErrorMessages)}`,
    );
  }
  return lastErrorMessages;
}

module.exports = { LastErrors, LAST_ERRORS, errorKind, lastErrorMessagesOf };
