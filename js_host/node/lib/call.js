'use strict';

// One call of a config function: `fn.call(context, data, callback)`, with
// js-host 0.11's rules for the output (objects as JSON, other values as
// strings, a falsy output is an error), plus ours: a returned Promise settles
// the call, a synchronous throw is a 500, a call that never completes is a 504
// after functionTimeout, and a second callback is logged, not fatal.
// A pool worker runs calls through a subclass (worker_main.js) that answers
// over IPC, gives no req/res, and leaves the deadline to the pool.

const { performance } = require('node:perf_hooks');
const { BodyReader } = require('./body_reader');
const { TEXT } = require('./server');

class FunctionCall extends BodyReader {
  constructor(host, entry, req, res) {
    super(host, req, res);
    this.host = host;
    this.entry = entry;
    this.done = false;
    this.timedOut = false;
    this.timer = null;
    // For the log lines of the call (a worker's call gets it from its master).
    this.requestId = res === null ? null : res.jsHostRequestId;
    this.started = 0;
    // The one closure per call: user code gets a plain function.
    this.callback = (err, output) => this.complete(err, output);
  }

  /** The fields of the call's log lines (undefined when the logger writes text only). */
  logFields(status) {
    if (!this.host.logger.wantsFields) return undefined;
    const fields = { function: this.entry.name, request_id: this.requestId, worker: null };
    if (status !== undefined) {
      fields.status = status;
      fields.duration_ms = Math.round((performance.now() - this.started) * 100) / 100;
    }
    return fields;
  }

  onBody(data) {
    this.run(data);
  }

  /** What a function sees as `this`. */
  context() {
    return { name: this.entry.name, host: this.host, req: this.req, res: this.res };
  }

  /** Send the answer (the only way out of a call). */
  answer(status, body, cacheControl) {
    this.host.send(this.req, this.res, status, body, TEXT, cacheControl);
  }

  startTimer() {
    if (this.host.functionTimeout > 0) this.timer = setTimeout(onTimeout, this.host.functionTimeout, this);
  }

  run(data) {
    const { entry, host } = this;
    const context = this.context();
    // js-host 0.11's lines around every call (its logfile's readers look for them).
    if (host.logger.wantsFields) this.started = performance.now();
    host.logger.info(`Host: calling function ${entry.name}`, this.logFields());
    let returned;
    try {
      returned = entry.fn.call(context, data, this.callback);
    } catch (err) {
      if (this.done) {
        host.logger.errorToStderr(`Host: function ${entry.name} threw after calling back: ${stackOf(toError(err))}`, this.logFields());
      } else {
        this.complete(err, undefined, true);
      }
      return;
    }
    if (returned !== undefined && returned !== null && typeof returned.then === 'function') {
      returned.then(
        (value) => this.resolved(value),
        (err) => this.rejected(err),
      );
    }
    if (!this.done) this.startTimer();
  }

  // An async function that resolves to undefined is taken to use the callback
  // (it may call it later); any other value is its output.
  resolved(value) {
    if (value === undefined || this.done) return;
    this.complete(null, value);
  }

  rejected(err) {
    if (this.done) {
      this.host.logger.errorToStderr(`Host: function ${this.entry.name} rejected after completing: ${stackOf(toError(err))}`, this.logFields());
      return;
    }
    this.complete(err === undefined || err === null ? new Error(`Promise rejected with ${err}`) : err, undefined, true);
  }

  /** The answer: `thrown` errors (a throw, a rejection) also reach stderr under `silent: true`, as in 0.11. */
  complete(err, output, thrown = false) {
    const { host, entry } = this;
    if (this.done) {
      if (this.timedOut) {
        host.logger.warn(`Host: function ${entry.name} called back after its timeout of ${host.functionTimeout}ms`, this.logFields());
      } else {
        host.logger.error(new Error(`Function "${entry.name}" called its callback more than once`).stack, this.logFields());
      }
      return;
    }
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);

    let body;
    let error = err ? toError(err) : null;
    if (error === null) {
      if (!output) {
        error = new Error(
          `Function failed to provide valid output. Provided: "${output}". A falsy output (undefined, null, ` +
            'false, 0, "") is an error, as in js-host 0.11: call back with a non-empty string or an object.',
        );
      } else if (typeof output === 'string') {
        body = output;
      } else if (typeof output === 'object' || typeof output === 'function') {
        try {
          body = JSON.stringify(output);
          if (body === undefined) error = new Error(`Function output cannot be serialized to JSON: ${String(output)}`);
        } catch (serializeError) {
          error = serializeError;
        }
      } else {
        body = String(output);
      }
    }

    if (error !== null) {
      const stack = stackOf(error);
      const line = `Host: function ${entry.name} produced an error ${stack}`;
      if (thrown) host.logger.errorToStderr(line, this.logFields(500));
      else host.logger.error(line, this.logFields(500));
      this.answer(500, stack);
      return;
    }
    host.logger.info(`Host: function ${entry.name} completed`, this.logFields(200));
    this.answer(200, body, entry.cacheControl);
  }
}

function onTimeout(call) {
  if (call.done) return;
  call.done = true;
  call.timedOut = true;
  const { host, entry } = call;
  const message = `Function "${entry.name}" did not complete within the functionTimeout of ${host.functionTimeout}ms`;
  host.logger.error(`Host: ${message}`, call.logFields(504));
  call.answer(504, `Gateway timeout: ${message}`);
}

function toError(err) {
  return err instanceof Error ? err : new Error(err);
}

function stackOf(error) {
  return typeof error.stack === 'string' && error.stack !== '' ? error.stack : String(error);
}

module.exports = { FunctionCall };
