'use strict';

// Log lines go to the console (info/warn on stdout, error on stderr, like
// js-host 0.11's winston console transport) and to an optional logfile (`-l`).
//
// Every request logs a line, so writing must stay off the hot path: lines are
// appended to strings and written at most every FLUSH_INTERVAL_MS, the console
// in one write (synchronous for files and pipes in Node), the logfile in one
// fs.writeSync (a few KB into the page cache). Under load a write then carries
// hundreds of lines instead of one. A server also writes the logfile before the
// first answer of each event-loop turn and at the end of that turn (server.js),
// so that a client reading it right after its answer finds its lines. What is
// pending when the process exits is written synchronously (flushSync, from the
// CLI's 'exit' handler).
//
// Lines are js-host 0.11's text (`<time> - <level>: <message>`) or, with `format: 'json'`
// (the config's `logFormat`, the CLI's `--log-format`), one JSON object a line:
// {"time", "level", "message", ...fields}, where a call's lines carry `function`,
// `request_id`, `worker` and, once answered, `status` and `duration_ms`. Callers pass
// those fields as a second argument; the text format leaves them out.
//
// `silent: true` turns the console off, but as in js-host 0.11 (whose thrown
// errors and uncaught exceptions reached stderr whatever its logger) the
// errors logged with errorToStderr() still go to stderr.

const fs = require('node:fs');

// Log lines reach the console and the logfile within this delay.
const FLUSH_INTERVAL_MS = 20;
const FORMATS = new Set(['text', 'json']);

let lastMs = 0;
let lastStamp = '';

function timestamp() {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastStamp = new Date(now).toISOString();
  }
  return lastStamp;
}

class Logger {
  /**
   * @param {object} [options]
   * @param {boolean} [options.console=true] write to stdout/stderr
   * @param {object} [options.custom] an object with info/warn/error methods
   *   (config.logger) that replaces the console
   * @param {boolean} [options.holdConsole=false] keep console lines until
   *   releaseConsole(): `--json` must print the status line first
   * @param {string} [options.format='text'] 'text' (js-host 0.11's lines) or 'json'
   * @param {boolean} [options.customFields=false] also give `custom` the fields of a line
   *   (a pool worker's logger, which sends them to the master); a user's logger gets the
   *   message only, as in js-host 0.11
   */
  constructor({ console = true, custom = null, holdConsole = false, stderrWhenSilent = false, format = 'text', customFields = false } = {}) {
    if (!FORMATS.has(format)) throw new Error(`unknown log format ${JSON.stringify(format)}: use 'text' or 'json'`);
    this.console = console && !custom;
    this.custom = custom;
    this.customFields = customFields;
    // Callers build a line's fields only when they are written (or sent on, customFields).
    this.json = format === 'json';
    this.wantsFields = this.json || customFields;
    this.holdConsole = holdConsole;
    this.stderrWhenSilent = stderrWhenSilent;
    this.filePath = null;
    this.fileFd = null;
    this.out = '';
    this.err = '';
    this.fileBuffer = '';
    this.scheduled = false;
    this.flushBound = () => this.flush();
  }

  /**
   * Also write every line to the logfile `path`, already open for appending as
   * `fd` (see runtime.openLogfile: never through a link). The logger owns `fd`.
   */
  addFile(path, fd) {
    this.filePath = path;
    this.fileFd = fd;
  }

  /** Stop writing to the console (the logfile keeps everything, errorToStderr() included). */
  disableConsole() {
    this.flush();
    this.console = false;
    this.stderrWhenSilent = false;
    this.out = '';
    this.err = '';
  }

  releaseConsole() {
    this.holdConsole = false;
    this.schedule();
  }

  /** `fields` (optional): what a JSON line carries besides time, level and message. */
  info(message, fields) {
    this.write('info', message, fields);
  }

  warn(message, fields) {
    this.write('warn', message, fields);
  }

  error(message, fields) {
    this.write('error', message, fields);
  }

