'use strict';

// One worker of a pool, as its master sees it: a child process forked from
// worker_main.js, its state, the call it runs, and why it died. The pool
// (pool.js) decides what to run where and when to replace a worker; this
// module knows how to start, talk to, stop and kill one.
//
// The IPC messages are JSON arrays (serialization 'json': the cheapest for
// strings), one each way per call; the body crosses as the client sent it:
//   master -> worker  [id, name, body, requestId?] run a call (its request id for JSON log lines)
//   worker -> master  [id, status, body, rss]      its answer, and the RSS after it
//                     ['ready', report]            loaded: {functions, cacheControl, codeVersion, config, heapUsed}
//                     ['failed', message]          the config did not load (then it exits)
//                     ['log', level, message, fields?]  a log line (fields of a call's line: JSON log lines only)
//                     ['heap', bytes]              its V8 heap used, every few seconds (for /metrics)
//                     ['crash', cause, stack]      uncaughtException or unhandledRejection (then it exits)

const { fork } = require('node:child_process');
const path = require('node:path');

const MAIN = path.join(__dirname, 'worker_main.js');
// A worker that does not leave when asked (a loop, a handle that keeps it)
// is killed after this.
const STOP_TIMEOUT_MS = 2000;
// A worker that closed its channel is given this long to exit by itself.
const EXIT_AFTER_DISCONNECT_MS = 1000;
// What V8 writes on stderr when a heap limit is reached, before it aborts.
const OUT_OF_MEMORY = /JavaScript heap out of memory|Reached heap limit/;
// Kept of a worker's stderr, to say why it failed to start.
const STDERR_TAIL_CHARS = 2000;

let nextId = 0;

class WorkerProcess {
  /**
   * @param {object} pool receives onReady, onAnswer, onLog, onCrashReport, onGone(worker)
   * @param {object} options {configFile, port, generation, heapLimitMb, logFields, sourceMaps}
   *   (logFields: the master writes JSON log lines, which carry the fields of a call's lines;
   *   sourceMaps: the master's default, used unless the config says)
   */
  constructor(pool, { configFile, port, generation, heapLimitMb, logFields = false, sourceMaps = false }) {
    this.pool = pool;
    this.id = ++nextId;
    this.generation = generation;
    // starting -> ready (idle or running `call`) -> stopping -> gone
    this.state = 'starting';
    this.call = null;
    this.calls = 0;
    this.report = null; // the 'ready' report
    this.replaces = null; // a worker to stop once this one is ready
    this.retiring = false; // a replacement is starting for it
    this.draining = false; // takes no new call; stopped once idle
    this.cause = null; // why it ended: set by the master (kill) or by its crash report
    this.detail = '';
    this.crashMessage = ''; // the first line of its crash report
    this.heapUsed = null; // bytes, as it last reported
    this.undelivered = null; // a call that could not be sent to it
    this.startError = null;
    this.stderrTail = '';
    this.outOfMemory = false;
    this.exitCode = null;
    this.signal = null;
    this.exited = false;
    this.disconnected = false;
    this.stopTimer = null;
    this.disconnectTimer = null;
    const execArgv = [...process.execArgv];
    if (heapLimitMb > 0) execArgv.push(`--max-old-space-size=${heapLimitMb}`);
    this.logFields = logFields;
    const args = [configFile, String(port), heapLimitMb > 0 ? '1' : '0', logFields ? '1' : '0', sourceMaps ? '1' : '0'];
    this.child = fork(MAIN, args, {
      execArgv,
      serialization: 'json',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.pid = this.child.pid;
    this.child.on('message', (message) => this.onMessage(message));
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (text) => this.onOutput('info', text));
    this.child.stderr.on('data', (text) => this.onStderr(text));
    // A call written to a channel that is already closed (the worker died
    // between calls, before the master heard of it) never reached it: the
    // pool runs it elsewhere.
    this.child.on('error', (err) => {
      if (this.state === 'starting') this.startError = this.startError || err.message;
      else if (this.call !== null) this.undelivered = this.call;
    });
    // Gone once it exited and its channel is read to the end (a crash report
    // sent just before the exit is then known).
    this.child.on('exit', (code, signal) => {
      this.exited = true;
      this.exitCode = code;
      this.signal = signal;
      if (this.disconnectTimer !== null) clearTimeout(this.disconnectTimer);
      if (this.disconnected) this.gone();
    });
    // The channel closes as a process exits (often just before 'exit'); one
    // that closed it and lives on cannot be given calls: killed.
    this.child.on('disconnect', () => {
      this.disconnected = true;
      if (this.exited) this.gone();
      else this.disconnectTimer = setTimeout(() => this.kill('disconnected'), EXIT_AFTER_DISCONNECT_MS);
    });
  }

  onMessage(message) {
    if (!Array.isArray(message)) return;
    const kind = message[0];
    if (typeof kind === 'number') {
      this.pool.onAnswer(this, kind, message[1], message[2], message[3]);
    } else if (kind === 'log') {
      this.pool.onLog(this, message[1], message[2], message[3]);
    } else if (kind === 'heap') {
      this.heapUsed = message[1];
    } else if (kind === 'ready') {
      if (this.state !== 'starting') return;
      this.state = 'ready';
      this.report = message[1];
      if (typeof this.report.heapUsed === 'number') this.heapUsed = this.report.heapUsed;
      this.pool.onReady(this);
    } else if (kind === 'crash') {
      this.cause = this.cause || message[1];
      this.pool.onCrashReport(this, message[1], message[2]);
    } else if (kind === 'failed') {
      this.startError = String(message[1]);
    }
  }

  onOutput(level, text) {
    for (const line of text.split('\n')) {
      if (line !== '') this.pool.onLog(this, level, `Host: worker ${this.pid}: ${line}`);
    }
  }

  onStderr(text) {
    this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_CHARS);
    if (OUT_OF_MEMORY.test(text)) this.outOfMemory = true;
    this.onOutput('error', text);
  }

