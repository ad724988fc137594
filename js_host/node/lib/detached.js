'use strict';

// `js-host ... --detached`: start a copy of the command (`--json`, no
// `--detached`) in a new session, print its status line once it listens and
// exit 0; the copy's console goes to a file in the runtime dir, and what it
// wrote there is this command's error (exit 1) when the copy fails, or does
// not start in time.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const runtime = require('./runtime');

const BIN = path.join(__dirname, '..', 'bin', 'js-host.js');
// How long `--detached` waits for the copy to listen.
const DETACHED_START_TIMEOUT_MS = 60000;

/**
 * Start the copy, wait for its status line, then exit.
 * @param {object} options
 * @param {object} options.args the command's parsed arguments (args.js)
 * @param {string} options.kind 'host' or 'manager'
 * @param {string} options.configFile the config file, resolved
 * @param {string|null} options.logfile the copy's --logfile, resolved
 * @param {Function} options.fail the command's one-line error, exit 1
 */
function runDetached({ args, kind, configFile, logfile, fail }) {
  let output;
  let fd;
  try {
    output = runtime.detachedOutputFile(runtime.ensureRuntimeDir(), kind, configFile);
    runtime.capLogfile(output);
    fd = runtime.openLogfile(output);
  } catch (err) {
    fail(err.message);
  }
  const offset = fs.fstatSync(fd).size;
  const childArgs = [BIN, configFile, '--json'];
  if (args.manager) childArgs.push('--manager');
  if (args.port !== undefined) childArgs.push('--port', String(args.port));
  if (args.workers !== undefined) childArgs.push('--workers', String(args.workers));
  if (args.logFormat !== undefined) childArgs.push('--log-format', args.logFormat);
  if (logfile !== null) childArgs.push('--logfile', logfile);
  const child = spawn(process.execPath, [...process.execArgv, ...childArgs], {
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...process.env, JS_HOST_DETACHED_COPY: '1' },
  });
  fs.closeSync(fd);

  const readOutput = () => {
    let readFd;
    try {
      readFd = runtime.openChecked(output, fs.constants.O_RDONLY, { singleLink: true });
      const size = fs.fstatSync(readFd).size;
      const buffer = Buffer.alloc(Math.max(0, size - offset));
      const length = fs.readSync(readFd, buffer, 0, buffer.length, offset);
      return buffer.subarray(0, length).toString('utf8').trim();
    } catch {
      return '';
    } finally {
      if (readFd !== undefined) fs.closeSync(readFd);
    }
  };
  const timer = setTimeout(() => {
    child.kill();
    process.stderr.write(`js-host: the detached ${kind} did not start within ${DETACHED_START_TIMEOUT_MS}ms\n${readOutput()}\n`);
    process.exit(1);
  }, DETACHED_START_TIMEOUT_MS);

  child.on('message', (message) => {
    if (!message || typeof message.status !== 'string') return;
    clearTimeout(timer);
    child.removeAllListeners('exit');
    child.disconnect();
    child.unref();
    // Exits once written, whatever handles the config's set-up opened in this process.
    process.stdout.write(`${message.status}\n`, () => process.exit(0));
  });
  child.on('exit', (code, signal) => {
    clearTimeout(timer);
    const text = readOutput() || `it exited (${signal || `exit code ${code}`}) without output`;
    process.stderr.write(`${text}\n`);
    process.exit(1);
  });
}

module.exports = { runDetached };
