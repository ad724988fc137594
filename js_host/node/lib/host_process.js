'use strict';

// One managed host as a child process: spawned with `js-host <config> --port N
// --json --logfile F`, ready once it prints its status line, stopped with
// SIGTERM then SIGKILL, or reloaded with SIGHUP when it runs a pool of
// workers. The manager's registry (host_registry.js) decides
// when; this module knows how, and how to describe an exit and the end of a
// host's logfile.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { openChecked } = require('./runtime');

const BIN = path.join(__dirname, '..', 'bin', 'js-host.js');
// A config that loads slowly (bundlers) still starts within this.
const HOST_START_TIMEOUT_MS = 60000;
// SIGTERM lets a host finish its requests; after this it gets SIGKILL.
const HOST_STOP_TIMEOUT_MS = 5000;
const LOG_TAIL_BYTES = 4096;

/**
 * Spawn the host of `config`; resolves with {child, line, status} once it
 * printed its status line, rejects (the child killed) if it exits first, prints
 * something else, or says nothing within HOST_START_TIMEOUT_MS. `onSpawn(child)`
 * runs at once, so that the caller can stop a child that is still starting.
 */
function spawnHost(config, { port, logfile, onSpawn = () => {} }) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, config, '--port', String(port), '--json', '--logfile', logfile], {
      // The IPC channel only tells the host when the manager is gone.
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, JS_HOST_MANAGED: '1' },
    });
    child.expectedExit = false;
    onSpawn(child);
    let settled = false;
    let stdout = '';
    let stderr = '';

    const fail = (reason) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) {
        child.expectedExit = true;
        child.kill('SIGKILL');
      }
      reject(new Error(`Host with config ${config} failed to start: ${reason}.\n${logTail(logfile, stderr)}`));
    };
    const timer = setTimeout(() => fail(`no status within ${HOST_START_TIMEOUT_MS}ms`), HOST_START_TIMEOUT_MS);

    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      if (settled) return;
      stdout += chunk;
      const newline = stdout.indexOf('\n');
      if (newline === -1) return;
      const line = stdout.slice(0, newline);
      let status;
      try {
        status = JSON.parse(line);
      } catch {
        status = null;
      }
      if (status === null || status.type !== 'Host' || !status.config) {
        fail(`unexpected output ${JSON.stringify(line.slice(0, 200))}`);
        return;
      }
      settled = true;
      clearTimeout(timer);
      resolve({ child, line, status });
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      stderr = (stderr + chunk).slice(-LOG_TAIL_BYTES);
    });
    child.on('error', (err) => fail(err.message));
    child.on('exit', (code, signal) => fail(`it exited (${describeExit(code, signal)}) before listening`));
  });
}

/**
 * Reload a host that runs a pool of workers (SIGHUP: it replaces its workers
 * one by one, without downtime); resolves with its new status line once it
 * says it is done, rejects with its reason if the new code fails to load (it
 * keeps serving the old one), if it exits, or after HOST_START_TIMEOUT_MS.
 */
function reloadHost(child) {
  return new Promise((resolve, reject) => {
    const done = (err, line) => {
      clearTimeout(timer);
      child.removeListener('message', onMessage);
      child.removeListener('exit', onExit);
      if (err) reject(err);
      else resolve(line);
    };
    const onMessage = (message) => {
      if (message && typeof message.reloaded === 'string') done(null, message.reloaded);
      else if (message && typeof message.reloadFailed === 'string') done(new Error(message.reloadFailed));
    };
    const onExit = (code, signal) => done(new Error(`it exited (${describeExit(code, signal)}) while reloading`));
    const timer = setTimeout(() => done(new Error(`it did not reload within ${HOST_START_TIMEOUT_MS}ms`)), HOST_START_TIMEOUT_MS);
    child.on('message', onMessage);
    child.on('exit', onExit);
    child.kill('SIGHUP');
  });
}

/** SIGTERM, then SIGKILL after HOST_STOP_TIMEOUT_MS; resolves once it exited. */
function stopProcess(child) {
  child.expectedExit = true;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), HOST_STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function describeExit(code, signal) {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}

/** The last lines of a host's logfile (or of its stderr when the logfile is empty). */
function logTail(file, stderr) {
  let text = '';
  try {
    // Never through a link: what is read here goes into an HTTP answer.
    const fd = openChecked(file, fs.constants.O_RDONLY, { singleLink: true });
    try {
      const size = fs.fstatSync(fd).size;
      const length = Math.min(size, LOG_TAIL_BYTES);
      const buffer = Buffer.alloc(length);
      fs.readSync(fd, buffer, 0, length, size - length);
      text = buffer.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // No logfile yet: stderr is all there is.
  }
  if (text.trim() === '') text = stderr;
  if (text.trim() === '') return `Its logfile ${file} is empty.`;
  return `End of its logfile ${file}:\n${text}`;
}

module.exports = { spawnHost, reloadHost, stopProcess, describeExit, logTail };