  /** Run `call` ({id, name, body, requestId}); the worker must be ready and idle. */
  run(call) {
    this.call = call;
    if (this.logFields) this.child.send([call.id, call.name, call.body, call.requestId === undefined ? null : call.requestId]);
    else this.child.send([call.id, call.name, call.body]);
  }

  get idle() {
    return this.state === 'ready' && this.call === null && !this.disconnected;
  }

  /** Ask it to leave (it exits when its channel closes); SIGKILL if it does not. */
  stop() {
    if (this.state === 'stopping' || this.state === 'gone') return;
    this.state = 'stopping';
    this.cause = this.cause || 'stopped';
    this.stopTimer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    if (this.child.connected) this.child.disconnect();
  }

  /** Kill it at once (SIGKILL: whatever it runs), for `cause`. */
  kill(cause) {
    if (this.state === 'gone') return;
    this.cause = this.cause || cause;
    this.state = 'stopping';
    this.child.kill('SIGKILL');
  }

  gone() {
    if (this.state === 'gone') return;
    const wasReady = this.report !== null;
    this.state = 'gone';
    if (this.stopTimer !== null) clearTimeout(this.stopTimer);
    if (this.cause === null) {
      if (this.outOfMemory) this.cause = 'outOfMemory';
      else if (this.signal !== null) this.cause = 'signal';
      else this.cause = 'exit';
    }
    this.detail = this.signal !== null ? `signal ${this.signal}` : `exit code ${this.exitCode}`;
    this.pool.onGone(this, wasReady);
  }

  /** Why it failed to start, in one line (for a log line or the host's exit). */
  startFailure() {
    if (this.startError !== null) return this.startError;
    const tail = this.stderrTail.trim().split('\n').slice(-1)[0];
    return `a worker exited (${this.detail}) before it was ready${tail ? `: ${tail}` : ''}`;
  }
}

module.exports = { WorkerProcess };