  /** An error, also on stderr when the config is `silent` (a function's throw, an uncaught exception). */
  errorToStderr(message, fields) {
    this.write('error', message, fields, this.stderrWhenSilent);
  }

  write(level, message, fields, toStderr = false) {
    if (this.custom !== null) {
      const method = typeof this.custom[level] === 'function' ? level : 'info';
      if (this.customFields) this.custom[method](message, fields);
      else this.custom[method](message);
      if (this.fileFd === null) return;
    }
    if (!this.console && !toStderr && this.fileFd === null) return; // nowhere to go
    const line = this.json ? jsonLine(level, message, fields) : `${timestamp()} - ${level}: ${message}\n`;
    if (this.console) {
      if (level === 'error') this.err += line;
      else this.out += line;
    } else if (toStderr) {
      this.err += line;
    }
    if (this.fileFd !== null) this.fileBuffer += line;
    this.schedule();
  }

  schedule() {
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.flushBound, FLUSH_INTERVAL_MS).unref();
    }
  }

  flush() {
    this.scheduled = false;
    if (!this.holdConsole) {
      if (this.out !== '') {
        const out = this.out;
        this.out = '';
        writeConsole(process.stdout, out);
      }
      if (this.err !== '') {
        const err = this.err;
        this.err = '';
        writeConsole(process.stderr, err);
      }
    }
    this.flushFile();
  }

  hasFile() {
    return this.fileFd !== null;
  }

  /** Write the logfile's pending lines now (the console keeps its batch). */
  flushFile() {
    if (this.fileBuffer === '') return;
    const data = this.fileBuffer;
    this.fileBuffer = '';
    this.writeFile(data);
  }

  writeFile(data) {
    if (this.fileFd === null) return;
    try {
      fs.writeSync(this.fileFd, data);
    } catch (err) {
      const path = this.filePath;
      this.closeFile();
      writeConsole(process.stderr, `js-host: cannot write to logfile ${path}: ${err.message}\n`);
    }
  }

  closeFile() {
    if (this.fileFd === null) return;
    const fd = this.fileFd;
    this.fileFd = null;
    try {
      fs.closeSync(fd);
    } catch {
      // Already unusable: nothing more to do with it.
    }
  }

  /** Write what is pending synchronously: the process is about to exit. */
  flushSync() {
    this.scheduled = false;
    try {
      if (this.out !== '') fs.writeSync(1, this.out);
      if (this.err !== '') fs.writeSync(2, this.err);
    } catch {
      // The console may be gone (closed pipe); the logfile matters more.
    }
    this.out = '';
    this.err = '';
    if (this.fileBuffer !== '' && this.fileFd !== null) {
      try {
        fs.writeSync(this.fileFd, this.fileBuffer);
      } catch {
        // Nothing left to report it to.
      }
    }
    this.fileBuffer = '';
  }

  /** Flush and close the logfile; `callback` runs once it is written. */
  close(callback) {
    this.flush();
    this.closeFile();
    setImmediate(callback);
  }
}

/**
 * One JSON object on one line (JSON escapes the line feeds of a stack): time, level and
 * message first, then `fields` (never named time, level or message; undefined ones left out).
 */
function jsonLine(level, message, fields) {
  const head = `{"time":"${timestamp()}","level":"${level}","message":${JSON.stringify(String(message))}`;
  if (fields === undefined || fields === null) return `${head}}\n`;
  const rest = JSON.stringify(fields);
  return rest === '{}' ? `${head}}\n` : `${head},${rest.slice(1)}\n`;
}

function writeConsole(stream, data) {
  if (stream.destroyed) return;
  stream.write(data);
}

// A console that went away (the reading end of a pipe closed) must not crash
// the process: the logfile still gets every line.
function ignoreConsoleErrors() {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', () => {});
  }
}

/** The logger of `silent: true`: no console, but errorToStderr() still reaches stderr. */
function createSilent(options = {}) {
  return new Logger({ ...options, console: false, stderrWhenSilent: true });
}

module.exports = { FORMATS, Logger, createSilent, ignoreConsoleErrors };
